"""The executor backend protocol, shared by the systemd, cgroups and process backends.

An agent owns exactly one backend. The backend starts a task's command in the
task's sandbox with its resource limits, kills it with a grace period, and tells
the agent — through the ``on_exit`` callback given at construction — how each
task ended. Tasks must outlive the agent: after an agent crash a new backend
instance ``recover()``s them, re-adopting those still running and reporting the
real outcome of those that ended while no agent was watching.

Contract, for every backend:
- ``launch()`` returns once the command's process exists (the agent then reports
  TASK_RUNNING). It raises ``LaunchFailed`` when it cannot start (command not
  found or not executable, unknown user, limits rejected); the message says why.
  A task id is launched at most once per sandbox; launching a running id raises.
- ``on_exit(TaskEnded)`` is called exactly once per task that ended, on the
  event loop thread, whether the task exited, was killed, or hit a limit.
- ``kill(task_id, grace)`` sends SIGTERM to the whole task, SIGKILL after
  ``grace`` seconds, and returns at once; the end arrives through ``on_exit`` as
  TASK_KILLED. Killing an unknown or ended task is a no-op.
- ``recover(known)`` is called once, before any launch, with the task ids the
  agent's checkpoint knows. It returns what the backend found for each of them
  (and for any other task it manages): running (now watched again) or ended
  (with its real exit status). Exits found here are NOT also sent to on_exit.
- No blocking call runs on the event loop.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable, Mapping

from dcosd.errors import ExecutorError
from dcosd.model.states import Reason, TaskState
from dcosd.model.task import TaskSpec

STDOUT = "stdout"
STDERR = "stderr"


class LaunchFailed(ExecutorError):
    """The task could not be started; reported as TASK_FAILED with this message."""

    def __init__(self, message: str, reason: Reason = Reason.CONTAINER_LAUNCH_FAILED) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class LaunchRequest:
    spec: TaskSpec
    # Existing directory for this task alone; stdout and stderr are appended to files in it.
    sandbox: Path
    # The complete environment of the task (the agent adds MESOS_* and PORT* variables to spec.env).
    env: Mapping[str, str]
    # The user to run as; None means the agent's own user.
    user: str | None


@dataclasses.dataclass(frozen=True)
class TaskEnded:
    task_id: str
    state: TaskState  # FINISHED, FAILED or KILLED
    exit_code: int | None = None  # the command's exit status, when it exited
    signal: int | None = None  # the signal that ended it, when it was signalled
    reason: Reason | None = None
    message: str = ""


@dataclasses.dataclass(frozen=True)
class RecoveredTask:
    task_id: str
    running: bool
    ended: TaskEnded | None = None


ExitCallback = Callable[[TaskEnded], None]


class ExecutorBackend(abc.ABC):
    #: "systemd", "cgroups" or "process"
    name: str = ""
    #: "v1", "v2" or "none": the cgroup version that enforces the limits
    cgroup_version: str = "none"

    def __init__(self, work_dir: Path, on_exit: ExitCallback) -> None:
        self.work_dir = Path(work_dir)
        self.on_exit = on_exit

    @abc.abstractmethod
    async def launch(self, request: LaunchRequest) -> None: ...

    @abc.abstractmethod
    async def kill(self, task_id: str, grace_seconds: float) -> None: ...

    @abc.abstractmethod
    async def stats(self, task_id: str) -> dict[str, float]:
        """Usage now: at least ``cpu_seconds`` and ``mem_bytes`` (and ``mem_limit_bytes`` when limited)."""

    @abc.abstractmethod
    async def list(self) -> list[str]:
        """Ids of the tasks this backend is running now."""

    @abc.abstractmethod
    async def recover(self, known_task_ids: set[str]) -> dict[str, RecoveredTask]: ...

    async def close(self) -> None:
        """Stop watching. Running tasks keep running."""

    def sandbox_path(self, task_id: str) -> Path:
        """Where the task's sandbox lives: ``work_dir/sandboxes/<task_id>`` (the layout is in executor/DESIGN.md)."""
        if not task_id or "/" in task_id or "\0" in task_id or task_id in (".", "..") or ".." in task_id:
            raise ExecutorError(f"task id {task_id!r} cannot name a sandbox directory")
        return self.work_dir / "sandboxes" / task_id

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "cgroup_version": self.cgroup_version}


def ended_from_wait_status(task_id: str, *, exit_code: int | None, signal: int | None, killed: bool,
                           oom: bool) -> TaskEnded:
    """Map how a process ended to a Mesos outcome — the single place this rule lives."""
    if oom:
        return TaskEnded(task_id, TaskState.FAILED, exit_code, signal, Reason.CONTAINER_LIMITATION_MEMORY,
                         "memory limit reached: the task was OOM-killed")
    if killed:
        return TaskEnded(task_id, TaskState.KILLED, exit_code, signal, None, "killed on request")
    if signal is not None:
        return TaskEnded(task_id, TaskState.FAILED, None, signal, Reason.COMMAND_EXECUTOR_FAILED,
                         f"terminated by signal {signal}")
    if exit_code == 0:
        return TaskEnded(task_id, TaskState.FINISHED, 0, None, None, "command exited 0")
    return TaskEnded(task_id, TaskState.FAILED, exit_code, None, Reason.COMMAND_EXECUTOR_FAILED,
                     f"command exited with status {exit_code}")


def self_command() -> list[str]:
    """How to run this dcosd again: the one-file binary itself, or this interpreter with -m dcosd."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "dcosd"]


def atomic_write(path: Path, data: bytes) -> None:
    """Write a small file durably: temp file, fsync, rename, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
