"""How long this master's durable (fsynced) writes of the Raft log take.

Every write a client waits for waits for these: a leader's own, and on the followers the write before
their acknowledgment. A slow or overloaded disk is the usual reason a Raft cluster is slow or loses
its leader (etcd warns about a slow fdatasync and exports its duration for that reason), and nothing
else on a master would show it. Pure: the caller measures and passes the durations in.
"""

from __future__ import annotations

import collections

# A durable write this long makes every write wait as long, and two in a row are an election timeout.
SLOW_WRITE = 1.0
WINDOW = 1024  # the percentiles are over the latest writes
WARN_EVERY = 30.0  # seconds between two warnings about slow writes


class DurableWriteTimes:
    def __init__(self) -> None:
        self._recent: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self.count = 0
        self.slow = 0
        self._slow_unreported = 0
        self._warned_at: float | None = None

    def record(self, seconds: float, now: float) -> str | None:
        """One durable write took ``seconds``; ``now`` is a monotonic clock. Returns a warning to log,
        at most one per WARN_EVERY, when writes were slow."""
        self._recent.append(seconds)
        self.count += 1
        if seconds < SLOW_WRITE:
            return None
        self.slow += 1
        self._slow_unreported += 1
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY:
            return None
        self._warned_at = now
        n, self._slow_unreported = self._slow_unreported, 0
        also = f" ({n} writes over {SLOW_WRITE:g} s since the last warning)" if n > 1 else ""
        return (f"writing the replicated log durably took {seconds:.2f} s{also}: every write waits for it, "
                f"and a master this slow loses or cannot keep leadership; is its disk slow or overloaded?")

    def summary(self) -> dict[str, float]:
        """Milliseconds over the latest WINDOW writes (0 before any), and the totals."""
        recent = sorted(self._recent)  # a copy: the raft-disk thread appends meanwhile

        def at(q: float) -> float:
            return recent[min(len(recent) - 1, int(len(recent) * q))] * 1000 if recent else 0.0

        return {"durable_writes": float(self.count), "slow_writes": float(self.slow),
                "write_ms_p50": at(0.5), "write_ms_p99": at(0.99), "write_ms_max": at(1.0)}
