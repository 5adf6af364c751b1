"""The built one-file binary: it runs with an empty environment, and `dcosd install` makes a working
master and agent under a real systemd (a sandbox of this module's own, see tests/system/sandbox.py).

The binary is built once per session by packaging/build.sh (about a minute; longer on a fresh
machine, which first fills .venv-build). The sandbox shares the host's root filesystem, so before
anything is installed the paths `dcosd install` writes — /etc, /usr/local, /var/lib — are overlaid
(copy-on-write, upper layers in a temporary directory) and /tmp is a tmpfs, all in the sandbox's
mount namespace only: the host's files are never touched. Ports are free ones on 127.0.0.1 (the
sandbox shares the host's network).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
sandbox_mod = sys.modules["dcosd_tests_system_sandbox"]  # loaded by tests/system/conftest.py
pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]

BIN = "/usr/local/bin/dcosd"
OVERLAID = ("/etc", "/usr/local", "/var/lib")


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_head() -> str:
    return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()


HEADS_AT_BUILD: set[str] = set()  # HEAD before and after the build: others may commit meanwhile


@pytest.fixture(scope="session")
def built_binary() -> Iterator[Path]:
    """packaging/build.sh, once per session; a private copy (a concurrent build may replace dist/dcosd)."""
    HEADS_AT_BUILD.add(git_head())
    r = subprocess.run([str(REPO / "packaging" / "build.sh")], cwd=REPO, capture_output=True, text=True,
                       timeout=840)
    HEADS_AT_BUILD.add(git_head())
    assert r.returncode == 0, f"packaging/build.sh failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    # Under build/ (the repo's, world-readable), not pytest's tmp: the sandbox mounts its own /tmp.
    copy_dir = REPO / "build" / f"test-binary-{os.getpid()}"
    copy_dir.mkdir(parents=True, exist_ok=True)
    copy = copy_dir / "dcosd"
    shutil.copy2(REPO / "dist" / "dcosd", copy)
    yield copy
    shutil.rmtree(copy_dir, ignore_errors=True)


class Machine:
    """The sandbox seen as one machine: run commands in it, the binary's CLI against its master."""

    def __init__(self, sb: Any) -> None:
        self.sb = sb
        self.master_port = free_port()
        self.agent_port = free_port()
        self.master_url = f"http://127.0.0.1:{self.master_port}"

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 120,
            wd: str | None = None) -> subprocess.CompletedProcess[str]:
        r = self.sb.run(argv, timeout=timeout, wd=wd)
        if check:
            assert r.returncode == 0, f"{argv} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([BIN, "--master", self.master_url, *args], check=check)

    def show(self, unit: str, prop: str) -> str:
        return self.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()

    def units(self, pattern: str = "dcosd*") -> list[str]:
        out = self.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", pattern]).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def task(self, task_id: str) -> dict[str, Any]:
        return json.loads(self.cli("task", "show", task_id, "--json").stdout)

    def journal(self, unit: str) -> str:
        return self.run(["journalctl", "-u", unit, "--no-pager", "-q", "-o", "cat"]).stdout


@pytest.fixture(scope="module")
def machine(request: pytest.FixtureRequest, built_binary: Path) -> Iterator[Machine]:
    ok, why = sandbox_mod.available()
    if not ok:
        pytest.skip(why)
    sb = sandbox_mod.SystemdSandbox()
    layers = Path(tempfile.mkdtemp(prefix="dcosd-binary-layers-"))
    request.addfinalizer(lambda: shutil.rmtree(layers, ignore_errors=True))
    request.addfinalizer(sb.stop)  # runs first: unmounts everything with the namespace
    sb.start()
    for path in OVERLAID:
        layer = layers / path.strip("/").replace("/", "_")
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        opts = f"lowerdir={path},upperdir={layer / 'upper'},workdir={layer / 'work'}"
        r = sb.run(["mount", "-t", "overlay", "overlay", "-o", opts, path])
        assert r.returncode == 0, f"overlay on {path}: {r.stderr}"
    r = sb.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/tmp"])
    assert r.returncode == 0, r.stderr
    yield Machine(sb)


