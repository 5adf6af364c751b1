"""Operating the machines through the master: node exec on 3 agents, its history, task exec, drain."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from harness.cluster import ClusterFactory, Master, kill_tree_of_tasks, wait_for, world_readable_tmp


@pytest.fixture
def factory():
    tmp = world_readable_tmp()
    f = ClusterFactory(tmp)
    yield f
    f.stop_all()
    for d in tmp.glob("agent-*"):
        if d.is_dir():
            kill_tree_of_tasks(d)


@pytest.fixture(scope="module")
def three():
    """One master, three agents (node-a, node-b on rack r1; node-c on r2), shared by the exec tests in order."""
    tmp = world_readable_tmp()
    f = ClusterFactory(tmp)
    try:
        m = f.master()
        agents = [f.agent(m, "--hostname", name, "--attributes", f"rack:{rack}")
                  for name, rack in (("node-a", "r1"), ("node-b", "r1"), ("node-c", "r2"))]
        yield m, agents
    finally:
        f.stop_all()


def test_node_exec_refused_without_operator_token(three):
    m, _ = three
    status, body = m.api("POST", "/dcosd/v1/exec", {"command": ["true"], "all": True}, token="")
    assert status == 401, body
    status, body = m.api("POST", "/dcosd/v1/exec", {"command": ["true"], "all": True}, token="not-the-token")
    assert status == 401, body
    cp = m.cli("node", "exec", "--all", "--", "true", token="wrong")
    assert cp.returncode == 5 and "operator token" in cp.stderr
    # The agent's endpoint is not a way around it: it wants the cluster secret.
    agent_addr = m.nodes()[0]["address"]
    import urllib.error
    import urllib.request
    req = urllib.request.Request(agent_addr + "/dcosd/agent/v1/exec", data=b'{"command":["true"]}', method="POST",
                                 headers={"Authorization": f"Bearer {m.token}"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 401
    exc.value.close()
    assert json.loads(m.cli("node", "exec", "--history", "--json", check=True).stdout) == []


def test_node_exec_all_labels_output_fails_with_one_node_and_is_recorded(three):
    m, _ = three
    cp = m.cli("node", "exec", "--all", "--",
               'echo "hello from $DCOSD_NODE_HOSTNAME"; echo "warn $DCOSD_NODE_HOSTNAME" >&2;'
               ' test "$DCOSD_NODE_HOSTNAME" != node-b', timeout=60)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    for name in ("node-a", "node-b", "node-c"):
        assert f"{name} | hello from {name}\n" in cp.stdout
        assert f"{name} | warn {name}\n" in cp.stderr
    summary = {line.split()[0]: line.split()[1] for line in cp.stdout.splitlines()
               if line.startswith("node-") and "|" not in line}
    assert summary == {"node-a": "0", "node-b": "1", "node-c": "0"}

    ok = m.cli("node", "exec", "--attribute", "rack:r1", "--parallel", "1", "--", "true")
    assert ok.returncode == 0, ok.stderr
    assert "node-c" not in ok.stdout and "node-a" in ok.stdout

    runs = json.loads(m.cli("node", "exec", "--history", "--json", check=True).stdout)
    assert len(runs) == 2
    first = runs[1]
    assert first["who"].startswith("token:") and "test" in first["command"][0]
    assert sorted(t["hostname"] for t in first["targets"]) == ["node-a", "node-b", "node-c"]
    assert first["failed"] == 1
    assert {r["node"]: r["exit_code"] for r in first["results"].values()} == {"node-a": 0, "node-b": 1, "node-c": 0}
    assert "hello from node-b" in [r for r in first["results"].values() if r["node"] == "node-b"][0]["output"]
    table = m.cli("node", "exec", "--history", check=True).stdout
    assert "1 failed: node-b=1" in table


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="task exec into a task's cgroup as its user needs root")
def test_task_exec_runs_in_the_tasks_cgroup_sandbox_and_user(factory: ClusterFactory):
    m = factory.master()
    factory.agent(m, "--backend", "cgroups")
    status, body = m.api("POST", "/dcosd/v1/tasks", {"name": "sleeper", "argv": ["sh", "-c", "echo $$ > pid; sleep 300"],
                                                      "resources": {"cpus": 0.1, "mem": 32}})
    assert status == 201, body
    task_id = body["task_id"]
    wait_for(lambda: m.task(task_id)["state"] == "TASK_RUNNING", 30, what="task running")
    cp = m.cli("task", "exec", task_id, "--", "sh", "-c", "cat /proc/self/cgroup; id -un; pwd; cat pid; echo $MESOS_TASK_ID")
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    task_pid = int(lines[-2])
    task_cg = {l.split(":", 2)[1]: l.split(":", 2)[2] for l in Path(f"/proc/{task_pid}/cgroup").read_text().splitlines()}
    mine = {l.split(":", 2)[1]: l.split(":", 2)[2] for l in lines if l.count(":") >= 2 and l.split(":")[0].isdigit()}
    for ctrl in ("memory", "cpu,cpuacct", "pids"):
        if ctrl in task_cg:
            assert mine[ctrl] == task_cg[ctrl] and task_id in mine[ctrl], (ctrl, mine, task_cg)
    assert lines[-4] == pwd.getpwuid(os.stat(f"/proc/{task_pid}").st_uid).pw_name == "nobody"
    assert lines[-3].endswith(task_id) and lines[-1] == task_id
    failing = m.cli("task", "exec", task_id[:12], "--", "sh", "-c", "exit 4")
    assert failing.returncode == 4
    hist = json.loads(m.cli("node", "exec", "--history", "--json", check=True).stdout)
    assert hist[0]["targets"][0]["task_id"] == task_id and hist[0]["failed"] == 1


def test_drain_stops_placement_and_is_committed(factory: ClusterFactory):
    m = factory.master()
    a = factory.agent(m, "--hostname", "only")
    cp = m.cli("node", "drain", "only", check=True)
    assert "draining" in cp.stdout
    assert m.get("/dcosd/v1/maintenance")["nodes"].keys() == {a.agent_id}
    status, body = m.api("POST", "/dcosd/v1/tasks", {"name": "t", "argv": ["true"], "resources": {"cpus": 0.1, "mem": 16}})
    task_id = body["task_id"]
    import time
    time.sleep(1.5)  # a negative: several allocation cycles pass and the task stays queued while the node drains
    assert m.task(task_id)["state"] == "QUEUED"
    m.cli("node", "undrain", a.agent_id, check=True)
    wait_for(lambda: m.task(task_id)["state"] == "TASK_FINISHED", 30, what="task placed after undrain")
    assert m.get("/dcosd/v1/maintenance")["nodes"] == {}


def test_drain_moves_service_instances_keeping_minimum_health_capacity(factory: ClusterFactory):
    import threading
    import time

    m = factory.master()
    # Three "nodes" on one machine: each gets its own ports, as separate machines would. With one range
    # for all, two instances on different agents could get the same port; the second cannot bind, and
    # its TCP check passes against the first's socket until it exits — a healthy instance that was not.
    for i, name in enumerate(("svc-a", "svc-b", "svc-c")):
        lo = 31000 + 300 * i
        factory.agent(m, "--hostname", name, "--resources", f"cpus:2;mem:1024;ports:[{lo}-{lo + 299}]")
    status, _ = m.api("GET", "/v2/apps")
    if status == 404:
        pytest.skip("this master has no services API")
    app = {"id": "/drainme", "cmd": "exec python3 -m http.server $PORT0", "instances": 4, "cpus": 0.1, "mem": 32,
           "portDefinitions": [{"port": 0, "protocol": "tcp"}],
           "healthChecks": [{"protocol": "TCP", "portIndex": 0, "intervalSeconds": 1, "gracePeriodSeconds": 10,
                             "maxConsecutiveFailures": 2}],
           "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0},
           "constraints": [["hostname", "MAX_PER", "2"]]}
    status, body = m.api("POST", "/v2/apps", app)
    assert status in (200, 201), body

    def healthy() -> int:
        return m.get("/v2/apps/drainme")["app"].get("tasksHealthy", 0)

    wait_for(lambda: healthy() == 4 and not m.get("/v2/deployments"), 60, what="4 healthy instances")
    tasks = m.get("/v2/apps/drainme/tasks")["tasks"]
    config_version = m.get("/v2/apps/drainme")["app"]["versionInfo"]["lastConfigChangeAt"]
    by_host: dict[str, int] = {}
    for t in tasks:
        by_host[t["host"]] = by_host.get(t["host"], 0) + 1
    target = max(by_host, key=lambda h: by_host[h])
    agent_id = next(n["id"] for n in m.nodes() if n["hostname"] == target)
    staying = {t["id"] for t in tasks if t["host"] != target}
    assert by_host[target] == 2 and len(staying) == 2, by_host

    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                samples.append(healthy())
            except AssertionError:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        cp = m.cli("node", "drain", target, check=True)
        assert "draining" in cp.stdout

        def moved() -> bool:
            ts = m.get("/v2/apps/drainme/tasks")["tasks"]
            return (not m.get("/v2/deployments") and len(ts) == 4 and all(t["host"] != target for t in ts)
                    and healthy() == 4)

        wait_for(moved, 120, interval=0.3, what="instances moved off the drained node")
    finally:
        stop.set()
        sampler.join()
    changes = " ".join(str(s) for i, s in enumerate(samples) if i == 0 or s != samples[i - 1])
    assert samples and min(samples) >= 2, changes
    # Only the drained node's instances moved, each killed once its replacement was healthy (with
    # maximumOverCapacity 0 one at a time): the app never had fewer than its 4 healthy instances.
    assert min(samples) == 4, changes
    after = m.get("/v2/apps/drainme/tasks")["tasks"]
    assert staying <= {t["id"] for t in after}, (staying, after)
    assert m.get("/v2/apps/drainme")["app"]["versionInfo"]["lastConfigChangeAt"] == config_version
    assert not [t for t in m.get(f"/dcosd/v1/nodes/{agent_id}")["tasks"] if t["state"] == "TASK_RUNNING"]
