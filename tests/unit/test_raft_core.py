"""Focused tests of the pure Raft core: each scenario built by hand, messages delivered by hand."""

from __future__ import annotations

import random

import pytest

from dcosd.master.replog import (Entry, EntryKind, HardState, Message, MsgType, NotLeader, PersistedState,
                                 RaftNode, Ready, ReadState, Role, Snapshot, SnapshotMeta)

IDS = ("a", "b", "c")


def node(nid: str, ids=IDS, *, term: int = 0, vote: str | None = None, log: list[int] = (), commit: int = 0,
         snapshot: Snapshot = Snapshot(), **kw) -> RaftNode:
    """A node whose stored log has entries with the given terms (index = position after the snapshot)."""
    off = snapshot.meta.index
    entries = tuple(Entry(t, off + 1 + k, b"x%d" % (off + 1 + k)) for k, t in enumerate(log))
    st = PersistedState(HardState(term, vote, commit), snapshot, entries)
    kw.setdefault("election_ticks", (10, 20))
    return RaftNode(nid, ids, rng=random.Random(nid), state=st, **kw)


def drain(n: RaftNode) -> list[Ready]:
    out = []
    while n.has_ready():
        rd = n.ready()
        out.append(rd)
        n.advance(rd)
    return out


def msgs(n: RaftNode) -> list[Message]:
    return [m for rd in drain(n) for m in rd.messages]


class Net:
    """Delivers everything, in order, unless a link is cut."""

    def __init__(self, *nodes: RaftNode) -> None:
        self.nodes = {n.id: n for n in nodes}
        self.cut: set[str] = set()
        self.applied: dict[str, list[Entry]] = {i: [] for i in self.nodes}
        self.readies: dict[str, list[Ready]] = {}

    def settle(self, extra: list[Message] = ()) -> None:
        queue = list(extra)
        for _ in range(10_000):
            for n in self.nodes.values():
                for rd in drain(n):
                    queue.extend(rd.messages)
                    self.applied[n.id].extend(rd.committed_entries)
                    self.readies.setdefault(n.id, []).append(rd)
                    if rd.snapshot_request:
                        n.compact(rd.snapshot_request, b"image@%d" % rd.snapshot_request)
            if not queue:
                return
            m = queue.pop(0)
            if m.to in self.nodes and m.to not in self.cut and m.frm not in self.cut:
                self.nodes[m.to].step(m)
        raise AssertionError("network did not settle")

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            for x in self.nodes.values():
                if x.id not in self.cut:
                    x.tick()
            self.settle()

    def elect(self, nid: str) -> RaftNode:
        n = self.nodes[nid]
        while n.role == Role.FOLLOWER:
            n.tick()
        self.settle()
        assert n.role == Role.LEADER, n.status()
        return n


def test_election_then_noop_commits_everywhere():
    a, b, c = (node(i) for i in IDS)
    net = Net(a, b, c)
    net.elect("a")
    assert (a.term, b.leader, c.leader) == (1, "a", "a")
    assert all(n.log.committed == 1 for n in (a, b, c))
    assert [e.kind for e in net.applied["b"]] == [EntryKind.NOOP]
    st = a.status()
    assert st["role"] == "leader" and st["followers"]["b"]["lag"] == 0


def test_vote_is_persisted_before_the_grant_leaves():
    b = node("b")
    b.step(Message(MsgType.VOTE, "a", "b", 1, log_term=0, index=0))
    (rd,) = drain(b)
    assert rd.hard_state == HardState(1, "a", 0)
    assert [(m.type, m.reject) for m in rd.messages] == [(MsgType.VOTE_RESP, False)]


def test_vote_rejected_for_stale_log_and_second_candidate_in_same_term():
    b = node("b", term=2, log=[1, 2])
    b.step(Message(MsgType.VOTE, "a", "b", 3, log_term=1, index=5))  # longer log, older last term
    (m,) = msgs(b)
    assert m.reject and b.vote is None and b.term == 3
    b.step(Message(MsgType.VOTE, "c", "b", 3, log_term=2, index=2))
    (m,) = msgs(b)
    assert not m.reject and b.vote == "c"
    b.step(Message(MsgType.VOTE, "a", "b", 3, log_term=2, index=9))
    (m,) = msgs(b)
    assert m.reject  # one vote per term


