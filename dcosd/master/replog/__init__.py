"""Replicated log of the masters: Raft as a pure state machine (``core``), driven by a shell that
persists to SQLite and sends over HTTP. See DESIGN.md."""

from .core import NotLeader, RaftNode
from .messages import (Entry, EntryKind, HardState, Message, MsgType, PersistedState, Proposed, Ready,
                       ReadState, Role, Snapshot, SnapshotMeta, SoftState)

__all__ = ["RaftNode", "NotLeader", "Entry", "EntryKind", "HardState", "Message", "MsgType",
           "PersistedState", "Proposed", "Ready", "ReadState", "Role", "Snapshot", "SnapshotMeta",
           "SoftState"]
