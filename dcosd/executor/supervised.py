"""What the cgroups and process backends share: tasks run under a detached supervisor.

The agent side of the supervisor protocol (see supervisor.py and sandbox.py):
spawn the supervisor, await its "started" report, watch it through a pidfd,
turn its exit record into a TaskEnded, forward kill requests, and re-adopt
supervisors after an agent restart.

Why pidfd: a pidfd names one process for as long as it is held, so signals and
watches cannot hit a recycled pid, and it works for supervisors that are not
our children (re-adopted after a restart). It becomes readable when the
process exits, so ``loop.add_reader`` wakes us exactly then: no polling.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

import dcosd
from dcosd.executor import sandbox as sb
from dcosd.executor.base import (
    ExecutorBackend,
    ExecutorError,
    ExitCallback,
    LaunchFailed,
    LaunchRequest,
    RecoveredTask,
    TaskEnded,
    ended_from_wait_status,
    self_command,
)
from dcosd.model.states import Reason, TaskState

log = logging.getLogger(__name__)

# The supervisor reports within milliseconds; this only bounds a wedged machine.
LAUNCH_TIMEOUT = 60.0


@dataclasses.dataclass
class _Watched:
    task_id: str
    paths: sb.Paths
    pid: int  # the supervisor
    pidfd: int
    task_pid: int = 0
    launching: bool = True
    pending_kill: float | None = None
    shell: bool = False


def ended_from_record(task_id: str, record: dict[str, Any], *, shell: bool) -> TaskEnded:
    """How a task ended, from its supervisor's exit record."""
    if record.get("launch_failed"):
        return TaskEnded(task_id, TaskState.FAILED, None, None, Reason.CONTAINER_LAUNCH_FAILED,
                         record.get("message") or "the task could not be started")
    if record.get("vanished"):
        return TaskEnded(task_id, TaskState.FAILED, None, None, Reason.EXECUTOR_TERMINATED, record["message"])
    ended = ended_from_wait_status(task_id, exit_code=record.get("exit_code"), signal=record.get("signal"),
                                   killed=bool(record.get("killed")), oom=bool(record.get("oom")))
    if record.get("message"):
        return dataclasses.replace(ended, message=record["message"])
    # /bin/sh reports a command it cannot find or run as 127 / 126; say so rather than just the number.
    if shell and ended.state is TaskState.FAILED and ended.exit_code in (126, 127):
        what = "command not found" if ended.exit_code == 127 else "command not executable"
        return dataclasses.replace(ended, message=f"{what} (the shell exited {ended.exit_code})")
    return ended


def _supervisor_command() -> list[str]:
    if getattr(sys, "frozen", False):
        return self_command()
    # -S: the supervisor needs only the stdlib and this tree (on PYTHONPATH, see below); skipping site
    # saves the scan of every installed package's .pth file, tens of ms of every task's launch.
    return [sys.executable, "-S", "-m", "dcosd"]


