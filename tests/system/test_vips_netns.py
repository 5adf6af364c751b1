"""VIPs on a real cluster in network namespaces: a master, two agents and a client on a private bridge.

Every address is one the test creates inside its own namespaces (10.214.0.0/24 on the bridge,
the VIP addresses the agents put on their own lo); the client reaches VIPs through agent 1
(a route for 11.0.0.0/8 inside the client's namespace only). Everything — processes, namespaces,
interfaces — is removed at the end, also when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster import Proc, kill_tree_of_tasks, wait_for, world_readable_tmp
from harness.netns import NetLab, available

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
TASK_PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

ECHO = r"""
import os, signal, socket, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # drains until SIGKILL: the VIP must stop using it first
print(os.getpid(), flush=True)
tid = os.environ["MESOS_TASK_ID"].encode()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(os.environ["PORT0"])))
s.listen(256)
while True:
    c, _ = s.accept()
    try:
        c.sendall(tid)
    except OSError:
        pass
    c.close()
"""

CLIENT = r"""
import json, socket, sys, time
ip, port, out, stop = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "w"), sys.argv[4]
import os
while not os.path.exists(stop):
    t = time.time()
    try:
        with socket.create_connection((ip, port), timeout=2) as s:
            data = b""
            while chunk := s.recv(256):
                data += chunk
        rec = {"t": t, "id": data.decode()} if data else {"t": t, "err": "empty reply"}
    except OSError as exc:
        rec = {"t": t, "err": repr(exc)}
    out.write(json.dumps(rec) + "\n")
    out.flush()
    time.sleep(0.005)
