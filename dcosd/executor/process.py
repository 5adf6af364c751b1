"""The ``process`` backend: plain processes with rlimits, for development without root.

Nothing is isolated and memory is only limited on a best-effort basis with
RLIMIT_DATA (private writable memory, the closest rlimit to "resident" memory;
RLIMIT_AS would also count address space reserved but never used, which breaks
ordinary programs). CPU is not limited: RLIMIT_CPU kills a task after a total,
it does not share a core. Tasks still run under the supervisor, so they survive
agent restarts and are killed by process group with a grace period.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dcosd.executor import sandbox as sb
from dcosd.executor.base import ExitCallback, LaunchRequest
from dcosd.executor.supervised import SupervisedBackend

MB = 1024 * 1024


class ProcessBackend(SupervisedBackend):
    name = "process"
    cgroup_version = "none"

    def __init__(self, work_dir: Path, on_exit: ExitCallback, *, limit_memory: bool = True) -> None:
        super().__init__(work_dir, on_exit)
        self.limit_memory = limit_memory

    def _prepare(self, request: LaunchRequest) -> dict[str, Any]:
        # Unknown users and running as another user without root are refused by the supervisor.
        mem = request.spec.resources.get("mem")
        if not self.limit_memory or mem <= 0:
            return {}
        return {"rlimits": {"RLIMIT_DATA": int(mem * MB)}}

    def _usage(self, task_id: str, task_pid: int) -> dict[str, float]:
        """Sum over the task's process group as it is now (processes that ended are not counted)."""
        import psutil  # only here: a developer's bare interpreter can run tasks without it

        cpu = 0.0
        rss = 0
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) != task_pid:
                    continue
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                    rss += proc.memory_info().rss
            except (psutil.Error, OSError):
                continue  # ended while we looked
        stats = {"cpu_seconds": cpu, "mem_bytes": float(rss)}
        launch_mem = self._limit_bytes(task_id)
        if launch_mem:
            stats["mem_limit_bytes"] = float(launch_mem)
        return stats

    def _limit_bytes(self, task_id: str) -> int | None:
        launch = sb.read_json(sb.Paths(self.sandbox_path(task_id)).launch) or {}
        return (launch.get("rlimits") or {}).get("RLIMIT_DATA")
