"""Wire and storage types of the Raft core. Pure data, stdlib only.

One ``Message`` shape carries every RPC (like etcd's raftpb.Message): the transport encodes
it field by field; fields a type does not use keep their defaults.

    type            from → to            fields used
    PRE_VOTE        candidate → all      term (= candidate's term + 1, not yet adopted), log_term, index
    PRE_VOTE_RESP   voter → candidate    term (= request term when granted, own term when rejected), reject
    VOTE            candidate → all      term, log_term, index (the candidate's last entry)
    VOTE_RESP       voter → candidate    term, reject
    APPEND          leader → follower    term, log_term/index (entry before ``entries``), entries, commit
    APPEND_RESP     follower → leader    term, index (last matching index, or rejected index), reject,
                                         reject_hint/log_term (conflict hint for fast backtracking)
    HEARTBEAT       leader → follower    term, commit (min of follower match and leader commit), seq
    HEARTBEAT_RESP  follower → leader    term, seq (echoed: confirms leadership for read index)
    SNAPSHOT        leader → follower    term, snapshot (InstallSnapshot: metadata + opaque bytes)
    TERM_PROBE      rejoining → peer     term (a replacement master asks every peer for its term)
    TERM_PROBE_RESP peer → rejoining     term (the peer's current term; changes nothing anywhere)

Every message may carry ``rejoin`` (DESIGN.md, "Replacing a dead master").
"""

from __future__ import annotations

import enum
from typing import Any
from dataclasses import dataclass, field


class MsgType(enum.IntEnum):
    PRE_VOTE = 1
    PRE_VOTE_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    APPEND = 5
    APPEND_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    TERM_PROBE = 10
    TERM_PROBE_RESP = 11
    TIMEOUT_NOW = 12  # leader to the follower it hands leadership to: campaign now (thesis §3.10)


class EntryKind(enum.IntEnum):
    NORMAL = 0  # a command for the state machine
    NOOP = 1  # appended by every new leader; applies as nothing but advances the applied index


class Role(str, enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable (fsynced) before any message that depends on it is sent.

    ``rejoining`` is true from the first start of a replacement master with a wiped disk until it
    has caught up safely (see DESIGN.md, "Replacing a dead master"); while true it never votes.
    """

    term: int = 0
    vote: str | None = None
    commit: int = 0
    rejoining: bool = False


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """State machine image at ``meta.index``. ``data`` is opaque to the core: the image's bytes, or
    what the shell puts in their place (a file holding them: image.py; an image still to arrive in
    chunks: wire.py). The core only carries it from where it came to where it goes."""

    meta: SnapshotMeta = SnapshotMeta()
    data: Any = b""


@dataclass(slots=True)
class Message:
    type: MsgType
    frm: str
    to: str
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    seq: int = 0
    snapshot: Snapshot | None = None
    # From a follower: "my disk was wiped, I am rejoining". From a leader: "I have reset your progress".
    rejoin: bool = False
    # On a VOTE: the leader asked for this election (TIMEOUT_NOW), so a peer that heard from that leader
    # a moment ago votes all the same instead of keeping it (check-quorum's leader stickiness).
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the local applied index reaches ``index``."""

    request_id: object
    index: int


@dataclass(frozen=True, slots=True)
class Proposed:
    """Where a proposal landed. It is committed iff the entry applied at ``index`` has ``term``."""

    index: int
    term: int


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the shell reacts to (start/stop leader-only services); never persisted."""

    leader: str | None
    role: Role


@dataclass(slots=True)
class Ready:
    """One batch of work for the shell. Handle it in this order (DESIGN.md, "I/O contract"):

    1. persist ``snapshot`` (if any), then ``entries`` (truncating the stored log from
       ``entries[0].index``) and ``hard_state`` (if any) — one transaction, fsynced;
    2. send ``messages``;
    3. restore the state machine from ``snapshot`` (if any), then apply ``committed_entries`` in order;
    4. call ``advance(ready)``;
    5. if ``snapshot_request`` is set: snapshot the state machine (it is at that index) and call
       ``compact(index, data)``;
    6. serve each ``read_states`` request once applied >= its index.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    snapshot_request: int | None = None


@dataclass(frozen=True, slots=True)
class PersistedState:
    """What the shell loads from disk at start: the durable hard state, snapshot and log after it."""

    hard_state: HardState = HardState()
    snapshot: Snapshot = Snapshot()
    entries: tuple[Entry, ...] = ()
