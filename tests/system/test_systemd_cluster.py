"""The whole path on a machine that runs systemd: a master, and an agent inside the real systemd sandbox.

The master runs on the host's loopback; the agent runs inside the sandbox (its pid, mount and cgroup
namespaces — the network is shared), picks the systemd backend by itself and runs every task as a
transient unit. The agent is killed with kill -9 by its host pid, as a crash would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from harness.cluster import ClusterFactory, Master, free_port, kill_tree_of_tasks, wait_for

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_DROPPED", "TASK_ERROR"}


class SandboxAgent:
    """`dcosd agent` started inside the sandbox through nsenter; killed by its own (host) pid."""

    def __init__(self, sb: Any, master: Master, work_dir: Path, port: int) -> None:
        self.sb, self.master, self.work_dir, self.port = sb, master, work_dir, port
        self.log_path = work_dir.parent / f"agent-{port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SandboxAgent":
        argv = [sys.executable, "-m", "dcosd", "agent", "--master", self.master.url, "--work-dir",
                str(self.work_dir), "--listen", f"127.0.0.1:{self.port}", "--secret", self.master.secret,
                "--log-level", "debug"]
        log = open(self.log_path, "ab")
        self.proc = self.sb.popen(argv, wd=str(REPO), stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        log.close()
        return self

    def pid(self) -> int | None:
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = p.info["cmdline"] or []
            if "agent" in cmd and str(self.work_dir) in cmd and "nsenter" not in cmd[0]:
                return p.info["pid"]
        return None

    def agent_id(self) -> str | None:
        import apsw

        db = apsw.Connection(str(self.work_dir / "agent.db"), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            return next((v for (v,) in db.execute("SELECT value FROM meta WHERE key='agent_id'")), None)
        finally:
            db.close()

    def wait_registered(self) -> str:
        def ok() -> str | None:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            aid = self.agent_id() if (self.work_dir / "agent.db").exists() else None
            return aid if aid and any(n["id"] == aid and n["connected"] for n in self.master.nodes()) else None

        return wait_for(ok, 30, what="agent in the sandbox to register")

    def kill9(self) -> None:
        pid = self.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        if self.proc is not None:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                if (pid := self.pid()) is not None:
                    os.kill(pid, signal.SIGKILL)
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def world_tmp() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="dcosd-syscluster-"))
    root.chmod(0o755)  # tasks run as nobody and must reach their sandboxes
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(systemd_sandbox: Any, world_tmp: Path, no_dcosd_units: None) -> Iterator[tuple[Master, Any]]:
    factory = ClusterFactory(world_tmp)
    agents: list[SandboxAgent] = []

    def agent(m: Master) -> SandboxAgent:
        a = SandboxAgent(systemd_sandbox, m, world_tmp / f"agent-{len(agents)}", free_port()).start()
        agents.append(a)
        return a

    try:
        yield factory.master(), agent
    finally:
        for a in agents:
            a.stop()
        # Tasks outlive agents by design: stop what a failed test left running.
        systemd_sandbox.run(["systemctl", "stop", "dcosd-*.service"])
        factory.stop_all()


def submit(m: Master, **spec: Any) -> str:
    status, body = m.api("POST", "/dcosd/v1/tasks", spec)
    assert status == 201, body
    return body["task_id"]


def wait_state(m: Master, task_id: str, states: set[str] | str, timeout: float = 30) -> dict:
    want = {states} if isinstance(states, str) else states
    return wait_for(lambda: (t := m.task(task_id))["state"] in want and t, timeout, what=f"{task_id} in {want}")


def dcosd_units(sb: Any) -> list[str]:
    out = sb.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", "dcosd-*.service"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_agent_picks_systemd_and_runs_tasks_as_units(cluster, systemd_sandbox):
    m, start_agent = cluster
    a = start_agent(m)
    agent_id = a.wait_registered()
    node = json.loads(m.cli("node", "show", agent_id, "--json", check=True).stdout)
    assert node["backend"]["backend"] == "systemd"
    assert node["backend"]["cgroup_version"] in ("v1", "v2")
    shown = m.cli("node", "show", agent_id, check=True).stdout
    assert "systemd (cgroup" in shown
    assert "systemd backend" in a.log() or "executor backend: systemd" in a.log()

    cp = m.cli("run", "--wait", "--", "sh", "-c", "echo hello; id -un")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "hello\nnobody\n"
    assert m.cli("run", "--wait", "--", "sh", "-c", "exit 9").returncode == 9

    task_id = submit(m, argv=["sleep", "300"], kill_grace_seconds=1)
    wait_state(m, task_id, "TASK_RUNNING")
    units = dcosd_units(systemd_sandbox)
    assert len(units) == 1 and units[0].startswith("dcosd-sleep")
    m.cli("task", "kill", task_id, check=True)
    assert wait_state(m, task_id, TERMINAL)["state"] == "TASK_KILLED"
    wait_for(lambda: dcosd_units(systemd_sandbox) == [], 15, what="the killed task's unit to be collected")


def test_agent_kill9_readopts_17_and_reports_3_real_exit_codes(cluster, systemd_sandbox):
    m, start_agent = cluster
    a = start_agent(m)
    agent_id = a.wait_registered()
    res = {"cpus": 0.05, "mem": 16}
    sleepers = [submit(m, argv=["sleep", "600"], resources=res, kill_grace_seconds=1) for _ in range(17)]
    codes = [3, 5, 0]
    # Each exits with its code once a file appears in its sandbox — while the agent is down.
    enders = {submit(m, cmd=f"while [ ! -e go ]; do sleep 0.1; done; exit {c}", resources=res): c for c in codes}
    for t in sleepers + list(enders):
        wait_state(m, t, "TASK_RUNNING", timeout=60)
    assert len(dcosd_units(systemd_sandbox)) == 20

    a.kill9()
    assert len(dcosd_units(systemd_sandbox)) == 20  # kill -9 of the agent leaves every task running
    for t in enders:
        (a.work_dir / "sandboxes" / t / "go").touch()
    wait_for(lambda: len(dcosd_units(systemd_sandbox)) == 17, 30, what="3 tasks to exit while the agent is down")

    a.start()
    assert a.wait_registered() == agent_id
    for t, code in enders.items():
        st = wait_state(m, t, TERMINAL, timeout=30)
        assert st["exit_code"] == code, st
        assert st["state"] == ("TASK_FINISHED" if code == 0 else "TASK_FAILED")
    for t in sleepers:
        st = m.task(t)
        assert st["state"] == "TASK_RUNNING"
        assert [s["state"] for s in st["statuses"]] == ["TASK_STAGING", "TASK_RUNNING"]  # none relaunched
    assert len(dcosd_units(systemd_sandbox)) == 17  # none duplicated
    node = m.get(f"/dcosd/v1/nodes/{agent_id}")
    assert sorted(t["id"] for t in node["tasks"]) == sorted(sleepers)

    for t in sleepers:
        m.cli("task", "kill", t, check=True)
    for t in sleepers:
        assert wait_state(m, t, TERMINAL)["state"] == "TASK_KILLED"
    wait_for(lambda: dcosd_units(systemd_sandbox) == [], 20, what="all units collected")


def test_agent_without_systemd_falls_back_to_cgroups_and_says_so(tmp_path: Path):
    if Path("/proc/1/comm").read_text().strip() == "systemd":
        pytest.skip("this host runs systemd as PID 1: there is nothing to fall back from")
    factory = ClusterFactory(tmp_path)
    try:
        m = factory.master()
        a = factory.agent(m)
        (node,) = m.nodes()
        assert node["backend"]["backend"] == "cgroups"
        assert "not systemd" in a.proc.log() or "systemd is not" in a.proc.log()
        shown = m.cli("node", "show", node["id"], check=True).stdout
        assert "cgroups (cgroup v1" in shown or "cgroups (cgroup v2" in shown
    finally:
        factory.stop_all()
        kill_tree_of_tasks(tmp_path)
