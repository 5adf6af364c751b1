"""The Raft core: one node as a pure state machine. No I/O, no clock, no randomness but ``rng``.

Inputs: ``tick()`` (one beat of a monotonic clock), ``step(message)``, ``propose(data)``,
``read_index(request_id)``, ``compact(index, data)``, ``transfer_leadership(to)``. Outputs:
``ready()`` returns a ``Ready`` the shell handles in the documented order, then calls
``advance(ready)``. See DESIGN.md.

Follows the Raft paper and thesis (Ongaro 2014) with etcd/raft's engineering: pre-vote (§9.6),
check-quorum, leader no-op, read index (§6.4), fast backtracking by conflict term, flow control,
leadership transfer (§3.10).
"""

from __future__ import annotations

import random

from dcosd.errors import NotLeader

from .log import RaftLog
from .messages import (Entry, EntryKind, HardState, Message, MsgType, PersistedState, Proposed, Ready,
                       ReadState, Role, SoftState)
from .progress import PrState, Progress

__all__ = ["RaftNode", "NotLeader"]

_FROM_LEADER = (MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT)


class RaftNode:
    def __init__(self, node_id: str, peers: list[str] | tuple[str, ...], *, rng: random.Random,
                 state: PersistedState | None = None, election_ticks: tuple[int, int] = (10, 20),
                 heartbeat_ticks: int = 2, max_append_entries: int = 64, max_inflight: int = 32,
                 snapshot_threshold: int = 1000, pre_vote: bool = True, check_quorum: bool = True,
                 applied: int | None = None, rejoin: bool = False, eager_commit: bool = True,
                 follower_apply_batch: int = 1, reorder_ticks: int | None = None) -> None:
        if not 0 < heartbeat_ticks < election_ticks[0] <= election_ticks[1]:
            raise ValueError("need 0 < heartbeat_ticks < election_ticks[0] <= election_ticks[1]")
        self.id = node_id
        self.peers = tuple(sorted(set(peers) | {node_id}))
        self.others = tuple(p for p in self.peers if p != node_id)
        self.quorum = len(self.peers) // 2 + 1
        self.rng = rng
        self.election_lo, self.election_hi = election_ticks
        self.heartbeat_ticks = heartbeat_ticks
        self.max_append_entries = max_append_entries
        self.max_inflight = max_inflight
        self.snapshot_threshold = snapshot_threshold
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        # When the commit index moves, tell followers at once with an append of no entries (etcd's
        # way), or let them learn it from the next append or heartbeat. Off, a write at a time costs
        # the leader two messages per follower instead of four; followers apply up to one heartbeat
        # interval later. Safety does not depend on it (tests/sim runs both).
        self.eager_commit = eager_commit
        # A follower hands out committed entries once this many are waiting, or once a tick passed
        # since it last did, or when asked (apply_now). Nobody waits for a follower's apply; applying
        # one entry per transaction cost the follower a transaction (BEGIN, WAL frames of every page
        # touched, COMMIT) per write. 1: at once, like the leader, which always applies at once (its
        # proposers wait). Safety does not depend on it (tests/sim runs both).
        self.follower_apply_batch = follower_apply_batch
        # A follower holds appends that arrive ahead of a gap for up to this many ticks (see _hold):
        # by default two heartbeat intervals (160 ms in the shell, whose TCP streams never reorder: there
        # a gap is a loss and the wait is pure delay; the simulator reorders by up to 6 ticks).
        self.reorder_ticks = 2 * heartbeat_ticks if reorder_ticks is None else reorder_ticks

        state = state or PersistedState()
        hs = state.hard_state
        if rejoin and (hs.term or state.entries or state.snapshot.meta.index):
            raise ValueError("rejoin is only for a replacement master starting with an empty data directory")
        self.term = hs.term
        self.vote = hs.vote
        self.rejoining = hs.rejoining or rejoin
        self.log = RaftLog(state.snapshot, state.entries, hs.commit, applied)
        self._prev_hs = hs
        self._prev_soft = SoftState(None, Role.FOLLOWER)

        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self.election_lo
        self.votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self._dirty: dict[str, bool] = {}  # leader: peer -> send even if there are no new entries
        self.hb_seq = 0
        self.acked_seq: dict[str, int] = {}
        self._pending_reads: list[tuple[object, int, int]] = []  # (request id, read index, seq)
        self._reads_waiting_commit: list[object] = []
        self._read_bcast = False
        self._terms_heard: dict[str, int] = {}  # rejoin: highest term seen from each peer
        self._snapshot_requested = 0
        self._ticks = 0
        self._held: list[tuple[int, Message]] = []  # follower: (tick held, append) ahead of a gap
        self._streaming_term = -1  # follower: the term in which we last accepted an append
        self._ready_out: Ready | None = None
        self._handed_out_at = 0  # the tick (self._ticks) at which committed entries were last handed out
        self._apply_until = 0  # apply_now(): hand out entries at once until applied reaches this
        self.transferee: str | None = None  # leader: handing leadership to this follower; no proposals meanwhile
        self._transfer_ticks = 0
        self._reset_timeouts()

    # -- inputs ---------------------------------------------------------------------------------

    def tick(self) -> None:
        self._check_idle()
        self.election_elapsed += 1
        self._ticks += 1
        if self.role != Role.LEADER:
            if self._held and self._ticks - self._held[0][0] >= self.reorder_ticks:
                self._give_up_held()
            if self.rejoining:
                self.heartbeat_elapsed += 1  # unused by followers: paces the term probes
                if self.heartbeat_elapsed >= self.election_lo:
                    self.heartbeat_elapsed = 0
                    for p in self.others:
                        if p not in self._terms_heard:
                            self._send(Message(MsgType.TERM_PROBE, self.id, p, self.term))
            elif self.election_elapsed >= self.randomized_timeout:
                self._campaign(pre=self.pre_vote)
            return
        if self.transferee is not None:
            self._transfer_ticks += 1
            if self._transfer_ticks >= self.election_lo:
                self.transferee = None  # it did not take over within an election timeout: lead on
        if self.election_elapsed >= self.election_lo:
            self.election_elapsed = 0
            if self.check_quorum:
                active = 1 + sum(1 for pr in self.progress.values() if pr.recent_active)
                for pr in self.progress.values():
                    pr.recent_active = False
                if active < self.quorum:
                    self._become_follower(self.term, None)  # partitioned away: stop acting as leader
                    return
        self.heartbeat_elapsed += 1
        if self.heartbeat_elapsed >= self.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            retry = self.election_lo // self.heartbeat_ticks + 1
            for p, pr in self.progress.items():
                if pr.state == PrState.SNAPSHOT:
                    pr.snapshot_wait += 1
                    if pr.snapshot_wait >= retry:  # snapshot or its answer lost: send it again
                        pr.become_probe()
                        self._dirty[p] = True
            self._bcast_heartbeat()

    def propose(self, data: bytes) -> Proposed:
        """Append a command. Raises NotLeader. Committed iff the entry applied at
        ``result.index`` has term ``result.term``."""
        return self.propose_many([data])[0]

    def propose_many(self, datas: list[bytes]) -> list[Proposed]:
        self._check_idle()
        if self.role != Role.LEADER:
            raise NotLeader(leader=self.leader)
        if self.transferee is not None:  # the transferee must catch up with a log that stops growing
            raise NotLeader(f"handing leadership to master {self.transferee}", leader=None)
        first = self.log.last_index() + 1
        ents = [Entry(self.term, first + k, d) for k, d in enumerate(datas)]
        self.log.append(ents)
        for p in self.others:
            self._dirty.setdefault(p, False)
        return [Proposed(e.index, self.term) for e in ents]

    def read_index(self, request_id: object) -> None:
        """Ask for a linearizable read. A ``ReadState`` for it appears in a later Ready once a quorum
        confirmed this node still leads; serve the read when applied >= its index. Raises NotLeader.
        Pending reads are dropped silently if leadership is lost: the shell times them out."""
        self._check_idle()
        if self.role != Role.LEADER:
            raise NotLeader(leader=self.leader)
        if self.log.term(self.log.committed) != self.term:
            self._reads_waiting_commit.append(request_id)  # our no-op is not committed yet
            return
        self._pending_reads.append((request_id, self.log.committed, self.hb_seq + 1))
        self._read_bcast = True

    def transfer_leadership(self, to: str | None = None) -> str:
        """Hand leadership to ``to`` (None: the follower with the longest log): stop taking proposals,
        bring it up to date, then tell it to campaign at once (TIMEOUT_NOW). Returns the transferee.
        Leadership moves when its election wins; the transfer is dropped after an election timeout
        without it (``transferee`` back to None), and proposals are taken again. Raises NotLeader, or
        ValueError for a master that cannot take over."""
        self._check_idle()
        if self.role != Role.LEADER:
            raise NotLeader(leader=self.leader)
        if to == self.id:
            return to
        if to is None:
            ready = [p for p, pr in self.progress.items() if not pr.rejoining]
            if not ready:
                raise ValueError("no other master can take over")
            to = max(ready, key=lambda p: (self.progress[p].match, p))
        elif to not in self.progress:
            raise ValueError(f"{to!r} is not one of the masters ({', '.join(self.peers)})")
        elif self.progress[to].rejoining:
            raise ValueError(f"master {to} is rejoining (a replacement still catching up); it cannot lead yet")
        self.transferee, self._transfer_ticks = to, 0
        if not self._go_if_caught_up(to):
            self._dirty[to] = self._dirty.get(to, False)  # send what it lacks; TIMEOUT_NOW once it matches
        return to

    def _go_if_caught_up(self, peer: str) -> bool:
        """The transferee holds our whole log: tell it to campaign (again, if a TIMEOUT_NOW was lost)."""
        if peer != self.transferee or self.progress[peer].match != self.log.last_index():
            return False
        self._send(Message(MsgType.TIMEOUT_NOW, self.id, peer, self.term))
        return True

    def apply_now(self, up_to: int) -> None:
        """Hand out committed entries at once, batch or not, until ``up_to`` is applied (a read waits
        for them)."""
        self._apply_until = max(self._apply_until, up_to)

    def compact(self, index: int, data: bytes) -> None:
        """The shell took a snapshot of the state machine at ``index`` (<= applied) and stored it
        durably together with dropping its log up to ``index``."""
        self._check_idle()
        self.log.compact(index, data)
        self._snapshot_requested = 0

    def step(self, m: Message) -> None:
        self._check_idle()
        if m.to != self.id or m.frm not in self.others:
            return
        if self.rejoining:
            if m.term > self._terms_heard.get(m.frm, -1):
                self._terms_heard[m.frm] = m.term
            if m.type == MsgType.TERM_PROBE_RESP:
                return
        if m.type == MsgType.TERM_PROBE:
            self._send(Message(MsgType.TERM_PROBE_RESP, self.id, m.frm, self.term))
            return
        if m.term > self.term:
            if m.type in (MsgType.PRE_VOTE, MsgType.VOTE) and not m.transfer:
                if self.check_quorum and self.leader is not None and self.election_elapsed < self.election_lo:
                    return  # we heard from a live leader recently: do not let a stray node disrupt it
            if m.type == MsgType.PRE_VOTE or (m.type == MsgType.PRE_VOTE_RESP and not m.reject):
                pass  # pre-votes never change our term
            else:
                self._become_follower(m.term, m.frm if m.type in _FROM_LEADER else None)
        elif m.term < self.term:
            if m.type in (MsgType.APPEND, MsgType.HEARTBEAT):
                # A stale leader (e.g. after a partition): tell it our term so it steps down.
                self._send(Message(MsgType.APPEND_RESP, self.id, m.frm, self.term))
            elif m.type == MsgType.PRE_VOTE:
                self._send(Message(MsgType.PRE_VOTE_RESP, self.id, m.frm, self.term, reject=True))
            return

        if m.type in (MsgType.PRE_VOTE, MsgType.VOTE):
            self._handle_vote_request(m)
        elif self.role == Role.LEADER:
            if m.type in (MsgType.APPEND_RESP, MsgType.HEARTBEAT_RESP):
                self._leader_handle_response(m)
        elif self.role in (Role.PRE_CANDIDATE, Role.CANDIDATE) and m.type not in _FROM_LEADER:
            self._handle_vote_response(m)
        elif m.type == MsgType.TIMEOUT_NOW:
            # Our leader hands over: campaign now, skipping pre-vote (it asked; the others will hear it).
            if m.frm == self.leader and self.role == Role.FOLLOWER and not self.rejoining:
                self._campaign(pre=False, transfer=True)
        elif m.type in _FROM_LEADER:
            if self.role != Role.FOLLOWER:
                self._become_follower(m.term, m.frm)
            self.election_elapsed = 0
            self.leader = m.frm
            if m.type == MsgType.APPEND:
                self._handle_append(m)
            elif m.type == MsgType.HEARTBEAT:
                # A rejoining node trusts the commit only once the leader has reset its view of us.
                if not self.rejoining or m.rejoin:
                    self.log.commit_to(m.commit)
                    if self.rejoining:
                        self._maybe_finish_rejoin()
                self._send(Message(MsgType.HEARTBEAT_RESP, self.id, m.frm, self.term, seq=m.seq))
            else:
                self._handle_snapshot(m)

    # -- outputs --------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self.msgs or self.read_states or self._dirty or self._read_bcast:
            return True
        lg = self.log
        if lg.pending_snapshot is not None or lg.unstable <= lg.offset + len(lg.entries):
            return True
        if lg.committed > lg.applied and self._apply_due():
            return True
        hs, ss = self._prev_hs, self._prev_soft  # field by field: this runs after every input
        return (self.term != hs.term or self.vote != hs.vote or lg.committed != hs.commit
                or self.rejoining != hs.rejoining or self.leader != ss.leader or self.role != ss.role)

    def ready(self) -> Ready:
        self._check_idle()
        if self.role == Role.LEADER:
            self._flush()
        rd = Ready()
        soft = self._soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
        hs = self._hard_state()
        if hs != self._prev_hs:
            rd.hard_state = hs
        rd.snapshot = self.log.pending_snapshot
        rd.entries = self.log.unstable_entries()
        rd.messages, self.msgs = self.msgs, []
        if self._apply_due():
            rd.committed_entries = self.log.committed_to_apply()
            if rd.committed_entries:
                self._handed_out_at = self._ticks
        rd.read_states, self.read_states = self.read_states, []
        applied = rd.committed_entries[-1].index if rd.committed_entries else self.log.applied
        if (self.snapshot_threshold and applied - self.log.offset >= self.snapshot_threshold
                and applied > self._snapshot_requested):
            rd.snapshot_request = self._snapshot_requested = applied
        self._ready_out = rd
        return rd

    def advance(self, rd: Ready) -> None:
        if rd is not self._ready_out:
            raise RuntimeError("advance() with a Ready that is not the outstanding one")
        self._ready_out = None
        if rd.hard_state is not None:
            self._prev_hs = rd.hard_state
        if rd.soft_state is not None:
            self._prev_soft = rd.soft_state
        if rd.snapshot is not None:
            self.log.pending_snapshot = None
            self.log.applied = max(self.log.applied, rd.snapshot.meta.index)
        if rd.entries:
            self.log.unstable = rd.entries[-1].index + 1
        if rd.committed_entries:
            self.log.applied = rd.committed_entries[-1].index
        if self.role == Role.LEADER and rd.entries and self._maybe_commit():
            self._tell_commit()  # our own entries are durable now and completed a quorum

    def status(self) -> dict:
        lg = self.log
        st = {"id": self.id, "role": self.role.value, "term": self.term, "vote": self.vote,
              "leader": self.leader, "commit": lg.committed, "applied": lg.applied,
              "last_index": lg.last_index(), "snapshot_index": lg.offset, "rejoining": self.rejoining,
              "transferee": self.transferee, "followers": {}}
        if self.role == Role.LEADER:
            last = lg.last_index()
            st["followers"] = {p: {"match": pr.match, "next": pr.next, "state": pr.state.name.lower(),
                                   "lag": last - pr.match, "active": pr.recent_active}
                               for p, pr in sorted(self.progress.items())}
        return st

    # -- roles ----------------------------------------------------------------------------------

    def _apply_due(self) -> bool:
        lg = self.log
        return (self.role == Role.LEADER or self._ticks > self._handed_out_at or self._apply_until > lg.applied
                or lg.committed - lg.applied >= self.follower_apply_batch)

    def _reset_timeouts(self) -> None:
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self.rng.randint(self.election_lo, self.election_hi)

    def _become_follower(self, term: int, leader: str | None) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.role = Role.FOLLOWER
        self.leader = leader
        self._reset_timeouts()
        self._clear_leader_state()

    def _clear_leader_state(self) -> None:
        self._held = []
        self._streaming_term = -1  # a stream from a leader ends with any change of role or term
        self.progress = {}
        self._dirty = {}
        self._pending_reads = []
        self._reads_waiting_commit = []
        self._read_bcast = False
        self.votes = {}
        self.transferee = None

    def _campaign(self, pre: bool, transfer: bool = False) -> None:
        if pre:
            self.role = Role.PRE_CANDIDATE
            term, mtype = self.term + 1, MsgType.PRE_VOTE
        else:
            self.role = Role.CANDIDATE
            self.term += 1
            self.vote = self.id
            term, mtype = self.term, MsgType.VOTE
        self.leader = None
        self._reset_timeouts()
        self._clear_leader_state()
        self.votes = {self.id: True}
        if self.quorum == 1:
            self._campaign(False) if pre else self._become_leader()
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for p in self.others:
            self._send(Message(mtype, self.id, p, term, log_term=last_term, index=last_index, transfer=transfer))

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader = self.id
        self._reset_timeouts()
        self._clear_leader_state()
        last = self.log.last_index()
        self.progress = {p: Progress(last + 1, self.max_inflight) for p in self.others}
        self.acked_seq = {p: 0 for p in self.others}
        self.hb_seq = 0
        self.log.append([Entry(self.term, last + 1, b"", EntryKind.NOOP)])  # commits earlier terms' entries
        for p in self.others:
            self._dirty[p] = True

    def _handle_vote_request(self, m: Message) -> None:
        pre = m.type == MsgType.PRE_VOTE
        resp = MsgType.PRE_VOTE_RESP if pre else MsgType.VOTE_RESP
        can_vote = (self.vote == m.frm or (self.vote is None and self.leader is None)
                    or (pre and m.term > self.term))
        if not self.rejoining and can_vote and self.log.is_up_to_date(m.index, m.log_term):
            self._send(Message(resp, self.id, m.frm, m.term))
            if not pre:
                self.election_elapsed = 0
                self.vote = m.frm  # persisted (Ready.hard_state) before the response leaves
        else:
            self._send(Message(resp, self.id, m.frm, self.term, reject=True))

    def _handle_vote_response(self, m: Message) -> None:
        pre = self.role == Role.PRE_CANDIDATE
        if m.type != (MsgType.PRE_VOTE_RESP if pre else MsgType.VOTE_RESP):
            return
        if pre and not m.reject and m.term != self.term + 1:
            return  # a grant from an older pre-vote round
        self.votes.setdefault(m.frm, not m.reject)
        granted = sum(1 for v in self.votes.values() if v)
        if granted >= self.quorum:
            self._campaign(False) if pre else self._become_leader()
        elif len(self.votes) - granted >= self.quorum:
            self._become_follower(self.term, None)

    # -- follower side of replication -----------------------------------------------------------

    def _handle_append(self, m: Message) -> None:
        if self._hold(m):
            return
        if self._append(m) and self._held:
            self._release_held()

    def _hold(self, m: Message) -> bool:
        """Keep an append that starts beyond our log while its leader is streaming to us.

        Its predecessors left the leader earlier and, on a network that reorders, are most likely
        still on the way. Rejecting it would make the leader fall back to one append per round trip
        from our match (and every later append of the stream, arriving before the gap is filled,
        would be rejected as well), so a backlog drains at the pace of the reordering. A hold is
        released as soon as the gap closes, or rejected after ``reorder_ticks``: then a predecessor
        was lost and the leader must probe. Only within a term in which we already accepted from
        this leader: a probe beyond our log (a new leader finding where we match) is answered at once.
        """
        if (m.index <= self.log.last_index() or self._streaming_term != self.term
                or len(self._held) >= self.max_inflight):
            return False
        self._held.append((self._ticks, m))
        return True

    def _release_held(self) -> None:
        while self._held:
            last = self.log.last_index()
            due = sorted((m for _, m in self._held if m.index <= last), key=lambda m: m.index)
            if not due:
                return
            self._held = [(t, m) for t, m in self._held if m.index > last]
            for m in due:
                self._append(m)

    def _give_up_held(self) -> None:
        """A held append's predecessor never came: reject the first held one so the leader probes."""
        first = min((m for _, m in self._held), key=lambda m: m.index)
        self._held = []
        self._append(first)

    def _append(self, m: Message) -> bool:
        lg = self.log
        if m.index < lg.committed:
            self._send(Message(MsgType.APPEND_RESP, self.id, m.frm, self.term, index=lg.committed))
            return False
        last_new = lg.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is None:
            hint, hint_term = lg.find_conflict_by_term(min(m.index, lg.last_index()), m.log_term)
            self._send(Message(MsgType.APPEND_RESP, self.id, m.frm, self.term, index=m.index, reject=True,
                               reject_hint=hint, log_term=hint_term))
            return False
        self._streaming_term = self.term
        if self.rejoining and m.rejoin:
            self._maybe_finish_rejoin()
        self._send(Message(MsgType.APPEND_RESP, self.id, m.frm, self.term, index=last_new))
        return True

    def _handle_snapshot(self, m: Message) -> None:
        lg = self.log
        meta = m.snapshot.meta
        if meta.index <= lg.committed:
            idx = lg.committed
        elif lg.match_term(meta.index, meta.term):
            lg.commit_to(meta.index)  # we already have it: just fast-forward the commit
            idx = lg.committed
        else:
            lg.restore(m.snapshot)  # persisted (Ready.snapshot) before the response leaves
            idx = meta.index
        self._send(Message(MsgType.APPEND_RESP, self.id, m.frm, self.term, index=idx))

    def _maybe_finish_rejoin(self) -> None:
        """Vote again only when (1) every peer told us its term, so we are past any term our wiped
        predecessor may have voted in, and (2) we hold a committed entry of the current leader's
        term, hence every entry committed before. See DESIGN.md."""
        if len(self._terms_heard) < len(self.others) or max(self._terms_heard.values()) > self.term:
            return
        if self.log.term(self.log.committed) != self.term:
            return
        self.rejoining = False
        self.vote = self.id  # abstain in this term: the predecessor may have voted in it

    # -- leader side of replication -------------------------------------------------------------

    def _leader_handle_response(self, m: Message) -> None:
        pr = self.progress[m.frm]
        pr.recent_active = True
        if m.rejoin and not pr.rejoining:
            pr.rejoining = True  # its disk was wiped: what we thought it matched is gone
            pr.reset(self.log.last_index() + 1)
            self._dirty[m.frm] = True
        elif not m.rejoin:
            pr.rejoining = False
        if m.type == MsgType.HEARTBEAT_RESP:
            if m.seq > self.acked_seq[m.frm]:
                self.acked_seq[m.frm] = m.seq
                self._release_reads()
            self._go_if_caught_up(m.frm)
            if pr.state == PrState.PROBE:
                pr.probe_sent = False
            elif pr.state == PrState.REPLICATE and pr.is_paused():
                pr.become_probe()  # window full and it is alive: appends were lost, resync from match
            if pr.match < self.log.last_index():
                self._dirty[m.frm] = True
            return
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                hint = self.log.find_conflict_by_term(m.reject_hint, m.log_term)[0]
            if pr.maybe_decr_to(m.index, hint):
                if pr.state == PrState.REPLICATE:
                    pr.become_probe()
                self._dirty[m.frm] = True
            return
        if not pr.maybe_update(m.index):
            return
        if pr.state == PrState.PROBE:
            pr.become_replicate()
        elif pr.state == PrState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe()
            pr.become_replicate()
        else:
            pr.free_to(m.index)
        self._go_if_caught_up(m.frm)
        if self._maybe_commit():
            self._tell_commit()
        else:  # more to send, or at least tell it the commit index it has not seen
            self._dirty[m.frm] = self._dirty.get(m.frm, False) or (
                self.eager_commit and pr.sent_commit < self.log.committed)

    def _tell_commit(self) -> None:
        for p in self.others:
            if self.eager_commit:
                self._dirty[p] = True  # an append even with no entries: it carries the commit index
            else:
                self._dirty.setdefault(p, False)  # entries waiting go now; the commit rides along

    def _maybe_commit(self) -> bool:
        matches = sorted([self.log.unstable - 1] + [pr.match for pr in self.progress.values()], reverse=True)
        mci = matches[self.quorum - 1]
        # Only entries of the current term are committed by counting replicas (Raft §5.4.2, Figure 8).
        if mci > self.log.committed and self.log.term(mci) == self.term:
            self.log.commit_to(mci)
            if self._reads_waiting_commit:
                for rid in self._reads_waiting_commit:
                    self._pending_reads.append((rid, mci, self.hb_seq + 1))
                self._reads_waiting_commit = []
                self._read_bcast = True
            return True
        return False

    def _flush(self) -> None:
        """Leader, at ready(): batch all pending appends and read-index heartbeats into messages."""
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            last = self.log.last_index()
            for p in sorted(dirty):
                pr = self.progress[p]
                sent = self._send_append(p, pr, dirty[p])
                while sent and pr.state == PrState.REPLICATE and pr.next <= last:
                    sent = self._send_append(p, pr, False)
        if self._read_bcast:
            self._read_bcast = False
            self.hb_seq += 1
            self._bcast_heartbeat()
            self._release_reads()

    def _send_append(self, to: str, pr: Progress, send_if_empty: bool) -> bool:
        if pr.is_paused():
            return False
        lg = self.log
        prev = pr.next - 1
        prev_term = lg.term(prev)
        if prev_term is None or pr.next <= lg.offset:
            if prev < lg.offset:  # the entries it needs are compacted away: InstallSnapshot
                self._send(Message(MsgType.SNAPSHOT, self.id, to, self.term, snapshot=lg.snapshot))
                pr.become_snapshot(lg.offset)
                return True
            pr.next = lg.last_index() + 1  # beyond our log (stale next): probe from the end
            prev, prev_term = lg.last_index(), lg.last_term()
        ents = lg.slice(pr.next, pr.next + self.max_append_entries)
        if not ents and not send_if_empty:
            return False
        self._send(Message(MsgType.APPEND, self.id, to, self.term, log_term=prev_term, index=prev,
                           entries=tuple(ents), commit=lg.committed, rejoin=pr.rejoining))
        pr.sent(ents[-1].index if ents else None)
        pr.sent_commit = max(pr.sent_commit, lg.committed)
        return True

    def _bcast_heartbeat(self) -> None:
        committed = self.log.committed
        for p, pr in self.progress.items():
            self._send(Message(MsgType.HEARTBEAT, self.id, p, self.term, commit=min(pr.match, committed),
                               seq=self.hb_seq, rejoin=pr.rejoining))

    def _release_reads(self) -> None:
        if not self._pending_reads:
            return
        acks = sorted([self.hb_seq, *self.acked_seq.values()], reverse=True)
        confirmed = acks[self.quorum - 1]
        keep = []
        for rid, index, seq in self._pending_reads:
            if seq <= confirmed:
                self.read_states.append(ReadState(rid, index))
            else:
                keep.append((rid, index, seq))
        self._pending_reads = keep

    # -- helpers --------------------------------------------------------------------------------

    def _send(self, m: Message) -> None:
        if self.rejoining:
            m.rejoin = True
        self.msgs.append(m)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed, self.rejoining)

    def _soft_state(self) -> SoftState:
        return SoftState(self.leader, self.role)

    def _check_idle(self) -> None:
        if self._ready_out is not None:
            raise RuntimeError("call advance() for the outstanding Ready before feeding the node again")
