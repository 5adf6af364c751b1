"""`dcosd node exec --all` on three agents, each in its own network namespace, a master in a fourth.

Every address is one the test creates inside its own namespaces (10.216.0.0/24 on a bridge in a hub
namespace; see harness/netns.py): nothing is added to the host's namespace. The master dials each
agent at its own address to run the command, so each node's output proves where it ran (its eth0
address). Processes, namespaces and interfaces are removed at the end, also when the test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness.cluster import Proc, kill_tree_of_tasks, wait_for, world_readable_tmp
from harness.netns import NetLab, available

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
MASTER = "10.216.0.1"
AGENTS = {"n1": "10.216.0.11", "n2": "10.216.0.12", "n3": "10.216.0.13"}


@pytest.fixture
def lab():
    ok, why = available()
    if not ok:
        pytest.skip(why)
    tmp = world_readable_tmp("dcosd-exec-")
    net = NetLab("dexec")
    procs: list[Proc] = []
    works: list[Path] = []
    try:
        net.add_node("m", f"{MASTER}/24")
        for node, ip in AGENTS.items():
            net.add_node(node, f"{ip}/24")
        yield net, tmp, procs, works
    finally:
        for p in reversed(procs):
            p.stop(timeout=10)
        for w in works:
            kill_tree_of_tasks(w)
        net.close()
        if not os.environ.get("DCOSD_TEST_KEEP"):
            subprocess.run(["rm", "-rf", str(tmp)], check=False)


def start(net: NetLab, node: str, argv: list[str], log: Path, procs: list[Proc]) -> Proc:
    p = Proc([*net.prefix_argv(node), *argv], log, env={"PYTHONPATH": str(REPO)})
    procs.append(p)
    return p


def cli(net: NetLab, token: str | None, *args: str) -> subprocess.CompletedProcess:
    env = ["env", f"DCOSD_MASTER=http://{MASTER}:5050", f"PYTHONPATH={REPO}", "XDG_CONFIG_HOME=/nonexistent"]
    if token is not None:
        env.append(f"DCOSD_TOKEN={token}")
    return net.run("m", [*env, PY, "-m", "dcosd", *args], timeout=120)


def test_node_exec_all_on_three_agents_in_namespaces(lab):
    net, tmp, procs, works = lab
    master = start(net, "m", [PY, "-m", "dcosd", "master", "--data-dir", str(tmp / "master"), "--listen",
                              f"{MASTER}:5050", "--auth", "--dns-listen", "off"], tmp / "master.log", procs)
    token_file = tmp / "master" / "operator.token"
    wait_for(lambda: token_file.exists() or not master.alive(), 30, what="master's operator token")
    assert master.alive(), master.log()
    token = token_file.read_text().strip()
    wait_for(lambda: cli(net, token, "node", "list", "--json").returncode == 0 or not master.alive(), 30,
             what="master up")
    secret = (tmp / "master" / "cluster.secret").read_text().strip()
    for node, ip in AGENTS.items():
        work = tmp / f"agent-{node}"
        works.append(work)
        start(net, node, [PY, "-m", "dcosd", "agent", "--master", f"http://{MASTER}:5050", "--work-dir", str(work),
                          "--listen", f"{ip}:5051", "--advertise-ip", ip, "--hostname", node, "--secret", secret,
                          "--backend", "process", "--log-level", "debug"], tmp / f"agent-{node}.log", procs)

    def nodes() -> list[dict]:
        cp = cli(net, token, "node", "list", "--json")
        assert cp.returncode == 0, cp.stderr
        return json.loads(cp.stdout)

    wait_for(lambda: sorted(n["hostname"] for n in nodes() if n["state"] == "ACTIVE") == sorted(AGENTS), 30,
             what="3 agents registered")

    # Refused without the operator (admin) token: nothing runs, nothing is recorded.
    for bad in (None, "not-the-token"):
        cp = cli(net, bad, "node", "exec", "--all", "--", "touch", str(tmp / "ran"))
        assert cp.returncode == 5 and "operator token" in cp.stderr, (cp.returncode, cp.stdout, cp.stderr)
    assert not (tmp / "ran").exists()
    cp = cli(net, token, "node", "exec", "--history", "--json")
    assert cp.returncode == 0 and json.loads(cp.stdout) == [], cp

    # Every node runs it in its own namespace, as root; n2 fails.
    cmd = ('echo "on $DCOSD_NODE_HOSTNAME as $(id -u) at $(ip -4 -o addr show dev eth0 | awk \'{print $4}\')";'
           ' echo "err $DCOSD_NODE_HOSTNAME" >&2; test "$DCOSD_NODE_HOSTNAME" != n2')
    cp = cli(net, token, "node", "exec", "--all", "--", cmd)
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    for node, ip in AGENTS.items():
        assert f"{node} | on {node} as 0 at {ip}/24\n" in cp.stdout, cp.stdout
        assert f"{node} | err {node}\n" in cp.stderr, cp.stderr
    summary = {line.split()[0]: line.split()[1] for line in cp.stdout.splitlines()
               if line.split() and line.split()[0] in AGENTS and "|" not in line}
    assert summary == {"n1": "0", "n2": "1", "n3": "0"}, cp.stdout

    # Without the failing node the run succeeds.
    ok = cli(net, token, "node", "exec", "--node", "n1", "--node", "n3", "--", "true")
    assert ok.returncode == 0, (ok.stdout, ok.stderr)

    # History: who, what, where, result.
    cp = cli(net, token, "node", "exec", "--history", "--json")
    runs = json.loads(cp.stdout)
    assert len(runs) == 2, runs
    first = runs[1]
    assert first["who"].startswith("token:") and MASTER in first["who"] and token not in first["who"]
    assert first["command"] == [cmd]
    assert sorted(t["hostname"] for t in first["targets"]) == sorted(AGENTS)
    assert first["failed"] == 1 and first["finished_at"] is not None
    by_node = {r["node"]: r for r in first["results"].values()}
    assert {n: r["exit_code"] for n, r in by_node.items()} == {"n1": 0, "n2": 1, "n3": 0}
    for node, ip in AGENTS.items():
        assert f"at {ip}/24" in by_node[node]["output"]
    assert runs[0]["failed"] == 0 and sorted(t["hostname"] for t in runs[0]["targets"]) == ["n1", "n3"]
    table = cli(net, token, "node", "exec", "--history").stdout
    assert "1 failed: n2=1" in table, table