# -- the build --------------------------------------------------------------------------------------
def test_binary_runs_with_an_empty_environment(built_binary: Path) -> None:
    r = subprocess.run(["env", "-i", str(built_binary), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("dcosd ")
    fields = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert fields["commit"][:12] in HEADS_AT_BUILD, (fields["commit"], HEADS_AT_BUILD)
    assert fields["sqlite"].startswith("3."), fields["sqlite"]
    assert fields["pystemd"][0].isdigit(), fields["pystemd"]
    assert "bundled" in fields["python"]
    # No Python needed: not on PATH (there is none), and the binary links no libpython of the host.
    ldd = subprocess.run(["ldd", str(built_binary)], capture_output=True, text=True).stdout
    assert "libpython" not in ldd, ldd
    # The click path prints the same text.
    r2 = subprocess.run(["env", "-i", str(built_binary), "--master", "http://x", "--version"],
                        capture_output=True, text=True, timeout=60)
    assert r2.stdout.splitlines()[:2] == lines[:2]


def test_install_refuses_without_root_or_systemd(built_binary: Path, machine: Machine) -> None:
    # systemd is not PID 1: a mount namespace whose /run has no /run/systemd/system.
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs tmpfs /run && exec {built_binary} install master"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "systemd is not PID 1" in r.stderr, r
    # Not root (inside the sandbox, where systemd is PID 1).
    r = machine.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(built_binary),
                     "install", "master"], check=False)
    assert r.returncode == 1 and "must run as root" in r.stderr, r
    # From Python sources, without --binary.
    r = machine.run([sys.executable, "-m", "dcosd", "install", "agent", "--master", "http://x",
                     "--secret-file", "/etc/hostname"], wd=str(REPO), check=False)
    assert r.returncode == 1 and "--binary" in r.stderr, r
    assert machine.units() == []
    assert machine.run(["test", "-e", BIN], check=False).returncode == 1


@pytest.fixture(scope="module")
def installed(machine: Machine, built_binary: Path) -> Machine:
    m = machine
    r = m.run([str(built_binary), "install", "master", "--listen", f"127.0.0.1:{m.master_port}"])
    assert "reloaded   systemd" in r.stdout and "started    dcosd-master.service  (ready)" in r.stdout, r.stdout
    r = m.run([str(built_binary), "install", "agent", "--master", m.master_url,
               "--listen", f"127.0.0.1:{m.agent_port}"])
    assert "using the local master's cluster secret" in r.stdout, r.stdout
    assert "started    dcosd-agent.service  (ready)" in r.stdout, r.stdout
    return m


def test_install_master_and_agent(installed: Machine) -> None:
    m = installed
    for role in ("master", "agent"):
        unit = f"dcosd-{role}.service"
        assert m.show(unit, "ActiveState") == "active"
        assert m.show(unit, "UnitFileState") == "enabled"
        assert m.show(unit, "Type") == "notify"
        assert m.show(unit, "FragmentPath") == f"/etc/systemd/system/{unit}"
    assert m.show("dcosd-master.service", "StatusText") == f"serving at {m.master_url}"
    assert m.show("dcosd-agent.service", "StatusText").startswith(f"serving on port {m.agent_port}, backend systemd")
    config = m.run(["cat", "/etc/dcosd/dcosd.toml"]).stdout
    assert f'listen = "127.0.0.1:{m.master_port}"' in config and f'master = "{m.master_url}"' in config
    assert m.run([BIN, "--version"]).stdout.startswith("dcosd ")
    wait_for(lambda: json.loads(m.cli("node", "list", "--json").stdout), 30, "the agent to register")

    # Idempotent: the same install again changes nothing and restarts nothing.
    pid = m.show("dcosd-agent.service", "MainPID")
    r = m.run([BIN, "install", "agent", "--master", m.master_url, "--listen", f"127.0.0.1:{m.agent_port}"])
    assert "running    dcosd-agent.service  (nothing changed)" in r.stdout and "reloaded" not in r.stdout, r.stdout
    assert m.show("dcosd-agent.service", "MainPID") == pid


