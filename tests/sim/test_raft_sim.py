"""Thousands of seeded simulations of the Raft core (see raftsim.py for what is checked).

    pytest tests/sim                              # DCOSD_SIM_SEEDS seeds (default 2000) from DCOSD_SIM_SEED_BASE
    DCOSD_SIM_SEEDS=20000 pytest tests/sim        # more
    DCOSD_SIM_SEED=1234 pytest tests/sim -x -q    # replay one seed (printed on failure)
"""

from __future__ import annotations

import heapq
import os
import random

import pytest

from dcosd.master.replog import core, log

from .figure8 import ScriptedSim
from .raftsim import SafetyViolation, Sim, SimConfig

def _seeds() -> list[int]:
    one = os.environ.get("DCOSD_SIM_SEED")
    if one:
        return [int(one)]
    base = int(os.environ.get("DCOSD_SIM_SEED_BASE", "0"))
    return list(range(base, base + int(os.environ.get("DCOSD_SIM_SEEDS", "2000"))))


@pytest.mark.parametrize("seed", _seeds())
def test_seed(seed: int) -> None:
    Sim(seed).run()


def _first_failing_seed(seeds: range, cfg_for=SimConfig.from_seed) -> int | None:
    for seed in seeds:
        try:
            Sim(seed, cfg_for(seed)).run()
        except SafetyViolation:
            return seed
    return None


# -- Figure 8: the random profiles rarely build it, so a script does (see figure8.py) ----------


@pytest.mark.parametrize(("early_send", "eager_commit"), [(False, True), (True, False)],
                         ids=["persist-then-send", "as-the-production-shell"])
def test_figure8_scripted_schedule_is_safe(early_send: bool, eager_commit: bool) -> None:
    sim = ScriptedSim(early_send=early_send, eager_commit=eager_commit)
    seen = sim.figure8()
    # A (index 2) was on a majority in (c) but of an older term: not committed. (n1 restarted in (c), and
    # a commit index is durable only along with a term or vote, so it may not even remember index 1.)
    assert seen["commit_c"] <= 1
    assert sim.committed_term[2] == seen["terms"][1]  # (d) n5's no-op of t2 replaced A, legally
    assert b"A" not in sim.acked


def _count_replicas_of_any_term(self: core.RaftNode) -> bool:
    """RaftNode._maybe_commit without the current-term condition (the Figure 8 bug)."""
    matches = sorted([self.log.unstable - 1] + [pr.match for pr in self.progress.values()], reverse=True)
    mci = matches[self.quorum - 1]
    if mci > self.log.committed:
        self.log.commit_to(mci)
        return True
    return False


@pytest.mark.parametrize(("early_send", "eager_commit"), [(False, True), (True, False)],
                         ids=["persist-then-send", "as-the-production-shell"])
def test_figure8_scripted_schedule_catches_commit_by_counting_older_terms(
        monkeypatch: pytest.MonkeyPatch, early_send: bool, eager_commit: bool) -> None:
    monkeypatch.setattr(core.RaftNode, "_maybe_commit", _count_replicas_of_any_term)
    with pytest.raises(SafetyViolation, match="leader completeness"):
        ScriptedSim(early_send=early_send, eager_commit=eager_commit).figure8()


# -- the production shell's early sends (raftsim.Sim._handle, SimConfig.early_send) --------------


def test_ci_seeds_cover_both_send_orders_and_commit_announcements() -> None:
    cfgs = [SimConfig.from_seed(s) for s in _seeds()]
    if len(cfgs) >= 20:
        assert 0.3 < sum(c.early_send for c in cfgs) / len(cfgs) < 0.7
        assert 0.3 < sum(c.eager_commit for c in cfgs) / len(cfgs) < 0.7


def test_leader_crash_between_early_send_and_fsync_is_exercised() -> None:
    # A leader dies after its appends left and before their fsync; a follower then stores entries
    # the leader itself lost. The schedule must actually occur (and stay safe), not just be possible.
    held = 0
    for seed in range(40):
        cfg = SimConfig.from_seed(seed)
        cfg.early_send, cfg.p_crash_early = True, 0.1
        sim = Sim(seed, cfg)
        sim.run()
        held += sim.lost_early_held
    assert held > 0