def test_restart_keeps_term_and_vote():
    b = node("b", term=3, vote="c", log=[1])
    b.step(Message(MsgType.VOTE, "a", "b", 3, log_term=1, index=1))
    assert msgs(b)[0].reject


def test_conflicting_suffix_is_truncated_and_persisted_from_the_conflict():
    b = node("b", term=2, log=[1, 1, 2, 2], commit=2)
    ents = (Entry(3, 3, b"new3"), Entry(3, 4, b"new4"), Entry(3, 5, b"new5"))
    b.step(Message(MsgType.APPEND, "a", "b", 3, log_term=1, index=2, entries=ents, commit=2))
    (rd,) = drain(b)
    assert [e.index for e in rd.entries] == [3, 4, 5] and rd.entries[0].data == b"new3"
    assert [(m.type, m.index, m.reject) for m in rd.messages] == [(MsgType.APPEND_RESP, 5, False)]
    assert [e.term for e in b.log.entries] == [1, 1, 3, 3, 3]


def test_fast_backtracking_skips_a_whole_conflicting_term():
    a = node("a", term=5, log=[1, 1, 1, 4, 4, 4, 4])
    b = node("b", term=3, log=[1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3])
    net = Net(a, b, node("c", term=3, log=[1, 1, 1]))
    sent = []
    orig = b.step
    b.step = lambda m: (sent.append(m), orig(m))[1]  # count appends b receives
    net.elect("a")
    assert b.log.last_index() == a.log.last_index() and [e.term for e in b.log.entries][3:7] == [4] * 4
    assert sum(1 for m in sent if m.type == MsgType.APPEND) <= 4  # not one round trip per entry


def test_figure8_leader_does_not_commit_older_term_entries_by_counting():
    # a was leader of term 2 and wrote index 2 only locally; now a wins term 4.
    a = node("a", term=3, log=[1, 2], commit=1, pre_vote=False)
    b = node("b", term=3, log=[1], commit=1)
    c = node("c", term=3, log=[1], commit=1)
    while a.role != Role.CANDIDATE:
        a.tick()
    for m in msgs(a):
        if m.to == "b":
            b.step(m)
    for m in msgs(b):
        a.step(m)
    assert a.role == Role.LEADER and a.term == 4
    drain(a)  # the no-op at index 3 is persisted
    # b acknowledges index 2 (term 2) only: a quorum holds it, but it is not of the current term.
    a.step(Message(MsgType.APPEND_RESP, "b", "a", 4, index=2))
    drain(a)
    assert a.log.committed == 1
    a.step(Message(MsgType.APPEND_RESP, "b", "a", 4, index=3))
    (rd, *_) = drain(a)
    assert a.log.committed == 3 and [e.index for e in rd.committed_entries] == [2, 3]
    assert c.log.committed == 1


def test_read_index_needs_a_quorum_heartbeat_round():
    a, b, c = (node(i) for i in IDS)
    net = Net(a, b, c)
    net.elect("a")
    a.read_index("r1")
    (rd,) = drain(a)
    assert rd.read_states == []
    hbs = [m for m in rd.messages if m.type == MsgType.HEARTBEAT]
    assert len(hbs) == 2 and all(m.seq == 1 for m in hbs)
    b.step(hbs[0])
    (resp,) = msgs(b)
    a.step(resp)
    (rd,) = drain(a)
    assert rd.read_states == [ReadState("r1", a.log.committed)]
    with pytest.raises(NotLeader) as exc:
        b.read_index("r2")
    assert exc.value.leader == "a"


def test_read_index_waits_for_the_leaders_first_commit():
    a, b = node("a", pre_vote=False), node("b")
    while a.role != Role.CANDIDATE:
        a.tick()
    for m in msgs(a):
        if m.to == "b":
            b.step(m)
    for m in msgs(b):
        a.step(m)
    assert a.role == Role.LEADER and a.log.committed == 0
    a.read_index("r1")  # our no-op is not committed: the read must wait
    out = drain(a)
    assert not any(rd.read_states for rd in out)
    for _ in range(3):  # append no-op -> ack -> commit -> heartbeat round -> ack
        for m in [m for rd in out for m in rd.messages if m.to == "b"]:
            b.step(m)
        for m in msgs(b):
            a.step(m)
        out = drain(a)
        states = [rs for rd in out for rs in rd.read_states]
        if states:
            break
    assert states == [ReadState("r1", 1)]


