"""When a master compacts its log into a snapshot. Pure.

A snapshot copies the whole state (SQLite's backup API) and syncs it; its cost grows with the state,
not with the log it replaces. Compacting every N entries whatever the sizes made a master with a
large state copy it over and over: 16 MB every 10,000 task submissions (3 MB of log) at 60,000
queued tasks, which cost 15% of the masters' CPU per write and 10% of writes/s at 64 clients
(bench/ab_writes.py). So, as the Raft thesis suggests (§5.1.1: snapshot when the log has grown
large compared with the snapshot, so that snapshotting costs a small part of the log's own disk
bandwidth), a snapshot is due once the log since the last one holds at least ``every`` entries AND
at least ``size_ratio`` times the last image's bytes — and, to bound the memory the log since the
last snapshot takes and a slow follower's catch-up, at ``CAP_FACTOR`` x ``every`` entries whatever
the sizes (etcd compacts every 100,000 entries; at the default 10,000 the cap is the same).
"""

from __future__ import annotations

CAP_FACTOR = 10


def snapshot_due(entries: int, log_bytes: int, image_bytes: int, every: int, size_ratio: float) -> bool:
    """``entries`` and ``log_bytes``: applied since the last snapshot; ``image_bytes``: its size (0 when
    there is none)."""
    if entries < every:
        return False
    return entries >= every * CAP_FACTOR or log_bytes >= size_ratio * image_bytes
