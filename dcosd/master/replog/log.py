"""The in-memory view of one node's Raft log: snapshot + entries after it, commit and apply marks,
and which part the shell has not persisted yet. Pure; the shell owns the durable copy.

Indexes: ``offset`` is the snapshot's index (0 when there is none); ``entries[k]`` has index
``offset + 1 + k``. Entries with index >= ``unstable`` have not been handed to the shell for
persistence yet. Invariant: offset <= applied <= committed <= last_index().
"""

from __future__ import annotations

from .messages import Entry, Snapshot, SnapshotMeta


class LogError(AssertionError):
    """An impossible log operation: a bug in the core or a corrupted store. Never caught."""


class RaftLog:
    __slots__ = ("snapshot", "offset", "entries", "committed", "applied", "unstable", "pending_snapshot")

    def __init__(self, snapshot: Snapshot, entries: tuple[Entry, ...] | list[Entry], committed: int,
                 applied: int | None = None) -> None:
        self.snapshot = snapshot
        self.offset = snapshot.meta.index
        self.entries = list(entries)
        for k, e in enumerate(self.entries):
            if e.index != self.offset + 1 + k:
                raise LogError(f"stored log not contiguous at {e.index} (expected {self.offset + 1 + k})")
        self.committed = min(max(committed, self.offset), self.last_index())
        self.applied = self.offset if applied is None else max(self.offset, min(applied, self.committed))
        self.unstable = self.last_index() + 1
        self.pending_snapshot: Snapshot | None = None  # received from a leader, not yet persisted

    # -- reading --------------------------------------------------------------------------------

    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.meta.term

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if compacted away (below the snapshot) or absent."""
        if index == self.offset:
            return self.snapshot.meta.term
        k = index - self.offset - 1
        if k < 0 or k >= len(self.entries):
            return None
        return self.entries[k].term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: is a log ending at (last_index, last_term) at least as up to date as ours?"""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi; lo must be above the snapshot."""
        if lo <= self.offset:
            raise LogError(f"slice from {lo} is compacted (snapshot at {self.offset})")
        return self.entries[lo - self.offset - 1:hi - self.offset - 1]

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest (i, term(i)) with i <= index and term(i) <= term: the fast-backtracking hint.

        Stops at the snapshot (its entries are committed, so they match any leader's)."""
        index = min(index, self.last_index())
        while index > self.offset:
            t = self.entries[index - self.offset - 1].term
            if t <= term:
                return index, t
            index -= 1
        return self.offset, self.snapshot.meta.term

    # -- writing --------------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Leader: new entries at the end."""
        if entries and entries[0].index != self.last_index() + 1:
            raise LogError(f"append at {entries[0].index} but last index is {self.last_index()}")
        self.entries.extend(entries)

    def maybe_append(self, index: int, log_term: int, commit: int, entries: tuple[Entry, ...]) -> int | None:
        """Follower: AppendEntries after (index, log_term). Returns the last new index, or None if
        our log does not contain (index, log_term)."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        for k, e in enumerate(entries):
            t = self.term(e.index)
            if t == e.term:
                continue
            if e.index <= self.offset:
                continue  # compacted entries are committed, hence identical
            if e.index <= self.committed:
                raise LogError(f"conflict at committed index {e.index} (commit {self.committed})")
            self._truncate_and_append(list(entries[k:]))
            break
        self.commit_to(min(commit, last_new))
        return last_new

    def _truncate_and_append(self, entries: list[Entry]) -> None:
        first = entries[0].index
        del self.entries[first - self.offset - 1:]
        self.entries.extend(entries)
        if first < self.unstable:
            self.unstable = first

    def commit_to(self, index: int) -> bool:
        if index > self.committed:
            if index > self.last_index():
                raise LogError(f"commit {index} beyond last index {self.last_index()}: this master lacks entries "
                               "it had acknowledged (was its data directory wiped or replaced? empty it and "
                               "start it once with --rejoin)")
            self.committed = index
            return True
        return False

    def restore(self, snapshot: Snapshot) -> None:
        """Follower: replace everything with a leader's snapshot (InstallSnapshot)."""
        self.snapshot = snapshot
        self.offset = snapshot.meta.index
        self.entries = []
        self.committed = snapshot.meta.index
        self.unstable = self.offset + 1
        self.pending_snapshot = snapshot

    def compact(self, index: int, data: bytes) -> None:
        """Drop entries up to ``index`` (applied) behind a snapshot the shell took at ``index``."""
        if index <= self.offset:
            return
        if index > self.applied:
            raise LogError(f"compact to {index} beyond applied {self.applied}")
        term = self.term(index)
        assert term is not None
        self.snapshot = Snapshot(SnapshotMeta(index, term), data)
        del self.entries[:index - self.offset]
        self.offset = index

    # -- the Ready cycle ------------------------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        return self.entries[self.unstable - self.offset - 1:]

    def committed_to_apply(self) -> list[Entry]:
        lo = max(self.applied, self.offset) + 1
        return self.slice(lo, self.committed + 1) if self.committed >= lo else []
