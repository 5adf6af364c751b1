"""Deterministic simulator of a Raft cluster built from the pure core (dcosd.master.replog).

Everything comes from one seed: cluster size, fault intensities, the network (loss, duplication,
reordering by random delay, symmetric and asymmetric partitions), crashes (between steps and in the
middle of handling a Ready, with or without losing the not-yet-fsynced writes), wipes of a disk
(replacement master, rejoin mode), client proposals, linearizable reads, compaction and InstallSnapshot.

Each node has a ``Disk``: only what a Ready's persistence step fsynced survives a power loss.
On a fraction of seeds (``SimConfig.early_send``) leaders behave like the production shell: a
leader's APPEND/HEARTBEAT messages leave *before* the fsync of their Ready when that Ready changes
no term/vote and carries no snapshot (Raft thesis §10.2.1), and the leader may die in that window,
losing entries its followers already hold.
Checked at every step (``SafetyViolation`` on failure):
  - persist-before-send: no message leaves that depends on state that is not durable yet (an early
    APPEND/HEARTBEAT still needs the leader's term and self-vote durable, nothing more);
  - election safety: at most one leader per term;
  - log matching: an (index, term) pair names one entry, with one predecessor term;
  - leader completeness: a new leader holds every entry known committed;
  - state-machine safety: all nodes apply the same entry at an index, in order, without gaps,
    and no command twice; acknowledged proposals are never lost;
  - read index: a read is served at an index covering every proposal acknowledged before it was asked.
At the end all faults heal and liveness is checked: a leader emerges and a fresh command plus every
acknowledged one are applied on all nodes within a bound of ticks.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field

from dcosd.errors import NotLeader
from dcosd.master.replog import (Entry, EntryKind, HardState, Message, MsgType, PersistedState, RaftNode,
                                 Ready, Role, Snapshot, SnapshotMeta)


class SafetyViolation(AssertionError):
    pass


_EARLY = (MsgType.APPEND, MsgType.HEARTBEAT)  # what a leader may send before its fsync


@dataclass
class SimConfig:
    nodes: int = 3
    chaos_ticks: int = 300
    liveness_ticks: int = 400
    election_ticks: tuple[int, int] = (10, 20)
    heartbeat_ticks: int = 2
    drop: float = 0.05
    dup: float = 0.02
    max_delay: int = 3
    p_partition: float = 0.01  # per tick: change the partition
    p_crash: float = 0.002  # per node per tick
    p_crash_in_ready: float = 0.002  # per Ready handled
    p_power_loss: float = 0.5  # a crash loses the unsynced writes
    p_wipe: float = 0.0005  # per tick: wipe a disk (replacement master)
    p_crash_leader: float = 0.0  # per tick: the leader dies and comes back soon (Figure 8 churn)
    p_crash_after_commit: float = 0.0  # a leader dies right after sending a new commit index
    p_propose: float = 0.3  # per tick
    p_read: float = 0.05  # per tick
    p_transfer: float = 0.0  # per tick: the leader is asked to hand leadership to a follower
    snapshot_threshold: int = 20
    max_append_entries: int = 8
    # The production shell's order for leaders (see Sim._handle): appends/heartbeats before the fsync.
    early_send: bool = False
    p_crash_early: float = 0.0  # per early-sending Ready: die between the send and the fsync
    # RaftNode(eager_commit=): an empty append announces each new commit index (etcd's way), or the
    # commit rides on the next append/heartbeat (what the production shell runs).
    eager_commit: bool = True
    # RaftNode(follower_apply_batch=): followers apply committed entries in batches (the shell runs 32).
    follower_apply_batch: int = 1
    # A deliberately wrong shell (to prove the checker works): send before fsync.
    buggy_send_before_fsync: bool = False

    EARLY_SEND_FRACTION = 0.5  # of seeds that model the production shell's early sends

    @classmethod
    def from_seed(cls, seed: int, early_send_fraction: float | None = None) -> "SimConfig":
        if early_send_fraction is None:
            early_send_fraction = cls.EARLY_SEND_FRACTION
        r = random.Random(seed ^ 0x5EED)
        return cls(
            nodes=5 if r.random() < 0.35 else 3,
            drop=r.choice([0.0, 0.02, 0.1, 0.25]),
            dup=r.choice([0.0, 0.02, 0.1]),
            max_delay=r.choice([0, 1, 3, 6]),
            p_partition=r.choice([0.0, 0.005, 0.02]),
            p_crash=r.choice([0.0, 0.001, 0.004]),
            p_crash_in_ready=r.choice([0.0, 0.001, 0.005]),
            p_power_loss=r.choice([0.0, 0.5, 1.0]),
            p_wipe=r.choice([0.0, 0.0, 0.002]),
            p_crash_leader=r.choice([0.0, 0.0, 0.02, 0.05]),
            p_crash_after_commit=r.choice([0.0, 0.0, 0.1, 0.3]),
            p_propose=r.choice([0.1, 0.3, 0.8]),
            snapshot_threshold=r.choice([0, 8, 25]),
            max_append_entries=r.choice([1, 8, 64]),
            # drawn last, so the profiles above stay what they were for every seed
            early_send=r.random() < early_send_fraction,
            p_crash_early=r.choice([0.0, 0.02, 0.1]),
            eager_commit=r.random() < 0.5,
            follower_apply_batch=r.choice([1, 1, 4, 32]),
            p_transfer=r.choice([0.0, 0.0, 0.01, 0.05]),
        )


@dataclass
class Disk:
    """Durable state of one node: what survives a crash."""

    hs: HardState = HardState()
    snapshot: Snapshot = Snapshot()
    entries: list[Entry] = field(default_factory=list)
    checked_commit: int = 0  # the checker's mark (how far this node's commits were checked), not durable state

    def last_index(self) -> int:
        return self.snapshot.meta.index + len(self.entries)

    def term(self, index: int) -> int | None:
        off = self.snapshot.meta.index
        if index == off:
            return self.snapshot.meta.term
        k = index - off - 1
        return self.entries[k].term if 0 <= k < len(self.entries) else None


class Crash(Exception):
    """Raised inside Ready handling to simulate the process dying there."""


class SimNode:
    def __init__(self, nid: str) -> None:
        self.id = nid
        self.disk = Disk()
        self.raft: RaftNode | None = None
        self.sm_index = 0  # state machine: applied index and the commands applied, in order
        self.sm_cmds: list[bytes] = []
        self.down_until = -1
        self.wiped = False


class Sim:
    def __init__(self, seed: int, cfg: SimConfig | None = None) -> None:
        self.seed = seed
        self.cfg = cfg or SimConfig.from_seed(seed)
        self.rng = random.Random(seed)
        self.ids = [f"n{i}" for i in range(1, self.cfg.nodes + 1)]
        self.nodes = {i: SimNode(i) for i in self.ids}
        self.now = 0
        self.healed_at: int | None = None
        self.net: list[tuple[int, int, Message]] = []
        self.msg_seq = 0
        self.blocked: set[tuple[str, str]] = set()
        self.trace: deque[str] = deque(maxlen=40)
        # global knowledge for the checkers
        self.leaders: dict[int, str] = {}
        self.entry_reg: dict[tuple[int, int], tuple[bytes, int, int]] = {}
        self.committed_term: dict[int, int] = {}
        self.max_committed = 0
        self.canonical: dict[int, tuple[int, bytes]] = {}
        self.cmd_at: dict[bytes, int] = {}
        self.snapshots: dict[bytes, tuple[int, tuple[bytes, ...]]] = {}
        self.proposals: dict[str, dict[int, tuple[int, bytes]]] = {i: {} for i in self.ids}
        self.acked: dict[bytes, int] = {}
        self.max_acked = 0
        self.reads: dict[int, int] = {}  # read id -> max acked index when asked
        self.reads_served = 0
        # entries a leader sent early and lost in a crash; how often a follower then stored one
        self.lost_early: set[tuple[int, int]] = set()
        self.lost_early_held = 0
        self.cmd_counter = 0
        self.read_counter = 0
        for sn in self.nodes.values():
            self._start(sn, rejoin=False)

    # -- driver ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            for _ in range(self.cfg.chaos_ticks):
                self._chaos()
                self._tick_all()
            self._heal()
            self._liveness()
        except SafetyViolation as exc:
            raise SafetyViolation(self._report(str(exc))) from None

    def _report(self, what: str) -> str:
        return (f"seed {self.seed} tick {self.now}: {what}\nconfig: {self.cfg}\nlast events:\n  "
                + "\n  ".join(self.trace)
                + f"\nreplay: DCOSD_SIM_SEED={self.seed} python -m pytest tests/sim/test_raft_sim.py -x -q")

    def fail(self, what: str) -> None:
        raise SafetyViolation(what)

    def _tick_all(self) -> None:
        self.now += 1
        for sn in self.nodes.values():
            if sn.raft is None and 0 <= sn.down_until <= self.now:
                self._start(sn, rejoin=sn.wiped and sn.disk.hs.term == 0 and not sn.disk.hs.rejoining)
        for sn in self.nodes.values():
            if sn.raft is not None:
                sn.raft.tick()
                self._handle(sn)
        net = self.net
        while net and net[0][0] <= self.now:
            _, _, m = heapq.heappop(net)
            sn = self.nodes[m.to]
            if sn.raft is None or (m.frm, m.to) in self.blocked:
                continue
            sn.raft.step(m)
            self._handle(sn)

    def _send(self, m: Message) -> None:
        cfg, r = self.cfg, self.rng
        if cfg.drop and r.random() < cfg.drop:
            return
        copies = 2 if cfg.dup and r.random() < cfg.dup else 1
        for _ in range(copies):
            self.msg_seq += 1
            delay = r.randint(0, cfg.max_delay) if cfg.max_delay else 0
            heapq.heappush(self.net, (self.now + delay, self.msg_seq, m))

    # -- faults and clients ---------------------------------------------------------------------

    def _chaos(self) -> None:
        cfg, r = self.cfg, self.rng
        if cfg.p_partition and r.random() < cfg.p_partition:
            self._repartition()
        for sn in self.nodes.values():
            if sn.raft is not None and cfg.p_crash and r.random() < cfg.p_crash:
                self._crash(sn, power_loss=r.random() < cfg.p_power_loss)
        if cfg.p_crash_leader and r.random() < cfg.p_crash_leader:
            for sn in self.nodes.values():
                if sn.raft is not None and sn.raft.role == Role.LEADER:
                    self._crash(sn, power_loss=r.random() < cfg.p_power_loss, down=r.randint(1, 15))
        if cfg.p_wipe and r.random() < cfg.p_wipe:
            self._maybe_wipe()
        if r.random() < cfg.p_propose:
            self._client_propose(r.randint(1, 3))
        if cfg.p_read and r.random() < cfg.p_read:
            self._client_read()
        if cfg.p_transfer and r.random() < cfg.p_transfer:
            self._transfer_leadership()

    def _repartition(self) -> None:
        r = self.rng
        kind = r.choice(["heal", "split", "asym", "isolate-leader"])
        self.blocked = set()
        if kind == "split":
            ids = self.ids[:]
            r.shuffle(ids)
            cut = r.randint(1, len(ids) - 1)
            a, b = ids[:cut], ids[cut:]
            self.blocked = {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
        elif kind == "asym":
            pairs = [(x, y) for x in self.ids for y in self.ids if x != y]
            self.blocked = set(r.sample(pairs, r.randint(1, len(pairs) // 2)))
        elif kind == "isolate-leader":
            lead = [sn.id for sn in self.nodes.values() if sn.raft and sn.raft.role == Role.LEADER]
            if lead:
                x = lead[0]
                self.blocked = {(x, y) for y in self.ids if y != x} | {(y, x) for y in self.ids if y != x}
        self.trace.append(f"t{self.now} partition {kind} {sorted(self.blocked)}")

    def _crash(self, sn: SimNode, power_loss: bool, staged: tuple | None = None, down: int = 0) -> None:
        if staged is not None and not power_loss:
            self._persist(sn, *staged)  # the process died but the OS kept the written pages
        sn.raft = None
        sn.sm_cmds = []
        sn.sm_index = 0
        sn.down_until = self.now + (down or self.rng.randint(1, 60))
        self.trace.append(f"t{self.now} crash {sn.id} power_loss={power_loss} staged={staged is not None}")

    def _maybe_wipe(self) -> None:
        if any(sn.wiped for sn in self.nodes.values()):
            return  # one replacement at a time (until it has rejoined)
        sn = self.rng.choice(list(self.nodes.values()))
        if sn.raft is not None:
            self._crash(sn, power_loss=True)
        sn.disk = Disk()
        sn.wiped = True
        # the old machine is dead: nothing it sent is still on the wire
        self.net = [x for x in self.net if x[2].frm != sn.id]
        heapq.heapify(self.net)
        self.trace.append(f"t{self.now} wipe {sn.id}")

    def _start(self, sn: SimNode, rejoin: bool) -> None:
        d = sn.disk
        sn.raft = RaftNode(sn.id, self.ids, rng=random.Random(self.rng.random()),
                           state=PersistedState(d.hs, d.snapshot, tuple(d.entries)),
                           election_ticks=self.cfg.election_ticks, heartbeat_ticks=self.cfg.heartbeat_ticks,
                           max_append_entries=self.cfg.max_append_entries,
                           snapshot_threshold=self.cfg.snapshot_threshold, rejoin=rejoin,
                           eager_commit=self.cfg.eager_commit,
                           follower_apply_batch=self.cfg.follower_apply_batch)
        sn.down_until = -1
        sn.sm_index, cmds = self._restore_sm(d.snapshot)
        sn.sm_cmds = list(cmds)
        self.trace.append(f"t{self.now} start {sn.id} rejoin={rejoin} hs={d.hs} snap={d.snapshot.meta}")
        self._handle(sn)

    def _restore_sm(self, snap: Snapshot) -> tuple[int, tuple[bytes, ...]]:
        if snap.meta.index == 0:
            return 0, ()
        return self.snapshots[snap.data]

    def _pick_client_target(self) -> SimNode:
        # clients mostly find a node that believes it leads (possibly a stale one), sometimes any node
        leads = [sn for sn in self.nodes.values() if sn.raft is not None and sn.raft.role == Role.LEADER]
        if leads and self.rng.random() < 0.9:
            return self.rng.choice(leads)
        return self.rng.choice(list(self.nodes.values()))

    def _client_propose(self, n: int) -> None:
        sn = self._pick_client_target()
        if sn.raft is None:
            return
        datas = []
        for _ in range(n):
            self.cmd_counter += 1
            datas.append(b"c%d" % self.cmd_counter)
        try:
            props = sn.raft.propose_many(datas)
        except NotLeader:
            return
        for p, d in zip(props, datas):
            self.proposals[sn.id][p.index] = (p.term, d)
        self._handle(sn)

    def _client_read(self) -> None:
        sn = self._pick_client_target()
        if sn.raft is None:
            return
        self.read_counter += 1
        try:
            sn.raft.read_index(self.read_counter)
        except NotLeader:
            return
        self.reads[self.read_counter] = self.max_acked
        self._handle(sn)

    def _transfer_leadership(self) -> None:
        lead = [sn for sn in self.nodes.values() if sn.raft is not None and sn.raft.role == Role.LEADER]
        if not lead:
            return
        sn = self.rng.choice(lead)
        to = self.rng.choice([None, *sn.raft.others])
        try:
            chosen = sn.raft.transfer_leadership(to)
        except (NotLeader, ValueError):
            return
        self.trace.append(f"t{self.now} transfer {sn.id} -> {chosen}")
        self._handle(sn)

    def _heal(self) -> None:
        self.healed_at = self.now  # liveness_report.py: how long the liveness phase took
        self.blocked = set()
        self.cfg.drop = self.cfg.dup = 0.0
        self.cfg.p_crash_in_ready = self.cfg.p_crash_leader = self.cfg.p_crash_after_commit = 0.0
        self.cfg.p_transfer = 0.0
        self.cfg.p_crash_early = 0.0
        for sn in self.nodes.values():
            if sn.raft is None:
                sn.down_until = self.now
        self.trace.append(f"t{self.now} heal")

    def _liveness(self) -> None:
        final: tuple[bytes, int] | None = None  # (command, term of the leader it was proposed to)
        deadline = self.now + self.cfg.liveness_ticks
        while self.now < deadline:
            self._tick_all()
            if final is not None and final[0] in self.acked:
                need = max(self.max_acked, self.acked[final[0]])
                if all(sn.raft and sn.sm_index >= need for sn in self.nodes.values()):
                    self._check_final()
                    return
                continue
            lead = [sn for sn in self.nodes.values() if sn.raft and sn.raft.role == Role.LEADER]
            if lead and (final is None or lead[0].raft.term != final[1]):
                # a client retries with a new command when the leader it used is gone
                self.cmd_counter += 1
                cmd = b"final%d" % self.cmd_counter
                try:
                    p = lead[0].raft.propose(cmd)
                except NotLeader:  # it is handing leadership over (a transfer from before the heal)
                    continue
                final = (cmd, p.term)
                self.proposals[lead[0].id][p.index] = (p.term, cmd)
                self._handle(lead[0])
        self.fail(f"liveness: no progress within {self.cfg.liveness_ticks} ticks after healing; final={final} "
                  f"acked={final is not None and final[0] in self.acked}; "
                  + "; ".join(str(sn.raft.status() if sn.raft else f'{sn.id} down') for sn in self.nodes.values()))

    def _check_final(self) -> None:
        ref = max(self.nodes.values(), key=lambda s: s.sm_index)
        for sn in self.nodes.values():
            if sn.sm_cmds != ref.sm_cmds[:len(sn.sm_cmds)]:
                self.fail(f"state machines differ: {sn.id} vs {ref.id}")
        for cmd, idx in self.acked.items():
            if self.cmd_at.get(cmd) != idx:
                self.fail(f"acknowledged {cmd!r} at {idx} lost")
            for sn in self.nodes.values():
                if cmd not in sn.sm_cmds:
                    self.fail(f"acknowledged {cmd!r} missing on {sn.id}")

    # -- the shell: handle Ready in the documented order, with checks -------------------------

    def _handle(self, sn: SimNode) -> None:
        raft = sn.raft
        cfg, r = self.cfg, self.rng
        while raft is not None and raft.has_ready():
            rd = raft.ready()
            staged = (rd.hard_state, rd.snapshot, rd.entries)
            later = rd.messages
            if cfg.buggy_send_before_fsync:
                self._send_all(sn, later)
            elif (cfg.early_send and raft.role == Role.LEADER and rd.snapshot is None
                  and not self._vouches(sn, rd.hard_state)):
                # As the production shell (replog/shell.py) does: the leader's term and vote are
                # durable, so its appends and heartbeats vouch for nothing new of its disk and leave
                # before the fsync. It counts its own entries for commit only after advance().
                early = [m for m in rd.messages if m.type in _EARLY]
                later = [m for m in rd.messages if m.type not in _EARLY]
                self._send_all(sn, early, early=True)
                if early and cfg.p_crash_early and r.random() < cfg.p_crash_early:
                    # Died between the send and the fsync: mostly the transaction is lost whole
                    # (followers may then store entries this leader never made durable), else it
                    # had committed.
                    lost = r.random() < 0.75
                    if lost:
                        self.lost_early.update((e.index, e.term) for e in rd.entries)
                    self.trace.append(f"t{self.now} {sn.id} dies after its early sends, before its fsync")
                    self._crash(sn, power_loss=lost, staged=staged, down=r.randint(1, 15))
                    return
            if cfg.p_crash_in_ready and r.random() < cfg.p_crash_in_ready:
                self._crash(sn, power_loss=r.random() < cfg.p_power_loss, staged=staged)
                return
            self._persist(sn, *staged)
            if cfg.p_crash_in_ready and r.random() < cfg.p_crash_in_ready:
                self._crash(sn, power_loss=False)  # after fsync, before sending
                return
            if not cfg.buggy_send_before_fsync:
                self._send_all(sn, later)
            if (cfg.p_crash_after_commit and raft.role == Role.LEADER and rd.hard_state is not None
                    and rd.committed_entries and r.random() < cfg.p_crash_after_commit):
                self._crash(sn, power_loss=False, down=r.randint(1, 15))  # adversary: kill fresh commits
                return
            self._apply(sn, rd)
            raft.advance(rd)
            if rd.snapshot_request is not None:
                self._compact(sn, rd.snapshot_request)
            for rs in rd.read_states:
                self._serve_read(sn, rs)
            if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
                self._check_leader_completeness(sn)
            if raft.role == Role.LEADER:
                other = self.leaders.setdefault(raft.term, sn.id)
                if other != sn.id:
                    self.fail(f"election safety: {other} and {sn.id} both leaders in term {raft.term}")

    def _persist(self, sn: SimNode, hs: HardState | None, snap: Snapshot | None, entries: list[Entry]) -> None:
        d = sn.disk
        if snap is not None:
            if self.committed_term.get(snap.meta.index, snap.meta.term) != snap.meta.term:
                self.fail(f"{sn.id} installs snapshot {snap.meta} of an uncommitted entry")
            d.snapshot = snap
            d.entries = []
        if entries:
            first = entries[0].index
            off = d.snapshot.meta.index
            if first <= off or first > d.last_index() + 1:
                self.fail(f"{sn.id} persists entries from {first}, stored log is {off}..{d.last_index()}")
            del d.entries[first - off - 1:]
            prev_term = d.term(first - 1)
            reg = self.entry_reg
            for e in entries:
                key = (e.index, e.term)
                if key in self.lost_early and sn.raft is not None and sn.raft.role != Role.LEADER:
                    self.lost_early_held += 1
                val = (e.data, e.kind, prev_term)
                seen = reg.setdefault(key, val)
                if seen != val:
                    self.fail(f"log matching: entry {key} on {sn.id} is {val}, elsewhere {seen}")
                prev_term = e.term
            d.entries.extend(entries)
        if hs is not None:
            if hs.term < d.hs.term or (hs.term == d.hs.term and d.hs.vote not in (None, hs.vote)):
                self.fail(f"{sn.id} hard state goes backwards: {d.hs} -> {hs}")
            if hs.commit > d.checked_commit:
                self._register_committed(sn, d.checked_commit, hs.commit)
                d.checked_commit = hs.commit
            if (hs.term, hs.vote, hs.rejoining) != (d.hs.term, d.hs.vote, d.hs.rejoining):
                d.hs = hs  # as storage.write_ready: the commit index is durable only along with these
            if sn.wiped and hs.term > 0 and not hs.rejoining:
                sn.wiped = False  # the replacement has rejoined: another disk may be wiped now

    def _register_committed(self, sn: SimNode, old: int, new: int) -> None:
        d = sn.disk
        lo = max(old, d.snapshot.meta.index) + 1
        for i in range(lo, new + 1):
            t = d.term(i)
            if t is None:
                self.fail(f"{sn.id} commits {i} it does not store")
            if self.committed_term.setdefault(i, t) != t:
                self.fail(f"two entries committed at {i}: terms {self.committed_term[i]} and {t} ({sn.id})")
        if new > self.max_committed:
            self.max_committed = new

    @staticmethod
    def _vouches(sn: SimNode, hs: HardState | None) -> bool:
        """As storage.vouches: does persisting ``hs`` change what messages vouch for?"""
        d = sn.disk.hs
        return hs is not None and (hs.term, hs.vote, hs.rejoining) != (d.term, d.vote, d.rejoining)

    def _send_all(self, sn: SimNode, messages: list[Message], early: bool = False) -> None:
        d = sn.disk
        for m in messages:
            t = m.type
            if early:
                # Sent before this Ready's fsync: only a leader's appends/heartbeats, and only once
                # the term it leads in and its own vote are durable (else a crash could let it vote
                # for another candidate in that term: two leaders). Entries need not be durable.
                if not (t in _EARLY and d.hs.term == m.term and d.hs.vote == sn.id and not d.hs.rejoining):
                    self.fail(f"persist-before-send: {sn.id} sends {t.name} term {m.term} early but "
                              f"durable state is {d.hs}")
                self._send(m)
                continue
            # persist-before-send: everything a message vouches for must already be durable
            if t == MsgType.PRE_VOTE:
                durable_ok = d.hs.term >= m.term - 1
            elif t == MsgType.PRE_VOTE_RESP and not m.reject:
                durable_ok = True  # echoes the asker's future term; vouches for nothing we store
            else:
                durable_ok = d.hs.term >= m.term
            if t == MsgType.VOTE_RESP and not m.reject:
                durable_ok = durable_ok and d.hs.term == m.term and d.hs.vote == m.to
            elif t == MsgType.VOTE:
                durable_ok = durable_ok and d.hs.term == m.term and d.hs.vote == sn.id
            elif t == MsgType.APPEND_RESP and not m.reject:
                durable_ok = durable_ok and d.last_index() >= m.index
            elif t == MsgType.APPEND and m.entries:
                durable_ok = durable_ok and d.term(m.entries[-1].index) == m.entries[-1].term
            if not durable_ok:
                self.fail(f"persist-before-send: {sn.id} sends {m.type.name} term {m.term} index {m.index} "
                          f"to {m.to} but durable state is {d.hs}, last index {d.last_index()}")
            self._send(m)

    def _apply(self, sn: SimNode, rd: Ready) -> None:
        if rd.snapshot is not None:
            sn.sm_index, cmds = self._restore_sm(rd.snapshot)
            sn.sm_cmds = list(cmds)
        canonical = self.canonical
        for e in rd.committed_entries:
            if e.index != sn.sm_index + 1:
                self.fail(f"{sn.id} applies {e.index} after {sn.sm_index} (gap or duplicate)")
            cur = (e.term, e.data)
            seen = canonical.setdefault(e.index, cur)
            if seen != cur:
                self.fail(f"state machine safety: {sn.id} applies {cur} at {e.index}, another node {seen}")
            if seen is cur and e.kind == EntryKind.NORMAL:
                if self.cmd_at.setdefault(e.data, e.index) != e.index:
                    self.fail(f"command {e.data!r} applied at {self.cmd_at[e.data]} and {e.index}")
            if self.committed_term.get(e.index, e.term) != e.term:
                self.fail(f"{sn.id} applies {e.index} term {e.term}, committed term {self.committed_term[e.index]}")
            sn.sm_index = e.index
            if e.kind == EntryKind.NORMAL:
                sn.sm_cmds.append(e.data)
            mine = self.proposals[sn.id].pop(e.index, None)
            if mine is not None and mine == cur:
                self.acked[e.data] = e.index  # the client is told "committed"
                if e.index > self.max_acked:
                    self.max_acked = e.index

    def _compact(self, sn: SimNode, index: int) -> None:
        if sn.sm_index != index:
            self.fail(f"{sn.id} asked to snapshot at {index} but state machine is at {sn.sm_index}")
        key = b"s%d" % len(self.snapshots)
        self.snapshots[key] = (index, tuple(sn.sm_cmds))
        sn.raft.compact(index, key)
        d = sn.disk  # the shell stores the snapshot and drops the log prefix in one transaction
        term = d.term(index)
        if term is None:
            self.fail(f"{sn.id} compacts at {index} which it does not store")
        d.entries = [e for e in d.entries if e.index > index]
        d.snapshot = Snapshot(SnapshotMeta(index, term), key)

    def _serve_read(self, sn: SimNode, rs) -> None:
        need = self.reads.pop(rs.request_id, None)
        if need is None:
            return
        if rs.index < need:
            self.fail(f"read {rs.request_id} on {sn.id} at index {rs.index} misses acknowledged index {need}")
        self.reads_served += 1

    def _check_leader_completeness(self, sn: SimNode) -> None:
        lg = sn.raft.log
        for i in range(lg.offset + 1, self.max_committed + 1):
            if lg.term(i) != self.committed_term.get(i):
                self.fail(f"leader completeness: new leader {sn.id} term {sn.raft.term} has term "
                          f"{lg.term(i)} at committed index {i} (committed term {self.committed_term.get(i)})")
