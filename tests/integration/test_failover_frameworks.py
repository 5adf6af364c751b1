"""Frameworks across a kill -9 of the leading master: five real masters (Raft), real agents given every
master, a real pymesos scheduler process and marathon-python. Clients are given one follower (the
seed); it is paused while the leader is killed, so a third master leads and the seed has to send them
on: 503 without a leader, 307 for the scheduler API, a proxy for Marathon writes.

- pymesos: the framework re-subscribes with its framework id through a surviving master (503 while
  there is no leader, 307 to the new one), RECONCILE answers TASK_RUNNING for every task, nothing is
  lost or duplicated on the agents, and new tasks launch through the new leader.
- services: the leader dies with a deployment half done; the new leader finishes it with exactly the
  target count, healthy, one process per task, and /v2/deployments empty.

Processes on the agents are counted by the MESOS_TASK_ID in their environment.
"""

from __future__ import annotations

import collections
import collections.abc
import importlib.util
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.harness.cluster import wait_for
from tests.harness.ha_cluster import TOKEN, HaCluster, MastersWithAgents

APPS = Path(__file__).parent.parent / "compat" / "pymesos_apps"
HAVE_PYMESOS = importlib.util.find_spec("pymesos") is not None and importlib.util.find_spec("http_parser") is not None


class Cluster(MastersWithAgents):
    """Five masters and the agents of one test."""

    def __init__(self, tmp: Path) -> None:
        # Five masters: the leader can be killed while the seed is paused, and the other three still
        # elect one of themselves — so the seed, the master clients are given, is a follower again after
        # the failover and has to send them on (503 while there is no leader, then 307 or a proxy).
        super().__init__(tmp, ids=("m1", "m2", "m3", "m4", "m5"))

    def seed(self) -> str:
        """A follower: the master the clients of a test are given."""
        leader = self.leader()
        return next(i for i in self.ha.ids if i != leader)

    def kill_leader(self, seed: str) -> tuple[str, str]:
        """kill -9 the leader while the seed is paused, so another master leads; then resume the seed."""
        old = self.leader()
        assert old != seed
        self.ha.procs[seed].popen.send_signal(signal.SIGSTOP)
        self.paused.add(seed)
        try:
            self.ha.kill9(old)
            new = self.ha.wait_leader(self.alive_masters(), timeout=30)
        finally:
            self.ha.procs[seed].popen.send_signal(signal.SIGCONT)
            self.paused.discard(seed)
        assert self.ha.wait_leader(self.alive_masters(), timeout=30) == new
        assert new not in (old, seed)
        return old, new


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path)
    try:
        c.ha.start_all()
        c.leader()
        yield c
    finally:
        c.stop()


def task_processes(env_key: str, value: str | None = None) -> dict[str, list[int]]:
    """{MESOS_TASK_ID: [pids of `sleep` processes]} over this machine, for tasks whose env has env_key(=value)."""
    out: dict[str, list[int]] = {}
    for p in psutil.process_iter(["pid", "name"]):
        if p.info["name"] != "sleep":
            continue
        try:
            env = p.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if env_key in env and (value is None or env[env_key] == value) and "MESOS_TASK_ID" in env:
            out.setdefault(env["MESOS_TASK_ID"], []).append(p.info["pid"])
    return out