def test_follower_too_far_behind_gets_a_snapshot():
    a, b, c = (node(i, snapshot_threshold=5) for i in IDS)
    net = Net(a, b, c)
    net.elect("a")
    net.cut = {"c"}
    for k in range(12):
        a.propose(b"cmd%d" % k)
        net.settle()
    assert a.log.offset >= 5 and c.log.last_index() == 1
    net.cut = set()
    seen = []
    orig = c.step
    c.step = lambda m: (seen.append(m.type), orig(m))[1]
    net.readies["c"] = []
    net.tick(10)
    assert MsgType.SNAPSHOT in seen
    snaps = [rd.snapshot for rd in net.readies["c"] if rd.snapshot]
    assert snaps and snaps[0].data.startswith(b"image@")
    assert c.log.last_index() == a.log.last_index() and c.log.committed == a.log.committed


def test_snapshot_install_replaces_a_conflicting_log():
    c = node("c", term=1, log=[1, 1, 1])
    snap = Snapshot(SnapshotMeta(10, 2), b"img")
    c.step(Message(MsgType.SNAPSHOT, "a", "c", 2, snapshot=snap))
    (rd,) = drain(c)
    assert rd.snapshot == snap and rd.entries == [] and rd.committed_entries == []
    assert [(m.type, m.index) for m in rd.messages] == [(MsgType.APPEND_RESP, 10)]
    assert (c.log.offset, c.log.committed, c.log.applied, c.log.last_index()) == (10, 10, 10, 10)


def test_pre_vote_does_not_disturb_a_healthy_cluster():
    a, b, c = (node(i) for i in IDS)
    net = Net(a, b, c)
    net.elect("a")
    net.cut = {"c"}
    for _ in range(60):  # c is partitioned; with pre-vote its term stays put
        c.tick()
        drain(c)
        net.tick()
    assert c.term == 1 and c.role == Role.PRE_CANDIDATE
    net.cut = set()
    net.tick(30)
    assert a.role == Role.LEADER and a.term == 1 and c.leader == "a"


def test_pre_vote_granted_only_to_up_to_date_logs_without_a_live_leader():
    b = node("b", term=2, log=[1, 2])
    b.step(Message(MsgType.PRE_VOTE, "c", "b", 3, log_term=2, index=2))
    (m,) = msgs(b)
    assert (m.type, m.term, m.reject) == (MsgType.PRE_VOTE_RESP, 3, False)
    assert b.term == 2 and b.vote is None  # pre-votes change nothing durable
    b.step(Message(MsgType.PRE_VOTE, "c", "b", 3, log_term=1, index=9))
    assert msgs(b)[0].reject


def test_check_quorum_leader_steps_down_when_cut_off():
    a, b, c = (node(i) for i in IDS)
    net = Net(a, b, c)
    net.elect("a")
    net.cut = {"b", "c"}
    for _ in range(a.election_lo * 2 + 1):
        a.tick()
        drain(a)
    assert a.role == Role.FOLLOWER and a.leader is None
    with pytest.raises(NotLeader):
        a.propose(b"x")


def test_single_node_commits_after_its_own_persistence():
    s = RaftNode("s", ["s"], rng=random.Random(1))
    while s.role != Role.LEADER:
        s.tick()
    drain(s)
    p = s.propose(b"hello")
    rd = s.ready()
    assert [e.data for e in rd.entries] == [b"hello"] and rd.committed_entries == []
    s.advance(rd)
    (rd,) = drain(s)
    assert [(e.index, e.term, e.data) for e in rd.committed_entries] == [(p.index, p.term, b"hello")]


def test_stepping_with_an_outstanding_ready_is_refused():
    s = RaftNode("s", ["s"], rng=random.Random(1))
    s.ready()
    with pytest.raises(RuntimeError):
        s.tick()


