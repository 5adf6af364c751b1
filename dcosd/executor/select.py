"""Which executor backend an agent uses: the best this host supports, or the one asked for.

    systemd   when systemd is PID 1 and its bus answers: tasks are transient units
    cgroups   else, when we are root and a cgroup hierarchy with cpu and memory is mounted
    process   else: plain processes with rlimits, no isolation (development only)

The choice comes with a sentence saying why, for the agent's log and `dcosd agent info`.
"""

from __future__ import annotations

from pathlib import Path

from dcosd.executor.base import ExecutorBackend, ExecutorError, ExitCallback

BACKENDS = ("systemd", "cgroups", "process")


def _systemd_available() -> tuple[bool, str]:
    # sd_booted()'s own test, checked first so hosts without systemd never import pystemd.
    if not Path("/run/systemd/system").is_dir():
        return False, "systemd is not the init system (no /run/systemd/system)"
    try:
        from dcosd.executor.systemd import systemd_available
    except ImportError as exc:
        return False, f"the systemd backend cannot be loaded ({exc})"
    return systemd_available()


def _make(name: str, work_dir: Path, on_exit: ExitCallback) -> ExecutorBackend:
    if name == "systemd":
        from dcosd.executor.systemd import SystemdBackend

        return SystemdBackend(work_dir, on_exit)
    if name == "cgroups":
        from dcosd.executor.cgroups import CgroupsBackend

        return CgroupsBackend(work_dir, on_exit)
    from dcosd.executor.process import ProcessBackend

    return ProcessBackend(work_dir, on_exit)


def choose_backend(forced: str | None, work_dir: Path, on_exit: ExitCallback) -> tuple[ExecutorBackend, str]:
    """The backend to run tasks with, and why it was chosen. ExecutorError if ``forced`` cannot run here."""
    from dcosd.executor.cgroups import cgroups_available

    checks = {"systemd": _systemd_available, "cgroups": cgroups_available, "process": lambda: (True, "always")}
    if forced not in (None, "", "auto"):
        if forced not in BACKENDS:
            raise ExecutorError(f"unknown executor backend {forced!r} (choose from: {', '.join(BACKENDS)}, auto)")
        ok, why = checks[forced]()
        if not ok:
            raise ExecutorError(f"the {forced} executor backend was asked for but cannot run here: {why}")
        return _make(forced, Path(work_dir), on_exit), f"{forced} backend, as configured"
    reasons = []
    for name in BACKENDS:
        ok, why = checks[name]()
        if ok:
            because = f"{name} backend: {why}" if name != "process" else \
                "process backend (no isolation, memory limited by rlimit only)"
            if reasons:
                because += "; not " + "; not ".join(reasons)
            return _make(name, Path(work_dir), on_exit), because
        reasons.append(f"{name}, because {why}")
    raise AssertionError("the process backend is always available")
