"""SystemdBackend against a real systemd 252 (the session's sandbox), and its refusal without one."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from dcosd.errors import ExecutorError
from dcosd.executor.systemd import SystemdBackend, systemd_available

pytestmark = pytest.mark.root

SLICE_DIR = "dcosd.slice/dcosd-tasks.slice"


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- without systemd -------------------------------------------------------------------------------
def test_refuses_cleanly_without_systemd(tmp_path: Path) -> None:
    ok, why = systemd_available()
    host_pid1 = Path("/proc/1/comm").read_text().strip()
    if host_pid1 != "systemd":
        assert ok is False
        assert why and ("systemd" in why)
    ok, why = systemd_available(bus_address="unix:path=/nonexistent/dcosd-test-bus")
    if host_pid1 != "systemd":
        assert ok is False and why

    async def go() -> None:
        backend = SystemdBackend(tmp_path, lambda e: None, bus_address="unix:path=/nonexistent/dcosd-test-bus")
        with pytest.raises(ExecutorError, match="cannot reach systemd"):
            await backend.recover(set())
        await backend.close()

    asyncio.run(go())


def test_available_inside_the_sandbox(payload: Any) -> None:
    ok, why = payload.run("available")["available"]
    assert ok is True, why
    assert why.startswith("systemd 252")


# -- with systemd ----------------------------------------------------------------------------------
def test_exit_codes_user_argv_and_launch_failures(payload: Any, no_dcosd_units: None) -> None:
    r = payload.run("basics")
    assert r["describe"]["backend"] == "systemd"
    assert r["describe"]["cgroup_layout"] in ("v1", "hybrid", "v2")
    assert r["describe"]["cgroup_version"] in ("v1", "v2")
    assert r["ok"]["state"] == "TASK_FINISHED" and r["ok"]["exit_code"] == 0
    uid, user, cwd = r["ok_stdout"].splitlines()
    assert (uid, user) == ("65534", "nobody")  # non-root default
    assert cwd.endswith("/sandboxes/ok.1")
    assert r["ok_stderr"] == "err\n"
    assert r["fail"]["state"] == "TASK_FAILED" and r["fail"]["exit_code"] == 42
    assert r["fail"]["reason"] == "REASON_COMMAND_EXECUTOR_FAILED"
    assert r["argv_stdout"] == "$HOME a b %n\n"  # argv passed verbatim: no $VAR or %specifier expansion
    assert r["sig"]["state"] == "TASK_FAILED" and r["sig"]["signal"] == 10
    assert "203/EXEC" in r["noexec.1"] and "203/EXEC" in r["noexec.2"]
    assert "root" in r["root.1"] and "refusing" in r["root.1"]
    assert "unknown user" in r["nouser.1"]
    # each task ended exactly once; launch failures are raised, never sent to on_exit
    assert sorted(r["exits"]) == ["argv.1", "fail.1", "ok.1", "sig.1"]


def test_limits_are_real_and_oom_is_reported(payload: Any, systemd_sandbox: Any, no_dcosd_units: None) -> None:
    with payload.popen("limits") as proc:
        out, err = _limits_phase(proc, systemd_sandbox)
    assert proc.returncode == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert r["limits"]["state"] == "TASK_KILLED"
    assert r["hog"]["state"] == "TASK_FAILED"
    assert r["hog"]["reason"] == "REASON_CONTAINER_LIMITATION_MEMORY"
    assert r["hog"]["signal"] == 9  # the kernel's OOM killer
    assert r["hog_stdout"] == "hog\n"
    assert sorted(r["exits"]) == ["hog.1", "limits.1"]


def _limits_phase(proc: Any, systemd_sandbox: Any) -> tuple[str, str]:
    """While the task runs: its limits, read from the host's view of the sandbox's cgroups."""
    try:
        first = json.loads(proc.stdout.readline() or "null")
        assert first, proc.stderr.read()
        unit = first["unit"]
        layout = first["describe"]["cgroup_layout"]
        assert first["list"] == ["limits.1"]
        assert first["stats"]["mem_limit_bytes"] == 64 << 20
        assert first["stats"]["mem_bytes"] > 0
        if layout == "v2":
            cg = systemd_sandbox.host_cgroup("", f"{SLICE_DIR}/{unit}")
            assert (cg / "memory.max").read_text().strip() == str(64 << 20)
            assert (cg / "memory.swap.max").read_text().strip() == "0"
            assert (cg / "cpu.max").read_text().split()[0] == "50000"
            assert (cg / "pids.max").read_text().strip() == "4096"
        else:
            mem = systemd_sandbox.host_cgroup("memory", f"{SLICE_DIR}/{unit}")
            assert (mem / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
            cpu = systemd_sandbox.host_cgroup("cpu", f"{SLICE_DIR}/{unit}")
            period = int((cpu / "cpu.cfs_period_us").read_text())
            assert int((cpu / "cpu.cfs_quota_us").read_text()) == period // 2  # cpus=0.5
            pids = systemd_sandbox.host_cgroup("pids", f"{SLICE_DIR}/{unit}")
            assert (pids / "pids.max").read_text().strip() == "4096"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=90)
        return out, err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_kill_with_grace(payload: Any, no_dcosd_units: None) -> None:
    r = payload.run("kill", timeout=120)
    # traps SIGTERM: gets it, and ends KILLED well before its grace ran out
    assert r["trap.1"]["state"] == "TASK_KILLED"
    assert "got-term" in r["trap.1.stdout"]
    assert r["trap.1.elapsed_s"] < 4
    # ignores SIGTERM: SIGKILLed once the grace is over (StopUnit path and KillUnit path)
    for t, grace in (("ignore.1", 1.5), ("ignore.2", 1.0)):
        assert r[t]["state"] == "TASK_KILLED", r[t]
        assert r[t]["signal"] == 9
        assert grace - 0.1 <= r[t + ".elapsed_s"] < grace + 10
    for t in ("trap.1", "ignore.1", "ignore.2"):
        assert r[t + ".kill_returned_s"] < 1.0  # kill() returns at once; the end comes by on_exit
    assert sorted(r["exits"]) == ["ignore.1", "ignore.2", "trap.1"]


def test_recovery_after_agent_kill9(payload: Any, systemd_sandbox: Any, no_dcosd_units: None) -> None:
    work = payload.work_dir()
    with payload.popen("recovery_launch", work=work) as proc:
        try:
            first = json.loads(proc.stdout.readline() or "null")
            assert first, proc.stderr.read()
            launched = first["launched"]
            assert len(launched) == 20
            killed = systemd_sandbox.run(["kill", "-9", str(first["pid"])])
            assert killed.returncode == 0, killed.stderr
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    # While no backend runs, three tasks exit with known codes; their units are collected.
    expected = {"exit3.r": 3, "exit5.r": 5, "exit0.r": 0}
    for tid, sandbox in first["sandboxes"].items():
        Path(sandbox, "go").touch()
    wait_for(lambda: all(Path(s, ".dcosd-exit").exists() for s in first["sandboxes"].values()), 30,
             "the three tasks to exit")

    def collected() -> bool:
        out = systemd_sandbox.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", "dcosd-exit*"])
        return out.stdout.strip() == ""

    wait_for(collected, 30, "the ended units to be garbage-collected")
    r = payload.run("recovery_recover", {"known": launched}, work=work, timeout=120)
    found = r["found"]
    assert sorted(found) == sorted(launched)  # each once, nothing invented
    running = sorted(t for t, v in found.items() if v["running"])
    assert running == sorted(t for t in launched if t.startswith("run"))
    assert len(running) == 17
    for tid, code in expected.items():
        assert found[tid]["running"] is False
        ended = found[tid]["ended"]
        assert ended["exit_code"] == code, ended
        assert ended["state"] == ("TASK_FINISHED" if code == 0 else "TASK_FAILED")
    assert r["list"] == running
    # the adopted units are watched again: killing them reports each once, as KILLED
    assert set(r["after_kill"].values()) == {"TASK_KILLED"}
    assert sorted(r["exits"]) == running
    assert r["list_after"] == []


def test_thousand_short_tasks_leave_no_units(payload: Any, systemd_sandbox: Any, no_dcosd_units: None) -> None:
    n = int(os.environ.get("DCOSD_SYSTEST_SHORT_TASKS", "1000"))
    r = payload.run("many", {"n": n}, timeout=280)
    print(f"{n} short tasks in sequence: {r['elapsed_s']:.1f} s")
    assert r["n_bad"] == 0, r["bad"]
    assert r["exits"] == n and r["distinct_exits"] == n
    assert r["list"] == []
    assert r["state_files"] == []  # launch records are dropped once the end is delivered
    out = systemd_sandbox.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", "dcosd-*"]).stdout
    assert [line for line in out.splitlines() if ".service" in line] == []