def test_rejoining_node_never_votes_until_caught_up():
    fresh = RaftNode("c", IDS, rng=random.Random(3), rejoin=True)
    (rd,) = drain(fresh)
    assert rd.hard_state.rejoining
    fresh.step(Message(MsgType.VOTE, "a", "c", 5, log_term=0, index=0))
    assert msgs(fresh)[0].reject and fresh.vote is None
    a, b, c = node("a"), node("b"), RaftNode("c", IDS, rng=random.Random(3), rejoin=True)
    net = Net(a, b, c)
    net.elect("a")
    a.propose(b"x")
    net.settle()
    net.tick(2 * c.election_lo)  # c probes b for its term, then the next append lets it finish
    assert not c.rejoining and c.vote == "c" and c.log.committed == a.log.committed
    with pytest.raises(ValueError):
        node("c", term=1, log=[1], rejoin=True)


def _batching_cluster(batch: int) -> tuple[Net, RaftNode, RaftNode, RaftNode]:
    a, b, c = (node(i, follower_apply_batch=batch) for i in IDS)
    net = Net(a, b, c)
    net.elect("a")
    return net, a, b, c


def test_followers_apply_in_batches_and_the_leader_at_once():
    net, a, b, c = _batching_cluster(4)
    for k in range(2):
        a.propose(b"w%d" % k)
        net.settle()
        # committed everywhere (eager_commit), applied by the leader only: the followers hold the
        # no-op and the writes until four are waiting
        assert (a.log.committed, b.log.committed) == (2 + k, 2 + k)
        assert [e.index for e in net.applied["a"]] == list(range(1, 3 + k))
        assert net.applied["b"] == net.applied["c"] == [] and b.log.applied == 0
    a.propose(b"w2")
    net.settle()
    batches = [[e.index for e in rd.committed_entries] for rd in net.readies["b"] if rd.committed_entries]
    assert batches == [[1, 2, 3, 4]]  # noop + three writes, one Ready, in order
    assert net.applied["c"] == net.applied["a"]


def test_a_tick_releases_what_a_follower_holds():
    net, a, b, c = _batching_cluster(32)
    a.propose(b"w")
    net.settle()
    assert b.log.committed == 2 and b.log.applied == 0 and not b.has_ready()
    net.tick()
    assert [e.index for e in net.applied["b"]] == [1, 2] and b.log.applied == 2
    a.propose(b"w2")  # a tick has passed since nothing was held: the next commit is held again
    net.settle()
    assert b.log.applied == 2
    net.tick()
    assert b.log.applied == 3


def test_apply_now_hands_out_up_to_the_index_a_read_waits_for():
    net, a, b, c = _batching_cluster(32)
    for k in range(3):
        a.propose(b"w%d" % k)
    net.settle()
    assert b.log.committed == 4 and b.log.applied == 0
    b.apply_now(4)
    assert b.has_ready()
    net.settle()
    assert [e.index for e in net.applied["b"]] == [1, 2, 3, 4]
    b.apply_now(6)  # not committed yet: each commit up to 6 is handed out as it arrives
    a.propose(b"w3")
    net.settle()
    assert b.log.applied == 5
    a.propose(b"w4")
    a.propose(b"w5")
    net.settle()
    assert b.log.applied == 7 >= 6  # 7 came in the same append as 6


def test_a_follower_that_becomes_leader_applies_everything_at_once():
    net, a, b, c = _batching_cluster(32)
    a.propose(b"w")
    net.settle()
    assert b.log.applied == c.log.applied == 0
    net.cut.add("a")
    for _ in range(100):
        b.tick()
        c.tick()
        net.settle()
        new = next((n for n in (b, c) if n.role == Role.LEADER), None)
        if new is not None:
            break
    assert new is not None and new.log.committed == 3  # its own no-op of the new term
    other = c if new is b else b
    held = other.log.applied
    new.propose(b"after")
    net.settle()  # no tick: the new leader applies at once, its follower holds the write back
    assert new.log.applied == new.log.committed == other.log.committed == 4
    assert other.log.applied == held < 4
    assert [e.index for e in net.applied[new.id]] == [1, 2, 3, 4]


# -- a follower holds appends that arrive ahead of a gap (reordering) ----------------------------