"""


@pytest.fixture
def lab():
    ok, why = available()
    if not ok:
        pytest.skip(why)
    tmp = world_readable_tmp("dcosd-vips-")
    net = NetLab("dvip")
    procs: list[Proc] = []
    agents_work: list[Path] = []
    try:
        net.add_node("m", "10.214.0.1/24")
        net.add_node("a1", "10.214.0.11/24")
        net.add_node("a2", "10.214.0.12/24")
        net.add_node("c", "10.214.0.100/24")
        net.route("c", "11.0.0.0/8", "a1")
        yield net, tmp, procs, agents_work
    finally:
        for p in reversed(procs):
            p.stop(timeout=10)
        for w in agents_work:
            kill_tree_of_tasks(w)
        net.close()
        if not os.environ.get("DCOSD_TEST_KEEP"):
            subprocess.run(["rm", "-rf", str(tmp)], check=False)


def start(net: NetLab, node: str, argv: list[str], log: Path, procs: list[Proc]) -> Proc:
    p = Proc([*net.prefix_argv(node), *argv], log, env={"PYTHONPATH": str(REPO)})
    procs.append(p)
    return p


def cli(net: NetLab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cp = net.run("m", ["env", "DCOSD_MASTER=http://10.214.0.1:5050", f"PYTHONPATH={REPO}", PY, "-m", "dcosd", *args])
    if check:
        assert cp.returncode == 0, (args, cp.stdout, cp.stderr)
    return cp


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_vip_balances_over_every_backend_and_drops_a_dead_or_killed_one_within_a_second(lab):
    net, tmp, procs, agents_work = lab
    master = start(net, "m", [PY, "-m", "dcosd", "master", "--data-dir", str(tmp / "master"), "--listen",
                              "10.214.0.1:5050", "--no-auth", "--dns-listen", "off"], tmp / "master.log", procs)
    wait_for(lambda: cli(net, "node", "list", "--json", check=False).returncode == 0 or not master.alive(),
             30, what="master up")
    assert master.alive(), master.log()
    secret = (tmp / "master" / "cluster.secret").read_text().strip()
    ports = {"a1": "31001-31002", "a2": "31003-31004"}
    for node in ("a1", "a2"):
        work = tmp / f"agent-{node}"
        agents_work.append(work)
        start(net, node, [PY, "-m", "dcosd", "agent", "--master", "http://10.214.0.1:5050", "--work-dir", str(work),
                          "--listen", f"{net.addresses[node]}:5051", "--secret", secret, "--backend", "process",
                          "--advertise-ip", net.addresses[node], "--resources",
                          f"cpus:4;mem:2048;ports:[{ports[node]}]", "--log-level", "debug"],
              tmp / f"agent-{node}.log", procs)
    wait_for(lambda: len(json.loads(cli(net, "node", "list", "--json").stdout)) == 2, 30, what="2 agents")

    # bad input: a clear error, nothing submitted, nothing crashes
    bad = cli(net, "run", "--port", "31004", "--vip", "/echo:99999", "--", "true", check=False)
    assert bad.returncode == 2 and "out of range" in bad.stderr
    bad = cli(net, "run", "--vip", "/echo:7000", "--", "true", check=False)
    assert bad.returncode == 2 and "needs a host port" in bad.stderr
    bad = cli(net, "run", "--port", "31004", "--vip", "echo", "--", "true", check=False)
    assert bad.returncode == 2 and "/name:port" in bad.stderr

    echo = tmp / "echo.py"
    echo.write_text(ECHO)
    echo.chmod(0o644)
    ids = {}
    for name, port in (("echo1", 31001), ("echo2", 31002), ("echo3", 31003)):
        ids[name] = cli(net, "run", "--name", name, "--port", str(port), "--vip", "/echo:7000", "--grace", "3",
                        "--", TASK_PY, str(echo)).stdout.strip()

    def vips() -> list[dict]:
        return json.loads(cli(net, "vip", "list", "--json").stdout)["vips"]

    (vip,) = wait_for(lambda: (v := vips()) and len(v[0]["backends"]) == 3 and v, 30, what="3 backends")
    assert vip["vip"] == "/echo:7000" and vip["ip"].startswith("11.") and vip["dns"] == "echo.marathon.l4lb.mesos"
    looked_up = json.loads(cli(net, "dns", "lookup", "echo.marathon.l4lb.mesos", "--json").stdout)
    assert [r["ip"] for r in looked_up] == [vip["ip"]]
    # every agent serves it: from agent 2's own namespace too
    for node in ("a1", "a2"):
        wait_for(lambda: vip["ip"] in net.addresses_on_lo(node), 10, what=f"VIP address on {node}")
    local = net.run("a2", [PY, "-c", f"import socket; s=socket.create_connection(('{vip['ip']}', 7000), 2); "
                                     "print(s.recv(100).decode())"])
    assert local.returncode == 0 and local.stdout.strip() in ids.values(), local

    client = tmp / "client.py"
    client.write_text(CLIENT)
    out, stop_flag = tmp / "client.jsonl", tmp / "client.stop"
    cproc = start(net, "c", [PY, str(client), vip["ip"], "7000", str(out), str(stop_flag)], tmp / "client.log", procs)
    wait_for(lambda: {r.get("id") for r in records(out)} >= set(ids.values()), 10, what="every backend reached")

    # 1) killed (draining: it ignores SIGTERM and still accepts for its 3 s grace): no new connection after 1 s
    # (timed from the master's answer: the CLI's own start-up is not the cluster's reaction time)
    cli(net, "task", "kill", ids["echo2"])
    t_kill = time.time()
    # 2) dies by itself (SIGKILL, its agent reports it failed): no new connection, no failure after 1 s
    time.sleep(1.5)
    pid = int((tmp / "agent-a2" / "sandboxes" / ids["echo3"] / "stdout").read_text().split()[0])
    t_crash = time.time()
    os.kill(pid, signal.SIGKILL)
    time.sleep(4.0)  # past echo2's grace: it is SIGKILLed too
    stop_flag.touch()
    wait_for(lambda: not cproc.alive(), 10, what="client done")

    recs = records(out)
    after_kill = [r for r in recs if r["t"] > t_kill + 1.0]
    after_crash = [r for r in recs if r["t"] > t_crash + 1.0]
    assert len(after_crash) > 50, len(after_crash)
    assert not [r for r in after_kill if r.get("id") == ids["echo2"]]
    assert not [r for r in after_crash if r.get("id") == ids["echo3"]]
    # A request in flight when its backend is SIGKILLed may fail; none may fail otherwise after 1 s.
    errs = [(round(r["t"] - t_kill, 3), round(r["t"] - t_crash, 3), r["err"]) for r in after_kill
            if "err" in r and not t_crash - 0.1 <= r["t"] <= t_crash + 1.0]
    assert not errs, (len(errs), errs[:3], errs[-3:])
    assert {r["id"] for r in after_crash} == {ids["echo1"]}
    failures = [r for r in recs if "err" in r]
    print(f"{len(recs)} requests, {len(failures)} failed in all; last backends {vips()[0]['backends']}")
    assert vips()[0]["backends"] == [["10.214.0.11", 31001]]

    # the app goes away: its VIP, listener and addresses go on every agent
    cli(net, "task", "kill", ids["echo1"])
    for node in ("a1", "a2"):
        wait_for(lambda: not net.addresses_on_lo(node), 10, what=f"VIP address gone from {node}")
    assert vips() == []

    # an agent that stops removes its VIP addresses
    ids["echo4"] = cli(net, "run", "--name", "echo4", "--port", "31004", "--vip", "/echo:7000", "--grace", "0",
                       "--", TASK_PY, str(echo)).stdout.strip()
    wait_for(lambda: vip["ip"] in net.addresses_on_lo("a1") and vip["ip"] in net.addresses_on_lo("a2"), 20,
             what="VIP back on both agents")
    agent1 = procs[1]
    assert agent1.stop(timeout=10) == 0, agent1.log()
    assert net.addresses_on_lo("a1") == []
    assert "Traceback" not in agent1.log() and "Traceback" not in master.log()
