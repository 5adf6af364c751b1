"""The leader's view of one follower: how far it matches, what to send next, and flow control.

States (as in etcd's tracker):
    PROBE      we do not know where the follower's log matches ours: one AppendEntries at a time,
               sent again after a heartbeat response if unanswered.
    REPLICATE  steady state: stream batches optimistically, at most ``max_inflight`` unacknowledged.
    SNAPSHOT   the entries it needs are compacted away: a snapshot is in flight; resent if no answer
               arrives within ``retry`` heartbeats.
"""

from __future__ import annotations

import enum
from collections import deque


class PrState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Progress:
    __slots__ = ("match", "next", "state", "probe_sent", "inflight", "max_inflight", "pending_snapshot",
                 "snapshot_wait", "recent_active", "rejoining", "sent_commit")

    def __init__(self, next_index: int, max_inflight: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = PrState.PROBE
        self.probe_sent = False
        self.inflight: deque[int] = deque()  # last index of each unacknowledged batch
        self.max_inflight = max_inflight
        self.pending_snapshot = 0
        self.snapshot_wait = 0
        self.recent_active = False  # heard from since the last check-quorum round
        self.rejoining = False  # its disk was wiped: match reset, see DESIGN.md
        self.sent_commit = 0  # highest commit index sent in an AppendEntries

    def become_probe(self) -> None:
        if self.state == PrState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
            self.pending_snapshot = 0
        else:
            self.next = self.match + 1
        self.state = PrState.PROBE
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = PrState.REPLICATE
        self.next = self.match + 1
        self.inflight.clear()

    def become_snapshot(self, index: int) -> None:
        self.state = PrState.SNAPSHOT
        self.pending_snapshot = index
        self.snapshot_wait = 0
        self.inflight.clear()

    def reset(self, next_index: int) -> None:
        """Forget everything: the follower lost its disk."""
        self.match = 0
        self.state = PrState.PROBE
        self.next = next_index
        self.probe_sent = False
        self.inflight.clear()
        self.pending_snapshot = 0

    def maybe_update(self, index: int) -> bool:
        """A successful AppendEntries response up to ``index``. False if stale."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A rejected AppendEntries for prev index ``rejected``. False if the rejection is stale."""
        if self.state == PrState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == PrState.PROBE:
            return self.probe_sent
        if self.state == PrState.REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True

    def sent(self, last: int | None) -> None:
        """An AppendEntries went out; ``last`` is the index of its last entry (None if empty)."""
        if self.state == PrState.REPLICATE:
            if last is not None:
                self.next = last + 1
                self.inflight.append(last)
        elif self.state == PrState.PROBE:
            self.probe_sent = True

    def free_to(self, index: int) -> None:
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