def _streaming(max_append_entries: int = 1) -> tuple[Net, RaftNode, RaftNode, list[Message]]:
    """a leads and streams to b; three proposals go out as three one-entry appends to b, not delivered."""
    a, b, c = (node(i, max_append_entries=max_append_entries) for i in IDS)
    net = Net(a, b, c)
    net.elect("a")  # b accepted the no-op: it is in a stream from a in this term
    for k in range(3):
        a.propose(b"w%d" % k)
    to_b = [m for m in msgs(a) if m.to == "b" and m.type == MsgType.APPEND]
    assert [m.index for m in to_b] == [1, 2, 3] and all(len(m.entries) == 1 for m in to_b)
    return net, a, b, to_b


def test_appends_delivered_in_reverse_are_held_until_the_gap_closes():
    net, a, b, to_b = _streaming()
    replies = []
    for m in reversed(to_b):
        b.step(m)
        replies += msgs(b)
    assert not any(r.reject for r in replies), replies  # without the hold: two rejections, a probes
    assert b.log.last_index() == a.log.last_index() == 4
    for r in replies:
        a.step(r)
    msgs(a)
    pr = a.progress["b"]
    assert pr.state.name == "REPLICATE" and pr.match == 4 and not pr.inflight


def test_a_hold_whose_predecessor_never_comes_is_rejected_after_reorder_ticks():
    net, a, b, to_b = _streaming()
    for m in to_b[1:]:  # the first is lost
        b.step(m)
    assert msgs(b) == []
    for _ in range(b.reorder_ticks - 1):
        b.tick()
    assert [m for m in msgs(b) if m.type == MsgType.APPEND_RESP] == []
    b.tick()
    rejects = [m for m in msgs(b) if m.type == MsgType.APPEND_RESP]
    assert [(m.reject, m.index, m.reject_hint) for m in rejects] == [(True, 2, 1)]
    net.settle(rejects)  # a probes from b's match and b catches up
    assert b.log.last_index() == 4 and a.progress["b"].match == 4


def test_a_probe_beyond_the_log_is_answered_at_once_outside_a_stream():
    # b never accepted an append in term 2: a new leader probing from its own last index must learn
    # at once where b's log ends, not after reorder_ticks
    b = node("b", term=2, log=[1])
    b.step(Message(MsgType.APPEND, "a", "b", 2, log_term=2, index=5, entries=(Entry(2, 6, b"x"),), commit=0))
    (r,) = msgs(b)
    assert r.reject and r.index == 5 and r.reject_hint == 1


def test_a_change_of_term_drops_held_appends():
    net, a, b, to_b = _streaming()
    b.step(to_b[2])
    assert b._held
    b.step(Message(MsgType.HEARTBEAT, "c", "b", a.term + 1, commit=1))  # c leads a newer term
    assert not b._held and b.term == a.term + 1 and b.leader == "c"
    msgs(b)
    b.step(to_b[1])  # from the old term now: answered with b's term, never appended
    assert b.log.last_index() == 1


# -- leadership transfer (thesis §3.10) -------------------------------------------------------------

def _led_by_a() -> tuple[Net, RaftNode, RaftNode, RaftNode]:
    a, b, c = (node(i) for i in IDS)
    net = Net(a, b, c)
    net.elect("a")
    return net, a, b, c

def test_transfer_to_an_up_to_date_follower_makes_it_leader_without_an_election_timeout():
    net, a, b, c = _led_by_a()
    a.propose(b"w1")
    net.settle()
    assert a.transfer_leadership("c") == "c"
    sent = [m for m in a.msgs]
    assert [(m.type, m.to) for m in sent] == [(MsgType.TIMEOUT_NOW, "c")]
    net.settle()  # no tick: nobody's election timer runs out
    assert (c.role, c.term, a.leader, b.leader) == (Role.LEADER, 2, "c", "c")
    assert a.transferee is None and a.role == Role.FOLLOWER
    c.propose(b"w2")
    net.settle()
    assert [e.data for e in net.applied["a"] if e.kind == EntryKind.NORMAL] == [b"w1", b"w2"]


