"""pymesos 0.3.15 — a real Mesos framework library — against real dcosd masters and agents.

The schedulers run as their own processes (pymesos installs a SIGINT handler and
interrupts the main thread on I/O errors, which a test process must not host) and
print every status update they see as a JSON line. Installed by scripts/setup.sh test
as COMPAT.md §1 says (pymesos, six, addict with --no-deps; http-parser's pure-Python
parser from its sdist).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cluster import ClusterFactory, kill_tree_of_tasks, wait_for

APPS = Path(__file__).parent / "pymesos_apps"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pymesos") is None or importlib.util.find_spec("http_parser") is None,
    reason="pymesos is not installed (scripts/setup.sh test installs it)")


@pytest.fixture
def factory(tmp_path: Path):
    f = ClusterFactory(tmp_path)
    yield f
    f.stop_all()
    for d in tmp_path.glob("agent-*"):
        if d.is_dir():
            kill_tree_of_tasks(d)


def run_app(*args: str, timeout: float = 150) -> tuple[list[dict], str]:
    cp = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(x) for x in cp.stdout.splitlines() if x.startswith("{")]
    assert cp.returncode == 0, (cp.returncode, cp.stdout[-3000:], cp.stderr[-5000:])
    return lines, cp.stderr


def test_example_scheduler_and_executor_on_two_agents(factory: ClusterFactory):
    m = factory.master()
    a1 = factory.agent(m, "--allow-root-tasks", "--resources", "cpus:2;mem:1024")
    a2 = factory.agent(m, "--allow-root-tasks", "--resources", "cpus:2;mem:1024")
    lines, err = run_app(str(APPS / "example_scheduler.py"), f"127.0.0.1:{m.port}", m.token,
                         str(APPS / "example_executor.py"), "4", "2")
    updates = [x for x in lines if "task_id" in x]
    by_task: dict[str, list[str]] = {}
    for u in updates:
        by_task.setdefault(u["task_id"], []).append(u["state"])
    assert len(by_task) == 4, (updates, err[-3000:])
    for tid, states in by_task.items():
        assert states == ["TASK_RUNNING", "TASK_FINISHED"], (tid, states, err[-3000:])
    agents_used = {u["agent_id"] for u in updates}
    assert agents_used == {a1.agent_id, a2.agent_id}
    assert lines[-1]["done"] is True
    # The master saw them the same way, ran one executor per agent, and the framework is gone (TEARDOWN).
    fid = lines[-1]["framework_id"]
    state = m.get("/master/state")
    (fw,) = [f for f in state["completed_frameworks"] if f["id"] == fid]
    assert sorted(t["state"] for t in fw["completed_tasks"]) == ["TASK_FINISHED"] * 4
    assert {t["executor_id"] for t in fw["completed_tasks"]} == {"MinimalExecutor"}
    # Idle executors are shut down and their resources returned.
    wait_for(lambda: all(s["used_resources"]["cpus"] == 0 for s in m.get("/master/state")["slaves"]), 30,
             what="executors to end")


def test_command_tasks_launch_kill_reconcile(factory: ClusterFactory):
    m = factory.master()
    # pymesos' framework user is the caller's (root here): the agents allow it.
    factory.agent(m, "--allow-root-tasks", "--resources", "cpus:1;mem:1024")
    factory.agent(m, "--allow-root-tasks", "--resources", "cpus:1;mem:1024")
    lines, err = run_app(str(APPS / "command_scheduler.py"), f"127.0.0.1:{m.port}", m.token, "3")
    assert lines[-1] == {"done": True}
    ups = [x for x in lines if "task_id" in x]
    launched = sorted({u["task_id"] for u in ups if u["phase"] == "launch"})
    assert len(launched) == 3
    assert all(u["state"] == "TASK_RUNNING" and u["uuid"] for u in ups if u["phase"] == "launch")
    killed = [u for u in ups if u["phase"] == "kill" and u["state"] == "TASK_KILLED"]
    assert len(killed) == 1 and killed[0]["uuid"]
    rec = {u["task_id"]: u for u in ups if u["phase"] == "reconcile"}
    assert rec[killed[0]["task_id"]]["state"] == "TASK_KILLED"
    for tid in launched:
        if tid != killed[0]["task_id"]:
            assert rec[tid]["state"] == "TASK_RUNNING"
        assert rec[tid]["reason"] == "REASON_RECONCILIATION" and not rec[tid]["uuid"]
    assert rec["never-launched"]["state"] == "TASK_LOST"
    implicit = {u["task_id"]: u["state"] for u in ups if u["phase"] == "implicit"}
    assert implicit == {t: "TASK_RUNNING" for t in launched if t != killed[0]["task_id"]}
    assert all(u["state"] == "TASK_KILLED" for u in ups if u["phase"] == "cleanup")
    # The operator API agrees: nothing left running.
    tasks = m.api("POST", "/api/v1", {"type": "GET_TASKS"})[1]["get_tasks"]
    assert tasks["tasks"] == [] and len(tasks["completed_tasks"]) == 3
