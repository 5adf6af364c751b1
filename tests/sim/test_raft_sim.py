"""Thousands of seeded simulations of the Raft core (see raftsim.py for what is checked).

    pytest tests/sim                              # DCOSD_SIM_SEEDS seeds (default 2000) from DCOSD_SIM_SEED_BASE
    DCOSD_SIM_SEEDS=20000 pytest tests/sim        # more
    DCOSD_SIM_SEED=1234 pytest tests/sim -x -q    # replay one seed (printed on failure)
"""

from __future__ import annotations

import os

import pytest

from dcosd.master.replog import core, log

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


# KNOWN GAP: a Figure 8 mutation (committing an older term's entries by counting replicas) is not
# caught by the random fault profiles within 1,500 seeds (an earlier, stormier profile caught it in 2 of
# 1,000). A targeted adversary that builds that schedule is future work; tests/unit/test_raft_core.py
# pins the rule directly meanwhile. (No skipped test stands in for it: CI skips nothing.)


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
