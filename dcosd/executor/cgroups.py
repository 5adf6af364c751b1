"""The ``cgroups`` backend: each task in its own cgroup, for hosts without systemd.

Limits come from the task's resources: cpus → a CFS quota (cpus × 100 ms per
100 ms period), mem → a hard memory limit with no swap beyond it. The task's
process joins its cgroup before it execs (the supervisor's child does that), so
nothing the command runs escapes; the supervisor itself stays outside, so an
OOM in the task can never take down the process that reports it. An OOM kill
is reported as TASK_FAILED with REASON_CONTAINER_LIMITATION_MEMORY.

Tasks' cgroups live under one parent (``dcosd`` by default) in every
controller's hierarchy; the supervisor removes a task's cgroup once the task
has ended, and the backend retries whenever it notices an end.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from dcosd.executor import cgroupfs
from dcosd.executor.base import ExecutorError, ExitCallback, LaunchFailed, LaunchRequest
from dcosd.executor.supervised import SupervisedBackend

log = logging.getLogger(__name__)

DEFAULT_PARENT = "dcosd"
RELEASE_ATTEMPTS = 25


def cgroups_available() -> tuple[bool, str]:
    """Whether this host can run the cgroups backend, and why (not)."""
    if os.geteuid() != 0:
        return False, "the cgroups backend needs root (the agent runs as uid %d)" % os.geteuid()
    hierarchy, why = cgroupfs.detect()
    return hierarchy is not None, why


class CgroupsBackend(SupervisedBackend):
    name = "cgroups"

    def __init__(self, work_dir: Path, on_exit: ExitCallback, *, parent: str = DEFAULT_PARENT,
                 hierarchy: cgroupfs.Hierarchy | None = None) -> None:
        super().__init__(work_dir, on_exit)
        if hierarchy is None:
            if os.geteuid() != 0:
                raise ExecutorError("the cgroups backend needs root")
            hierarchy, why = cgroupfs.detect()
            if hierarchy is None:
                raise ExecutorError(f"the cgroups backend cannot run here: {why}")
        self.hierarchy = hierarchy
        self.parent = parent
        self.cgroup_version = hierarchy.version

    def cgroup(self, task_id: str) -> cgroupfs.TaskCgroup:
        return cgroupfs.task_cgroup(self.hierarchy, self.parent, task_id)

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "cgroups": self.hierarchy.describe(), "cgroup_parent": self.parent}

    def _prepare(self, request: LaunchRequest) -> dict[str, Any]:
        res = request.spec.resources
        cg = self.cgroup(request.spec.task_id)
        if cg.pids():
            raise LaunchFailed(f"the cgroup of task {request.spec.task_id} still holds processes")
        try:
            cg.create(cpus=res.get("cpus"), mem_mb=res.get("mem"))
        except OSError as exc:
            self._release(request.spec.task_id, None)
            raise LaunchFailed(f"cannot set the limits of task {request.spec.task_id}: {exc}") from exc
        return {"cgroup": {
            "procs": [str(p) for p in cg.procs_files()],
            "oom_events": cg.oom_events(),
            "remove": [str(d) for d in cg.dirs()],
        }}

    def _release(self, task_id: str, task_pid: int | None, attempt: int = 0) -> None:
        # The supervisor normally removed the cgroup already; this covers a supervisor that could not.
        cg = self.cgroup(task_id)
        if not cg.exists():
            return
        cg.kill_all()
        try:
            if cg.remove():
                return
        except OSError as exc:
            log.warning("cannot remove the cgroup of %s: %s", task_id, exc)
            return
        # Killed processes leave the cgroup only once the kernel has torn them down: look again soon.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # called from recover()'s thread; the next recover() retries
        if loop is not None and attempt < RELEASE_ATTEMPTS:
            loop.call_later(0.2, self._release, task_id, task_pid, attempt + 1)
        else:
            log.warning("the cgroup of %s still holds processes after the task ended", task_id)

    def _usage(self, task_id: str, task_pid: int) -> dict[str, float]:
        return self.cgroup(task_id).usage()
