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

import importlib.util
import json
import os
import shutil
import tempfile
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
sandbox_mod = sys.modules["dcosd_tests_system_sandbox"]  # loaded by tests/system/conftest.py


def _load(name: str, path: Path) -> Any:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return sys.modules[name]


_bm = _load("dcosd_tests_binary_machine", Path(__file__).with_name("binary_machine.py"))
MASTER_DATA = "/var/lib/dcosd-test-master"
BIN, Machine, start_machine, stop_machine, wait_for = (_bm.BIN, _bm.Machine, _bm.start_machine, _bm.stop_machine,
                                                       _bm.wait_for)
pytestmark = [pytest.mark.root, pytest.mark.timeout(900)]


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
    # Under /var/tmp, not the repo nor pytest's tmp: the sandbox mounts its own /tmp, and the clone
    # itself may live under /tmp (CI's does, somewhere); /var/tmp is neither overlaid nor hidden.
    copy_dir = Path(tempfile.mkdtemp(prefix="dcosd-test-binary-", dir="/var/tmp"))
    copy_dir.chmod(0o755)
    copy = copy_dir / "dcosd"
    shutil.copy2(REPO / "dist" / "dcosd", copy)
    yield copy
    shutil.rmtree(copy_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def machine(request: pytest.FixtureRequest) -> Iterator[Machine]:
    ok, why = sandbox_mod.available()
    if not ok:
        pytest.skip(why)
    m = start_machine(sandbox_mod)
    request.addfinalizer(lambda: stop_machine(m))
    yield m


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


def test_binary_carries_every_data_file_of_the_package(built_binary: Path) -> None:
    """Catalogue, web UI, notes: whatever dcosd/ holds besides Python is in the binary, with no spec change."""
    viewer = REPO / ".venv-build" / "bin" / "pyi-archive_viewer"
    listing = subprocess.run([str(viewer), "--list", str(built_binary)], capture_output=True, text=True,
                             timeout=120).stdout
    bundled = {line.rsplit(",", 1)[-1].strip().strip("'") for line in listing.splitlines()}
    shipped = {str(p.relative_to(REPO)) for p in (REPO / "dcosd").rglob("*")
               if p.is_file() and p.suffix not in (".py", ".pyc", ".pyi") and "__pycache__" not in p.parts}
    assert shipped, "the package ships no data files?"
    assert shipped - bundled == set()
    assert {f"systemd/{n}" for n in ("dcosd-master.service", "dcosd-agent.service", "dcosd-tasks.slice")} <= bundled


def test_children_get_the_hosts_environment(built_binary: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task of the binary's agent (process backend, no systemd) sees none of the bootloader's variables."""
    from harness import cluster as harness

    monkeypatch.setattr(harness, "DCOSD", [str(built_binary)])
    tmp = harness.world_readable_tmp("dcosd-binary-env-")
    factory = harness.ClusterFactory(tmp)
    try:
        master = factory.master()
        factory.agent(master, "--backend", "process")
        r = master.cli("run", "--wait", "--", "env", check=True)
        assert "PATH=" in r.stdout, r
        for leak in ("_PYI_", "_MEI", "LD_LIBRARY_PATH"):
            assert leak not in r.stdout, r.stdout
    finally:
        factory.stop_all()
        for work in tmp.glob("agent-*"):
            harness.kill_tree_of_tasks(work)
        shutil.rmtree(tmp, ignore_errors=True)


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
    # DNS off: the sandbox shares the host's network, and port 53 of 127.0.0.1 may be taken there.
    # The master's data outside /var/lib/dcosd: the unit's ProtectSystem=strict gets a drop-in.
    r = m.run([str(built_binary), "install", "master", "--listen", f"127.0.0.1:{m.master_port}",
               "--set", "dns-listen=off", "--set", f"data-dir={MASTER_DATA}"])
    assert "dcosd-master.service.d/data-dir.conf  (units)" in r.stdout, r.stdout
    assert "reloaded   systemd" in r.stdout and "started    dcosd-master.service  (ready)" in r.stdout, r.stdout
    r = m.run([str(built_binary), "install", "agent", "--master", m.master_url,
               "--listen", f"127.0.0.1:{m.agent_port}"])
    assert f"using the local master's cluster secret ({MASTER_DATA}/cluster.secret)" in r.stdout, r.stdout
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
    assert f"kept       /etc/dcosd/dcosd.toml, /var/lib/dcosd, {MASTER_DATA}" in r.stdout, r.stdout
    assert m.units() == []
    assert m.run(["systemctl", "list-unit-files", "--no-legend", "dcosd*"], check=False).stdout.strip() == ""
    assert m.run(["test", "-e", BIN], check=False).returncode == 1
    assert m.run(["test", "-d", "/var/lib/dcosd/agent"], check=False).returncode == 0  # data kept
    assert m.run(["test", "-e", "/etc/systemd/system/dcosd-master.service.d"], check=False).returncode == 1

    r = m.run([sys.executable, "-m", "dcosd", "uninstall", "--purge"], wd=str(REPO))  # any dcosd can
    assert "purged     /var/lib/dcosd" in r.stdout and "purged     /etc/dcosd" in r.stdout, r.stdout
    assert f"not purged {MASTER_DATA}" in r.stdout, r.stdout
    r = m.run([sys.executable, "-m", "dcosd", "uninstall"], wd=str(REPO))
    assert "(nothing was installed)" in r.stdout, r.stdout
