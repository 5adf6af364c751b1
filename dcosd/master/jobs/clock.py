"""The job framework's clock: what time the leader loop thinks it is.

In production it is the system clock. For tests (and for rehearsing a
schedule), the environment variable ``DCOSD_JOBS_CLOCK_FILE`` names a file
holding POSIX seconds (e.g. ``1718438400.0``); the master then reads its job
time from that file on every tick, so a test moves time by rewriting the file
— schedules fire, deadlines pass — without waiting. It affects only the job
framework (fire times, run times, deadlines); tasks and everything else keep
real time. Never set it on a real cluster.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

CLOCK_FILE_ENV = "DCOSD_JOBS_CLOCK_FILE"


class Clock(Protocol):
    # How often the leader loop looks at schedules and runs, in real seconds.
    tick: float

    def now(self) -> float: ...


class SystemClock:
    tick = 1.0

    def now(self) -> float:
        return time.time()


class FileClock:
    """Time as written in a file; the last good value if the file is briefly unreadable (being rewritten)."""

    tick = 0.2

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._last = 0.0

    def now(self) -> float:
        try:
            self._last = float(self.path.read_text().strip())
        except (OSError, ValueError):
            pass
        return self._last


def from_env() -> Clock:
    path = os.environ.get(CLOCK_FILE_ENV)
    return FileClock(Path(path)) if path else SystemClock()
