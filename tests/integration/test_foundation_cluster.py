"""The foundation end to end: a master and agents as separate processes on loopback, driven by the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.cluster import DCOSD, ClusterFactory, Master, kill_tree_of_tasks, wait_for

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_DROPPED", "TASK_ERROR"}


@pytest.fixture
def factory(tmp_path: Path):
    f = ClusterFactory(tmp_path)
    yield f
    f.stop_all()
    for d in tmp_path.glob("agent-*"):
        if d.is_dir():
            kill_tree_of_tasks(d)


@pytest.fixture
def cluster(factory: ClusterFactory):
    m = factory.master()
    a = factory.agent(m)
    return m, a


def submit(m: Master, **spec) -> str:
    status, body = m.api("POST", "/dcosd/v1/tasks", spec)
    assert status == 201, body
    return body["task_id"]


def wait_state(m: Master, task_id: str, states: set[str] | str, timeout: float = 30) -> dict:
    want = {states} if isinstance(states, str) else states
    return wait_for(lambda: (t := m.task(task_id))["state"] in want and t, timeout, what=f"{task_id} in {want}")


def test_run_wait_prints_output_and_exits_with_code(cluster):
    m, _ = cluster
    cp = m.cli("run", "--wait", "--", "echo", "hello")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "hello\n"
    listed = json.loads(m.cli("task", "list", "--all", "--json", check=True).stdout)
    (task,) = [t for t in listed if t["spec"].get("argv") == ["echo", "hello"]]
    assert task["state"] == "TASK_FINISHED" and task["exit_code"] == 0
    logs = m.cli("task", "logs", task["id"], check=True)
    assert logs.stdout == "hello\n"

    failing = m.cli("run", "--wait", "--", "sh", "-c", "echo oops >&2; exit 7")
    assert failing.returncode == 7
    assert "oops" in failing.stderr

    shell = m.cli("run", "--wait", "--", "exit 3")  # one argument with shell syntax runs under /bin/sh -c
    assert shell.returncode == 3


def test_command_not_found_fails_with_message(cluster):
    m, _ = cluster
    task_id = submit(m, argv=["/no/such/program"], resources={"cpus": 0.1, "mem": 32})
    t = wait_state(m, task_id, TERMINAL)
    assert t["state"] == "TASK_FAILED"
    assert "not found" in t["message"].lower() or "no such file" in t["message"].lower(), t["message"]
    cp = m.cli("run", "--wait", "--", "nosuchcommand-xyz")
    assert cp.returncode != 0
    assert "not found" in cp.stderr.lower()


def test_oom_is_reported_with_memory_reason(cluster):
    m, _ = cluster
    task_id = submit(m, argv=["python3", "-c", "b = bytearray(300 << 20); import time; time.sleep(5)"],
                     resources={"cpus": 0.5, "mem": 64})
    t = wait_state(m, task_id, TERMINAL, timeout=60)
    assert t["state"] == "TASK_FAILED"
    assert t["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY", t
    shown = m.cli("task", "show", task_id, check=True).stdout
    assert "CONTAINER_LIMITATION_MEMORY" in shown


def test_kill_running_task(cluster):
    m, _ = cluster
    task_id = submit(m, argv=["sleep", "300"], kill_grace_seconds=1)
    wait_state(m, task_id, "TASK_RUNNING")
    m.cli("task", "kill", task_id, check=True)
    t = wait_state(m, task_id, TERMINAL)
    assert t["state"] == "TASK_KILLED"
    assert [s["state"] for s in t["statuses"]] == ["TASK_STAGING", "TASK_RUNNING", "TASK_KILLED"]


def test_task_larger_than_any_agent_stays_queued_with_reason(cluster):
    m, _ = cluster
    task_id = submit(m, argv=["true"], resources={"cpus": 4096, "mem": 32})
    t = wait_for(lambda: (x := m.task(task_id))["pending_reason"] and x, what="pending reason")
    assert t["state"] == "QUEUED"
    assert "larger than any agent" in t["pending_reason"]
    shown = m.cli("task", "show", task_id, check=True).stdout
    assert "larger than any agent" in shown
    m.cli("task", "kill", task_id, check=True)
    assert m.task(task_id)["state"] == "TASK_KILLED"


def test_agent_kill9_and_restart_readopts_tasks(factory: ClusterFactory):
    m = factory.master()
    a = factory.agent(m, "--resources", "cpus:16;mem:4096")
    agent_id = a.agent_id
    long_ids = [submit(m, argv=["sleep", "300"], resources={"cpus": 0.1, "mem": 16}) for _ in range(9)]
    # This one exits with 42 only once a file appears in its sandbox — while the agent is down.
    short_id = submit(m, cmd="while [ ! -e go ]; do sleep 0.1; done; exit 42", resources={"cpus": 0.1, "mem": 16})
    for t in long_ids + [short_id]:
        wait_state(m, t, "TASK_RUNNING")
    a.proc.kill9()
    (a.work_dir / "sandboxes" / short_id / "go").touch()
    sandbox = a.work_dir / "sandboxes" / short_id / ".executor" / "exit.json"
    wait_for(sandbox.exists, 20, what="the short task to exit while the agent is down")

    a2 = factory.restart_agent(m, a)
    assert a2.agent_id == agent_id  # the agent keeps its id across restarts
    t = wait_state(m, short_id, TERMINAL)
    assert t["state"] == "TASK_FAILED" and t["exit_code"] == 42, t
    for tid in long_ids:
        t = m.task(tid)
        assert t["state"] == "TASK_RUNNING", t
        assert [s["state"] for s in t["statuses"]] == ["TASK_STAGING", "TASK_RUNNING"], t["statuses"]
    # none duplicated: exactly one supervisor per long task
    import psutil

    sup = [p for p in psutil.process_iter(["cmdline"])
           if p.info["cmdline"] and "executor" in p.info["cmdline"] and str(a.work_dir) in " ".join(p.info["cmdline"])]
    assert len(sup) == 9, [p.info["cmdline"] for p in sup]
    node = m.get(f"/dcosd/v1/nodes/{agent_id}")
    assert sorted(x["id"] for x in node["tasks"]) == sorted(long_ids)


def test_agent_lost_for_good_tasks_unreachable_then_lost(factory: ClusterFactory):
    m = factory.master("--agent-timeout", "1.5", "--unreachable-grace", "2")
    a = factory.agent(m)
    task_id = submit(m, argv=["sleep", "300"])
    wait_state(m, task_id, "TASK_RUNNING")
    a.proc.kill9()
    t0 = time.monotonic()
    t = wait_state(m, task_id, "TASK_UNREACHABLE", timeout=15)
    t_unreachable = time.monotonic() - t0
    assert t["reason"] == "REASON_SLAVE_DISCONNECTED"
    t = wait_state(m, task_id, "TASK_LOST", timeout=15)
    assert t["reason"] == "REASON_SLAVE_REMOVED"
    assert time.monotonic() - t0 >= t_unreachable  # lost only after unreachable, never skipping it
    states = [s["state"] for s in t["statuses"]]
    assert states == ["TASK_STAGING", "TASK_RUNNING", "TASK_UNREACHABLE", "TASK_LOST"]
    (node,) = m.nodes()
    assert node["state"] == "UNREACHABLE"


def test_agent_returning_from_unreachable_is_welcomed_back(factory: ClusterFactory):
    m = factory.master("--agent-timeout", "1.5", "--unreachable-grace", "600")
    a = factory.agent(m)
    task_id = submit(m, argv=["sleep", "300"])
    wait_state(m, task_id, "TASK_RUNNING")
    a.proc.kill9()
    wait_state(m, task_id, "TASK_UNREACHABLE", timeout=15)
    factory.restart_agent(m, a)
    t = wait_state(m, task_id, "TASK_RUNNING", timeout=15)
    assert t["statuses"][-1]["reason"] == "REASON_RECONCILIATION"


def test_wrong_cluster_secret_is_refused(factory: ClusterFactory):
    m = factory.master()
    bad = factory.agent(m, secret="not-the-secret", wait=False)
    wait_for(lambda: "wrong cluster secret" in bad.proc.log(), what="agent to log the refusal")
    assert m.nodes() == []
    status, body = m.api("POST", "/dcosd/internal/v1/agents/register", {"agent": {}}, token="")
    assert status == 401 and "cluster secret" in body["message"]


def test_operator_token_required_when_auth_on(factory: ClusterFactory):
    m = factory.master()
    status, body = m.api("GET", "/dcosd/v1/tasks", token="")
    assert status == 401 and "token" in body["message"]
    status, _ = m.api("GET", "/dcosd/v1/tasks", token="wrong")
    assert status == 401
    cp = m.cli("task", "list", token="wrong")
    assert cp.returncode == 5 and "Traceback" not in cp.stderr


def test_malformed_api_input_gets_4xx_with_message(cluster):
    m, _ = cluster
    cases = [
        (b"{not json", "malformed JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"argv": ["true"], "bogus": 1}).encode(), "unknown field"),
        (json.dumps({"argv": ["true"], "resources": {"cpus": -1, "mem": 32}}).encode(), "negative"),
        (json.dumps({"argv": ["true"], "resources": {"cpus": 1e12, "mem": 32}}).encode(), "beyond"),
        (json.dumps({"argv": []}).encode(), "argv"),
        (json.dumps({"cmd": "x", "argv": ["y"]}).encode(), "exactly one"),
        (json.dumps({"argv": ["true"], "task_id": "../../etc"}).encode(), "not a valid id"),
    ]
    for raw, needle in cases:
        status, body = m.api("POST", "/dcosd/v1/tasks", raw=raw)
        assert 400 <= status < 500, (raw, status, body)
        assert needle in body["message"], (raw, body)
    status, body = m.api("GET", "/dcosd/v1/tasks/no-such-task")
    assert status == 404 and "no task" in body["message"]
    status, body = m.api("GET", "/dcosd/v1/tasks?state=TASK_BOGUS")
    assert status == 400
    # nothing of the above reached the state
    assert m.get("/dcosd/v1/tasks?all=1")["tasks"] == []


def test_cli_errors_are_one_line_with_exit_codes(cluster, tmp_path: Path):
    m, _ = cluster
    cp = m.cli("task", "show", "no-such-task")
    assert cp.returncode == 3 and cp.stderr.startswith("dcosd: error:") and "Traceback" not in cp.stderr
    cp = m.cli("run", "--cpus", "-2", "--", "true")
    assert cp.returncode == 2 and "negative" in cp.stderr
    cp = m.cli("run", "--env", "NOEQUALS", "--", "true")
    assert cp.returncode == 2 and "KEY=VALUE" in cp.stderr
    cp = m.cli("--master", "http://127.0.0.1:1", "cluster", "status")
    assert cp.returncode == 6 and "cannot reach the master" in cp.stderr and "Traceback" not in cp.stderr
    cp = m.cli("cluster", "backup", str(tmp_path / "backup"))
    assert cp.returncode == 2 and "a one-master cluster's state is its data directory" in cp.stderr, cp.stderr
    assert not (tmp_path / "backup").exists()
    cp = m.cli("cluster", "transfer-leader")
    assert cp.returncode == 2 and "a one-master cluster has no other master" in cp.stderr, cp.stderr
    # Several masters, none up: each is named.
    cp = m.cli("--master", "http://127.0.0.1:1,http://127.0.0.1:2", "cluster", "status")
    assert cp.returncode == 6 and "cannot reach the master at any of http://127.0.0.1:1 (" in cp.stderr, cp.stderr
    assert "http://127.0.0.1:2 (" in cp.stderr and "Traceback" not in cp.stderr
    # A master URL that cannot be one is refused as a usage error, by the CLI and by an agent, not
    # retried as if the master were down.
    cp = m.cli("--master", "ftp://127.0.0.1:1", "cluster", "status")
    assert cp.returncode == 2 and "--master: ftp://127.0.0.1:1: the URL must be http://" in cp.stderr, cp.stderr
    for bad, says in (("ftp://127.0.0.1", "must be http://"), (f"{m.url},http://127.0.0.1:99999", "Port out of range")):
        cp = subprocess.run([*DCOSD, "agent", "--master", bad, "--work-dir", str(tmp_path / "agent"),
                             "--secret", "s"], capture_output=True, text=True, timeout=30)
        assert cp.returncode == 2 and cp.stderr.startswith("dcosd: error: --master: ") and says in cp.stderr, cp.stderr


def test_node_and_cluster_views(cluster):
    m, a = cluster
    nodes = json.loads(m.cli("node", "list", "--json", check=True).stdout)
    assert len(nodes) == 1 and nodes[0]["backend"]["backend"] in ("cgroups", "process", "systemd")
    shown = m.cli("node", "show", nodes[0]["id"], check=True).stdout
    assert "backend" in shown and "cgroup" in shown
    status = json.loads(m.cli("cluster", "status", "--json", check=True).stdout)
    assert status["agents"] == {"total": 1, "active": 1}
    assert status["masters"][0]["leader"] is True


def test_master_restart_keeps_state(factory: ClusterFactory):
    m = factory.master()
    a = factory.agent(m)
    task_id = submit(m, argv=["sleep", "300"])
    wait_state(m, task_id, "TASK_RUNNING")
    m.proc.kill9()
    m2_proc = factory.master  # a new master process on the same data dir and port
    from harness.cluster import Proc

    proc = Proc(m.proc.args, m.proc.log_path)
    factory.procs.append(proc)
    m2 = Master(m.data_dir, m.port, proc, m.auth)
    wait_for(lambda: m2.api("GET", "/health")[0] == 200, what="master restart")
    assert m2.task(task_id)["state"] == "TASK_RUNNING"
    factory.wait_registered(m2, a)
    m2.cli("task", "kill", task_id, check=True)
    assert wait_state(m2, task_id, TERMINAL)["state"] == "TASK_KILLED"
    del m2_proc


def test_task_logs_follow_streams_until_the_task_ends(cluster):
    m, _ = cluster
    task_id = submit(m, cmd="for i in 1 2 3; do echo line$i; echo err$i >&2; sleep 0.5; done",
                     resources={"cpus": 0.1, "mem": 32})
    wait_state(m, task_id, {"TASK_RUNNING"} | TERMINAL)
    follow = m.cli("task", "logs", "-f", task_id, timeout=60)
    assert follow.returncode == 0 and follow.stdout == "line1\nline2\nline3\n"
    assert m.task(task_id)["state"] == "TASK_FINISHED"  # -f returned because the task ended
    err = m.cli("task", "logs", "--stderr", task_id[:12], check=True)  # a unique prefix of the id is enough
    assert err.stdout == "err1\nerr2\nerr3\n"