class LineReader:
    """JSON lines of a child's stdout, collected by a thread; waited on with a deadline."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(popen,), daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self, popen: subprocess.Popen) -> None:
        assert popen.stdout is not None
        for raw in popen.stdout:
            if raw.startswith("{"):
                with self._cond:
                    self.lines.append(json.loads(raw))
                    self._cond.notify_all()

    def wait(self, pred: Any, timeout: float, what: str) -> dict[str, Any]:
        with self._cond:
            found: list[dict[str, Any]] = []

            def check() -> bool:
                found[:] = [x for x in self.lines if pred(x)]
                return bool(found)

            if not self._cond.wait_for(check, timeout):
                raise AssertionError(f"timed out waiting for {what}; lines: {self.lines[-20:]}")
            return found[0]


@pytest.mark.skipif(not HAVE_PYMESOS, reason="pymesos is not installed (scripts/setup.sh test installs it)")
def test_pymesos_framework_survives_kill9_of_the_leader(cluster: Cluster, tmp_path: Path):
    ha = cluster.ha
    for name in ("a", "b"):  # pymesos' framework user is the caller's (root here)
        cluster.start_agent(name, "cpus:2;mem:1024", "--allow-root-tasks")
    cluster.wait_agents(2)
    seed = cluster.seed()  # a follower: it answers 307 to the leader (503 while there is none)
    n = 3
    err = open(tmp_path / "scheduler.log", "w")  # noqa: SIM115 — closed in the finally below
    app = subprocess.Popen([sys.executable, str(APPS / "failover_scheduler.py"), f"127.0.0.1:{ha.ports[seed]}",
                            TOKEN, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
    lines = LineReader(app)
    try:
        fid = lines.wait(lambda x: x.get("event") == "registered", 60, "registered")["framework_id"]
        first = lines.wait(lambda x: x.get("event") == "running", 60, "the first tasks running")["ids"]
        assert set(task_processes("MESOS_TASK_ID")) >= set(first)

        _, new_leader = cluster.kill_leader(seed)

        re = lines.wait(lambda x: x.get("event") == "reregistered", 90, "re-subscription to the new leader")
        assert re["framework_id"] == fid and re["master"] == f"127.0.0.1:{ha.ports[new_leader]}", re
        second = lines.wait(lambda x: x.get("event") == "relaunched", 90, "tasks launched through the new leader")["ids"]

        # RECONCILE answered TASK_RUNNING for every task of before the failover.
        rec = {x["task_id"]: x for x in lines.lines if x.get("phase") == "reconcile" and x.get("task_id") in first}
        assert set(rec) == set(first), lines.lines
        assert all(x["state"] == "TASK_RUNNING" for x in rec.values()), rec
        # Nothing of ours ever reported anything but STAGING/STARTING/RUNNING (no LOST, no DROPPED).
        ours = set(first) | set(second)
        bad = [x for x in lines.lines if x.get("task_id") in ours and x["state"] not in
               ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING")]
        assert not bad, bad
        assert not any(x.get("task_id") not in ours for x in lines.lines if "task_id" in x), lines.lines

        # The new leader knows exactly these tasks of the framework, all running.
        tasks = cluster.call("POST", "/api/v1", {"type": "GET_TASKS"})["get_tasks"]
        mine = {t["task_id"]["value"]: t["state"] for t in tasks["tasks"] if t["framework_id"]["value"] == fid}
        assert mine == {t: "TASK_RUNNING" for t in ours}, mine
        assert not [t for t in tasks.get("completed_tasks", []) if t["framework_id"]["value"] == fid]
        # One process per task on the agents: none lost, none started twice.
        procs = task_processes("MESOS_TASK_ID")
        assert {t: len(procs.get(t, [])) for t in ours} == {t: 1 for t in ours}, procs

        assert app.stdin is not None
        app.stdin.write("finish\n")
        app.stdin.flush()
        assert lines.wait(lambda x: "done" in x, 60, "the scheduler to finish")["done"] is True
        app.wait(30)
        wait_for(lambda: not set(task_processes("MESOS_TASK_ID")) & ours, timeout=30, what="tasks killed")
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(10)
        lines.join(10)
        for f in (app.stdin, app.stdout, err):
            if f is not None:
                f.close()


def marathon_client(url: str) -> Any:
    collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]  # marathon 0.13 on ≥ 3.10
    marathon = pytest.importorskip("marathon")
    return marathon.MarathonClient(url, auth_token=TOKEN)


def create_app(c: Any, app_id: str, instances: int) -> None:
    """`sleep 300` instances of 0.1 cpus with a COMMAND health check that passes once the task ran."""
    from marathon.models import MarathonApp, MarathonHealthCheck

    check = MarathonHealthCheck(protocol="COMMAND", command="test -e ready", interval_seconds=0.5,
                                grace_period_seconds=20, timeout_seconds=5, max_consecutive_failures=3)
    c.create_app(app_id, MarathonApp(cmd="touch ready; exec sleep 300", cpus=0.1, mem=16, instances=instances,
                                     health_checks=[check]))


def assert_deployed(ha: HaCluster, leader: str, app_id: str, n: int) -> list[Any]:
    """The deployment is over with exactly n healthy instances, one process each, nothing extra."""
    c = marathon_client(ha.urls[leader])

    def done() -> bool:
        app = c.get_app(app_id)
        return app.tasks_running == n and app.tasks_healthy == n and not app.deployments and c.list_deployments() == []

    wait_for(done, timeout=60, interval=0.2, what=f"{app_id}: the deployment finished by the new leader")
    tasks = c.list_tasks(app_id)
    assert len(tasks) == n and all(t.state == "TASK_RUNNING" for t in tasks), tasks
    ids = {t.id for t in tasks}
    assert len(ids) == n
    # Exactly one process per instance on the agents; none of a task the master does not know as running.
    wait_for(lambda: task_processes("MARATHON_APP_ID", app_id).keys() == ids, timeout=20,
             what="one process per instance, no others")
    procs = task_processes("MARATHON_APP_ID", app_id)
    assert all(len(v) == 1 for v in procs.values()), procs
    # The master never launched more than n for the app (no task ended to be replaced either).
    code, body = ha.api(leader, "GET", "/dcosd/v1/tasks?all=1&limit=1000")
    assert code == 200
    launched = [(t["id"], t["state"]) for t in body["tasks"]
                if t.get("spec", {}).get("labels", {}).get("DCOSD_APP_ID") == app_id]
    assert sorted(launched) == sorted((i, "TASK_RUNNING") for i in ids), launched
    return tasks


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_deployment_waiting_for_capacity_finishes_on_the_new_leader(cluster: Cluster):
    ha = cluster.ha
    # Agent a has room for 3 instances of 0.1 cpus; the other 3 wait until agent b joins — after the
    # leader is gone, so the new leader has to finish a deployment it did not start.
    cluster.start_agent("a", "cpus:0.35;mem:1024;disk:1000;ports:[31000-31100]", "--hostname", "host-a")
    cluster.wait_agents(1)
    seed = cluster.seed()
    c = marathon_client(ha.urls[seed])  # a follower: it proxies writes to the leader
    create_app(c, "/fo/web", 6)

    def running() -> set[str]:
        return {t.id for t in c.list_tasks("/fo/web") if t.state == "TASK_RUNNING"}

    before = wait_for(lambda: r if len(r := running()) == 3 else None, timeout=30, what="3 of 6 instances running")
    assert len(c.list_deployments()) == 1

    _, new_leader = cluster.kill_leader(seed)
    assert len(c.list_deployments()) == 1  # through the seed, a follower again
    cluster.start_agent("b", "cpus:2;mem:1024;disk:1000;ports:[31000-31100]", "--hostname", "host-b")
    cluster.wait_agents(2)

    tasks = assert_deployed(ha, new_leader, "/fo/web", 6)
    assert before <= {t.id for t in tasks}  # the instances of before the failover were kept
    assert sorted(t.host for t in tasks) == ["host-a"] * 3 + ["host-b"] * 3


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_leader_killed_with_launches_in_flight(cluster: Cluster):
    """Killed as soon as the first instance runs: the others are committed launches the agents may or may
    not have heard of; the new leader resends what they lack and launches nothing twice."""
    ha = cluster.ha
    for name in ("a", "b"):
        cluster.start_agent(name, "cpus:2;mem:1024;disk:1000;ports:[31000-31100]", "--hostname", f"host-{name}")
    cluster.wait_agents(2)
    seed = cluster.seed()
    c = marathon_client(ha.urls[seed])
    create_app(c, "/fo/burst", 6)
    wait_for(lambda: task_processes("MARATHON_APP_ID", "/fo/burst"), timeout=30, interval=0.01,
             what="a first instance started")
    _, new_leader = cluster.kill_leader(seed)
    cluster.wait_agents(2)
    assert_deployed(ha, new_leader, "/fo/burst", 6)