def test_without_the_transfer_flag_the_others_keep_their_live_leader():
    # What the flag is for: check-quorum's stickiness ignores a vote request from a peer while the
    # leader was heard from within an election timeout.
    net, a, b, c = _led_by_a()
    b.step(Message(MsgType.VOTE, "c", "b", 2, log_term=1, index=1))
    assert msgs(b) == [] and b.term == 1
    b.step(Message(MsgType.VOTE, "c", "b", 2, log_term=1, index=1, transfer=True))
    (m,) = msgs(b)
    assert (m.type, m.reject, b.term, b.vote) == (MsgType.VOTE_RESP, False, 2, "c")


def test_a_lagging_transferee_is_caught_up_first_and_proposals_wait_meanwhile():
    net, a, b, c = _led_by_a()
    net.cut = {"c"}
    for k in range(3):
        a.propose(b"w%d" % k)
    net.settle()
    net.cut = set()
    assert a.transfer_leadership("c") == "c"
    with pytest.raises(NotLeader, match="handing leadership to master c"):
        a.propose(b"late")
    assert all(m.type != MsgType.TIMEOUT_NOW for m in msgs(a))  # not before it holds our whole log
    for _ in range(a.election_lo - 1):  # the next heartbeat finds the appends c lost, then it catches up
        net.tick()
        if c.role == Role.LEADER:
            break
    assert (c.role, c.term, a.leader) == (Role.LEADER, 2, "c")
    assert [e.data for e in net.applied["c"] if e.kind == EntryKind.NORMAL] == [b"w0", b"w1", b"w2"]


def test_a_transfer_to_a_dead_follower_is_dropped_after_an_election_timeout():
    net, a, b, c = _led_by_a()
    net.cut = {"c"}
    a.transfer_leadership("c")
    for _ in range(a.election_lo - 1):
        a.tick()
        net.settle()
        assert a.transferee == "c"
    a.tick()
    net.settle()
    assert a.transferee is None and a.role == Role.LEADER and a.term == 1
    a.propose(b"after")  # taken again
    net.settle()
    assert b.log.last_index() == a.log.last_index()


def test_transfer_needs_a_leader_and_a_master_that_can_take_over():
    a, b, c = (node(i) for i in IDS)
    net = Net(a, b, c)
    with pytest.raises(NotLeader):
        b.transfer_leadership("c")
    net.elect("a")
    with pytest.raises(ValueError, match="not one of the masters"):
        a.transfer_leadership("z")
    assert a.transfer_leadership("a") == "a" and a.transferee is None and not a.msgs
    assert a.transfer_leadership(None) in ("b", "c")
    s = RaftNode("s", ["s"], rng=random.Random(1))
    while s.role != Role.LEADER:
        s.tick()
    drain(s)
    with pytest.raises(ValueError, match="no other master"):
        s.transfer_leadership()


def test_timeout_now_from_anyone_but_the_current_leader_is_ignored():
    net, a, b, c = _led_by_a()
    b.step(Message(MsgType.TIMEOUT_NOW, "c", "b", 1))  # c is not b's leader
    assert msgs(b) == [] and b.role == Role.FOLLOWER and b.term == 1
    b.step(Message(MsgType.TIMEOUT_NOW, "a", "b", 0))  # an old term's
    assert all(m.type != MsgType.VOTE for m in msgs(b)) and b.term == 1
    b.step(Message(MsgType.TIMEOUT_NOW, "a", "b", 1))
    votes = msgs(b)
    assert b.role == Role.CANDIDATE and b.term == 2
    assert {(m.type, m.to, m.transfer) for m in votes} == {(MsgType.VOTE, "a", True), (MsgType.VOTE, "c", True)}


def test_the_transferee_is_the_follower_with_the_longest_log():
    net, a, b, c = _led_by_a()
    net.cut = {"b"}
    a.propose(b"w")
    net.settle()
    net.cut = {"b"}  # b stays behind
    assert a.transfer_leadership() == "c"


def test_a_lost_timeout_now_is_sent_again_with_the_next_heartbeat_answer():
    net, a, b, c = _led_by_a()
    a.transfer_leadership("c")
    assert [m.type for m in msgs(a)] == [MsgType.TIMEOUT_NOW]  # drained, never delivered: lost
    for _ in range(a.heartbeat_ticks):
        net.tick()
    assert (c.role, c.term, a.leader) == (Role.LEADER, 2, "c")