def test_sim_catches_votes_for_out_of_date_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log.RaftLog, "is_up_to_date", lambda self, last_index, last_term: True)
    assert _first_failing_seed(range(200)) is not None


def test_sim_catches_append_without_consistency_check(monkeypatch: pytest.MonkeyPatch) -> None:
    orig = log.RaftLog.maybe_append

    def no_check(self, index, log_term, commit, entries):
        if self.term(index) is not None:
            log_term = self.term(index)  # pretend the previous entry always matches
        return orig(self, index, log_term, commit, entries)

    monkeypatch.setattr(log.RaftLog, "maybe_append", no_check)
    assert _first_failing_seed(range(200)) is not None


def test_sim_catches_vote_not_persisted(monkeypatch: pytest.MonkeyPatch) -> None:
    def buggy_hard_state(self: core.RaftNode) -> core.HardState:
        return core.HardState(self.term, None, self.log.committed, self.rejoining)

    monkeypatch.setattr(core.RaftNode, "_hard_state", buggy_hard_state)
    assert _first_failing_seed(range(50)) is not None


def test_sim_catches_shell_sending_before_fsync() -> None:
    def cfg(seed: int) -> SimConfig:
        c = SimConfig.from_seed(seed)
        c.buggy_send_before_fsync = True
        c.p_crash_in_ready, c.p_power_loss = 0.02, 1.0
        return c

    assert _first_failing_seed(range(50), cfg) is not None


# -- catch-up under reordering (core._hold) -------------------------------------------------------


def _catch_up_ticks(seed: int, backlog: int = 300, max_delay: int = 6) -> int:
    """Ticks a follower cut off while ``backlog`` entries committed takes to catch up once healed, on
    a network that delays every message by 0..max_delay ticks (so reorders), one entry per append."""
    rng = random.Random(seed)
    ids = ("a", "b", "c")
    nodes = {i: core.RaftNode(i, ids, rng=random.Random(f"{seed}/{i}"), max_append_entries=1) for i in ids}
    net: list[tuple[int, int, core.Message]] = []
    cut: set[str] = set()
    clock = {"now": 0, "seq": 0}

    def drain(n: core.RaftNode) -> None:
        while n.has_ready():
            rd = n.ready()
            for m in rd.messages:
                clock["seq"] += 1
                heapq.heappush(net, (clock["now"] + rng.randint(0, max_delay), clock["seq"], m))
            n.advance(rd)

    def tick(only: str | None = None) -> None:
        clock["now"] += 1
        for n in nodes.values():
            if only is None or n.id == only:
                n.tick()
                drain(n)
        while net and net[0][0] <= clock["now"]:
            _, _, m = heapq.heappop(net)
            if m.to not in cut and m.frm not in cut:
                nodes[m.to].step(m)
                drain(nodes[m.to])

    a, c = nodes["a"], nodes["c"]
    while a.role != core.Role.LEADER:
        tick(only="a")
    for _ in range(30):
        tick()
    cut.add("c")
    while a.log.committed < backlog:
        a.propose(b"x")
        drain(a)
        tick()
    cut.clear()
    healed = clock["now"]
    while c.log.last_index() < a.log.last_index() or c.log.committed < a.log.committed:
        tick()
        assert clock["now"] - healed < 5000, "the follower never caught up"
    return clock["now"] - healed


def test_a_follower_catches_up_through_reordering_faster_than_an_entry_per_tick() -> None:
    ticks = [_catch_up_ticks(seed) for seed in range(10)]
    assert sum(ticks) / len(ticks) < 300, ticks  # 300 entries; with the hold ~200 ticks, without ~500


def test_catch_up_check_catches_a_follower_rejecting_reordered_appends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.RaftNode, "_hold", lambda self, m: False)  # reject at once, as etcd does
    ticks = [_catch_up_ticks(seed) for seed in range(10)]
    assert sum(ticks) / len(ticks) >= 300, ticks