def _supervisor_env() -> dict[str, str]:
    env = dict(os.environ)
    if not getattr(sys, "frozen", False):
        # `python -m dcosd` must import this very tree, wherever the supervisor's cwd is.
        root = str(Path(dcosd.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # re-adopted: not our child, init reaps it


def open_if_same(pid: int | None, ticks: int | None) -> int | None:
    """A pidfd for ``pid`` if it is still the process that started at ``ticks``; else None."""
    if not pid or ticks is None:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    # Checked after opening: from here the pidfd pins the process, so the check cannot go stale.
    if sb.start_ticks(pid) != ticks:
        os.close(pidfd)
        return None
    if select.select([pidfd], [], [], 0)[0]:  # readable: it has exited and is a zombie
        os.close(pidfd)
        _reap(pid)
        return None
    return pidfd


class SupervisedBackend(ExecutorBackend):
    """Base of the backends that run each task under ``dcosd executor run``."""

    def __init__(self, work_dir: Path, on_exit: ExitCallback) -> None:
        super().__init__(work_dir, on_exit)
        self._tasks: dict[str, _Watched] = {}
        self._reported: set[str] = set()
        self._starting: set[str] = set()

    # -- hooks for the concrete backends ------------------------------------------------
    def _prepare(self, request: LaunchRequest) -> dict[str, Any]:
        """Set up limits; return extra launch.json fields (``rlimits``, ``cgroup``). May raise LaunchFailed."""
        return {}

    def _release(self, task_id: str, task_pid: int | None) -> None:
        """Free what _prepare made (the supervisor normally already did); kill stragglers."""

    def _usage(self, task_id: str, task_pid: int) -> dict[str, float]:
        raise NotImplementedError

    # -- launch -------------------------------------------------------------------------
    async def launch(self, request: LaunchRequest) -> None:
        tid = request.spec.task_id
        if tid in self._tasks or tid in self._starting:
            raise LaunchFailed(f"task {tid} is already running")
        self._starting.add(tid)  # held across the awaits below, so a second launch of tid is refused
        try:
            await self._launch(request)
        finally:
            self._starting.discard(tid)

    async def _launch(self, request: LaunchRequest) -> None:
        spec = request.spec
        tid = spec.task_id
        paths = sb.Paths(request.sandbox)
        sup = sb.read_json(paths.supervisor) or {}
        live = open_if_same(sup.get("pid"), sup.get("start_ticks"))
        if live is not None:
            os.close(live)
            raise LaunchFailed(f"task {tid} is already running in {paths.sandbox}")
        try:
            self._link_sandbox(tid, paths.sandbox)
            os.makedirs(paths.records, mode=0o700, exist_ok=True)
            for stale in (paths.exit, paths.kill, paths.supervisor):
                stale.unlink(missing_ok=True)
        except OSError as exc:
            raise LaunchFailed(f"cannot prepare the sandbox {paths.sandbox}: {exc}") from exc
        record: dict[str, Any] = {
            "backend": self.name, "task_id": tid, "argv": spec.command_line(), "shell": spec.argv is None,
            "env": dict(request.env), "user": request.user, "kill_grace_seconds": spec.kill_grace_seconds,
        }
        record.update(self._prepare(request))
        report_r, report_w = os.pipe()
        try:
            await asyncio.to_thread(sb.durable_write_json, paths.launch, record)
            pid = self._spawn_supervisor(paths, report_w)
            pidfd = os.pidfd_open(pid)
        except BaseException as exc:
            os.close(report_r)
            self._release(tid, None)
            if isinstance(exc, OSError):
                raise LaunchFailed(f"cannot start the supervisor of {tid}: {exc}") from exc
            raise
        finally:
            os.close(report_w)
        watched = _Watched(tid, paths, pid, pidfd, shell=spec.argv is None)
        self._tasks[tid] = watched
        try:
            report = await asyncio.wait_for(_read_report(report_r), LAUNCH_TIMEOUT)
        except BaseException:  # timeout or cancelled: take down what was started, then say so
            self._tasks.pop(tid, None)
            self._abandon(watched)
            raise
        finally:
            os.close(report_r)
        if report.get("started"):
            watched.task_pid = int(report["task_pid"])
            watched.launching = False
            asyncio.get_running_loop().add_reader(pidfd, self._on_supervisor_exit, watched)
            if watched.pending_kill is not None:
                await self.kill(tid, watched.pending_kill)
            return
        # The supervisor could not start the command; it exits right after saying so.
        self._tasks.pop(tid, None)
        await _readable(pidfd)
        os.close(pidfd)
        _reap(pid)
        self._release(tid, None)
        error = report.get("error") or (sb.read_json(paths.exit) or {}).get("message")
        if not error:
            error = f"the supervisor exited without starting the task; see {paths.log}: {_tail(paths.log)}"
        raise LaunchFailed(error)

    def _spawn_supervisor(self, paths: sb.Paths, report_w: int) -> int:
        # posix_spawn (vfork+exec) rather than subprocess: nothing of the agent is copied, and no Popen
        # object wants to wait() for a process that is meant to outlive us.
        argv = _supervisor_command() + ["executor", "run", "--sandbox", str(paths.sandbox), "--report-fd", "3"]
        log_fd = os.open(paths.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            return os.posix_spawn(argv[0], argv, _supervisor_env(), setsid=True, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
                (os.POSIX_SPAWN_DUP2, report_w, 3),
            ])
        finally:
            os.close(log_fd)

    def _abandon(self, watched: _Watched) -> None:
        """A launch given up on: the supervisor and whatever it started must not run on unseen."""
        try:
            signal.pidfd_send_signal(watched.pidfd, signal.SIGKILL)
        except OSError:
            pass
        os.close(watched.pidfd)
        _reap(watched.pid)
        rec = sb.read_json(watched.paths.supervisor) or {}
        _kill_group_if_same(rec.get("task_pid"), rec.get("task_start_ticks"))
        self._release(watched.task_id, rec.get("task_pid"))

    def _link_sandbox(self, task_id: str, sandbox: Path) -> None:
        # recover() finds tasks under sandbox_path(); a sandbox kept elsewhere is linked from there.
        canonical = self.sandbox_path(task_id)
        if canonical.exists() and canonical.resolve() == sandbox.resolve():
            return
        canonical.parent.mkdir(parents=True, exist_ok=True)
        if canonical.is_symlink():
            canonical.unlink()
        canonical.symlink_to(sandbox.resolve())

    # -- watching -----------------------------------------------------------------------
    def _on_supervisor_exit(self, watched: _Watched) -> None:
        asyncio.get_running_loop().remove_reader(watched.pidfd)
        os.close(watched.pidfd)
        _reap(watched.pid)
        if self._tasks.get(watched.task_id) is watched:
            del self._tasks[watched.task_id]
        record = sb.read_json(watched.paths.exit)
        if record is None:
            record = self._vanished(watched.paths)
        self._release(watched.task_id, watched.task_pid)
        self._report_end(ended_from_record(watched.task_id, record, shell=watched.shell))

    def _report_end(self, ended: TaskEnded) -> None:
        if ended.task_id in self._reported:
            return  # exactly once per task, whatever path noticed the end
        self._reported.add(ended.task_id)
        try:
            self.on_exit(ended)
        except Exception:  # noqa: BLE001 - the agent's bug must not stop us watching other tasks
            log.exception("on_exit failed for %s", ended.task_id)

    def _vanished(self, paths: sb.Paths) -> dict[str, Any]:
        """Record the end of a task whose supervisor died without saying how the task ended."""
        rec = sb.read_json(paths.supervisor) or {}
        _kill_group_if_same(rec.get("task_pid"), rec.get("task_start_ticks"))
        record = {"exit_code": None, "signal": None, "killed": False, "oom": False, "vanished": True,
                  "finished_at": time.time(), "task_pid": rec.get("task_pid"),
                  "message": "the task's supervisor disappeared without recording how the task ended "
                             "(machine restarted, or the supervisor was killed)"}
        try:
            sb.durable_write_json(paths.exit, record)  # so every later look agrees
        except OSError as exc:
            log.warning("cannot record the end of %s: %s", paths.sandbox, exc)
        return record

    # -- kill, stats, list ----------------------------------------------------------------
    async def kill(self, task_id: str, grace_seconds: float) -> None:
        watched = self._tasks.get(task_id)
        if watched is None:
            return
        grace = max(0.0, float(grace_seconds))
        if watched.launching:
            watched.pending_kill = grace if watched.pending_kill is None else min(grace, watched.pending_kill)
            return
        # The supervisor times the grace itself, so the grace survives an agent crash.
        request = {"grace_seconds": grace, "requested_at": time.time()}
        await asyncio.to_thread(sb.durable_write_json, watched.paths.kill, request)
        if self._tasks.get(task_id) is not watched:
            return  # ended while we wrote
        try:
            signal.pidfd_send_signal(watched.pidfd, signal.SIGTERM)
        except ProcessLookupError:
            pass

    async def stats(self, task_id: str) -> dict[str, float]:
        watched = self._tasks.get(task_id)
        if watched is None or watched.launching:
            raise ExecutorError(f"task {task_id} is not running")
        return await asyncio.to_thread(self._usage, task_id, watched.task_pid)

    async def list(self) -> list[str]:
        return sorted(self._tasks)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for watched in list(self._tasks.values()):
            if not watched.launching:
                loop.remove_reader(watched.pidfd)
                os.close(watched.pidfd)
        self._tasks.clear()

    # -- recovery -------------------------------------------------------------------------
    async def recover(self, known_task_ids: set[str]) -> dict[str, RecoveredTask]:
        return await asyncio.to_thread(self._recover_sync, set(known_task_ids), asyncio.get_running_loop())

    def _recover_sync(self, known: set[str], loop: asyncio.AbstractEventLoop) -> dict[str, RecoveredTask]:
        root = self.work_dir / "sandboxes"
        on_disk = {p.name for p in root.iterdir() if (p / sb.RECORDS).is_dir()} if root.is_dir() else set()
        found: dict[str, RecoveredTask] = {}
        for tid in sorted(on_disk | known):
            if tid in self._tasks:
                found[tid] = RecoveredTask(tid, running=True)
                continue
            paths = sb.Paths(self.sandbox_path(tid))
            launch = sb.read_json(paths.launch)
            if launch is None:
                if tid in known:
                    found[tid] = RecoveredTask(tid, False, TaskEnded(
                        tid, TaskState.FAILED, reason=Reason.EXECUTOR_TERMINATED,
                        message="no record of this task's supervisor on this agent (sandbox missing)"))
                continue
            shell = bool(launch.get("shell"))
            record = sb.read_json(paths.exit)
            if record is None:
                sup = sb.read_json(paths.supervisor) or {}
                pidfd = open_if_same(sup.get("pid"), sup.get("start_ticks"))
                if pidfd is not None:
                    watched = _Watched(tid, paths, sup["pid"], pidfd, task_pid=sup.get("task_pid") or 0,
                                       launching=False, shell=shell)
                    self._tasks[tid] = watched
                    loop.call_soon_threadsafe(loop.add_reader, pidfd, self._on_supervisor_exit, watched)
                    found[tid] = RecoveredTask(tid, running=True)
                    continue
                # Dead: it may have written its record just before dying; else it vanished.
                record = sb.read_json(paths.exit) or self._vanished(paths)
                self._release(tid, sup.get("task_pid"))
            if tid in known:
                found[tid] = RecoveredTask(tid, False, ended_from_record(tid, record, shell=shell))
        return found


async def _read_report(fd: int) -> dict[str, Any]:
    """The supervisor's one-line report, read without blocking the loop; {} if it died first."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    buf = bytearray()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        buf.extend(chunk)
        if (not chunk or b"\n" in buf) and not done.done():
            done.set_result(bytes(buf))

    loop.add_reader(fd, readable)
    try:
        data = await done
    finally:
        loop.remove_reader(fd)
    try:
        report = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return {}
    return report if isinstance(report, dict) else {}


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        loop.remove_reader(fd)


def _kill_group_if_same(pid: int | None, ticks: int | None) -> None:
    """SIGKILL a task's process group, if its leader is provably still that task."""
    if pid and ticks is not None and sb.start_ticks(pid) == ticks:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def _tail(path: Path, limit: int = 500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return "(no log)"
