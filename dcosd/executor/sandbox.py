"""The on-disk layout of a supervised task, drawn once; stdlib only (the supervisor imports it).

    work_dir/
      sandboxes/<task_id>/        the task's sandbox, cwd of the command (ExecutorBackend.sandbox_path)
        stdout                    the command's standard output, appended to
        stderr                    the command's standard error, appended to
        .executor/                the supervisor's records (0700: launch.json holds the task's environment)
          launch.json             the launch request; written by the agent before the supervisor starts
          supervisor.json         {pid, start_ticks, task_pid, task_start_ticks}: who supervises the task,
                                  with kernel start times so a recycled pid is never mistaken for it
          kill.json               {grace_seconds, requested_at}: written by the agent, then SIGTERM
          exit.json               {exit_code, signal, killed, oom, message, finished_at}: how it ended
          supervisor.log          the supervisor's own stdout and stderr

A task whose ``exit.json`` exists has ended, whatever else is on disk. One whose
supervisor (pid + start ticks) is alive is running. Anything else was lost with
its supervisor (a reboot, a kill -9 of the supervisor).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STDOUT = "stdout"
STDERR = "stderr"
RECORDS = ".executor"


class Paths:
    """Every file of one sandbox, named in one place."""

    def __init__(self, sandbox: Path | str) -> None:
        self.sandbox = Path(sandbox)
        self.records = self.sandbox / RECORDS
        self.stdout = self.sandbox / STDOUT
        self.stderr = self.sandbox / STDERR
        self.launch = self.records / "launch.json"
        self.supervisor = self.records / "supervisor.json"
        self.kill = self.records / "kill.json"
        self.exit = self.records / "exit.json"
        self.log = self.records / "supervisor.log"


def durable_write_json(path: Path, data: Any) -> None:
    """base.atomic_write, repeated here: importing base costs the supervisor ~50 ms of launch latency."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(data, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_json(path: Path) -> dict[str, Any] | None:
    """The record, or None when absent or unreadable (a torn write cannot happen: writes are renames)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (/proc/<pid>/stat field 22); None if gone.

    A pid plus its start time names one process forever: a recycled pid has a later start.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19])