def test_task_outlives_agent_restart_and_stop(installed: Machine) -> None:
    m = installed
    task_id = m.cli("run", "--name", "sleeper", "--", "sh", "-c", "echo hello-from-the-task; exec sleep 600"
                    ).stdout.strip().splitlines()[-1]
    wait_for(lambda: m.task(task_id)["state"] == "TASK_RUNNING", 60, "the task to run")
    units = [u for u in m.units("dcosd-sleeper*") if task_id in m.show(u, "Description")]
    assert len(units) == 1, units
    unit = units[0]
    assert m.show(unit, "Slice") == "dcosd-tasks.slice"
    assert m.show(unit, "ControlGroup").startswith("/dcosd.slice/dcosd-tasks.slice/")
    task_pid = m.show(unit, "MainPID")
    assert wait_for(lambda: "hello-from-the-task" in m.cli("task", "logs", task_id).stdout, 30, "the task's output")

    # Restart: the task keeps running and the new agent re-adopts it.
    agent_pid = m.show("dcosd-agent.service", "MainPID")
    m.run(["systemctl", "restart", "dcosd-agent"])
    assert m.show("dcosd-agent.service", "MainPID") != agent_pid
    assert m.show(unit, "ActiveState") == "active" and m.show(unit, "MainPID") == task_pid
    wait_for(lambda: "recovered 1 task(s): 1 running" in m.journal("dcosd-agent.service"), 30,
             "the restarted agent to re-adopt the task")

    # Stop: the task still runs.
    m.run(["systemctl", "stop", "dcosd-agent"])
    assert m.show("dcosd-agent.service", "ActiveState") == "inactive"
    assert m.show(unit, "ActiveState") == "active" and m.show(unit, "MainPID") == task_pid

    # Started again, the agent holds the task: a kill through the master reaches it.
    m.run(["systemctl", "start", "dcosd-agent"])
    wait_for(lambda: m.task(task_id)["state"] == "TASK_RUNNING" and
             m.journal("dcosd-agent.service").count("registered with") >= 3, 60, "the agent to register again")
    m.cli("task", "kill", task_id)
    wait_for(lambda: m.task(task_id)["state"] == "TASK_KILLED", 60, "the task to be killed")
    wait_for(lambda: unit not in m.units("dcosd-sleeper*"), 30, "the task's unit to go")


def test_journal_has_the_agents_log(installed: Machine) -> None:
    log = installed.journal("dcosd-agent.service")
    assert "executor backend: systemd" in log
    assert f"agent serving on port {installed.agent_port}" in log
    assert "registered with" in log
    assert "master ready at" in installed.journal("dcosd-master.service")


def test_uninstall_leaves_no_unit_behind(installed: Machine) -> None:
    m = installed
    task_id = m.cli("run", "--name", "left", "--", "sleep", "600").stdout.strip().splitlines()[-1]
    wait_for(lambda: m.task(task_id)["state"] == "TASK_RUNNING", 60, "the task to run")
    r = m.run([BIN, "uninstall"])
    assert "stopped    dcosd.slice  (1 task unit(s))" in r.stdout, r.stdout
    assert "kept       /etc/dcosd/dcosd.toml, /var/lib/dcosd" in r.stdout, r.stdout
    assert m.units() == []
    assert m.run(["systemctl", "list-unit-files", "--no-legend", "dcosd*"], check=False).stdout.strip() == ""
    assert m.run(["test", "-e", BIN], check=False).returncode == 1
    assert m.run(["test", "-d", "/var/lib/dcosd/master"], check=False).returncode == 0  # data kept

    r = m.run([sys.executable, "-m", "dcosd", "uninstall", "--purge"], wd=str(REPO))  # any dcosd can
    assert "purged     /var/lib/dcosd" in r.stdout and "purged     /etc/dcosd" in r.stdout, r.stdout
    r = m.run([sys.executable, "-m", "dcosd", "uninstall"], wd=str(REPO))
    assert "(nothing was installed)" in r.stdout, r.stdout
