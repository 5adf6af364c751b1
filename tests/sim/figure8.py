"""A scripted adversary: the Raft paper's Figure 8, driven through the simulator's checked shell.

The random simulator rarely builds this schedule, so here the script decides everything: which
nodes' clocks tick, which links carry messages, when a node crashes, and when delivery pauses.
Every Ready still goes through ``Sim._handle`` (persist-before-send, log matching, leader
completeness, state-machine safety, acknowledged writes), and the run ends with the usual
heal + liveness check.

Figure 8 with our leaders' no-ops (t1 < t2 < t3 < t4 are the terms as they arise):

    (0) n1 leads t1; its no-op (1, t1) commits everywhere.
    (a) n1 writes A at (2, t1); only n2 receives it.
    (b) n1 crashes; n5 is elected in t2 by n3, n4 and writes its no-op (2, t2) locally only.
    (c) n5 crashes; n1 restarts and is elected in t3 by n2, n3; its no-op is (3, t3). It brings n3
        to (2, t1): A is now on a majority (n1, n2, n3), but is of an older term. n1 crashes before
        n3 stores (3, t3).
    (d) n5 restarts and is elected in t4 by n3, n4 (its (2, t2) is more up to date than their
        (2, t1)), and overwrites A on n3.

A correct leader in (c) does not commit A by counting replicas (only entries of its own term
commit that way), so (d) is legal. A leader that counts replicas of any term commits A in (c), and
(d) then elects a leader without a committed entry: a leader completeness violation.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from dcosd.master.replog import RaftNode, Role

from .raftsim import SafetyViolation, Sim, SimConfig


class ScriptError(Exception):
    """The script did not reach the state it needs (not a safety violation: the scenario broke)."""


class ScriptedSim(Sim):
    """A Sim without random faults or clients, stepped by a script. Messages take no time (they
    are delivered when the script calls ``deliver``); a blocked link drops them."""

    def __init__(self, nodes: int = 5, early_send: bool = False, eager_commit: bool = True) -> None:
        cfg = SimConfig(nodes=nodes, drop=0.0, dup=0.0, max_delay=0, p_partition=0.0, p_crash=0.0,
                        p_crash_in_ready=0.0, p_wipe=0.0, p_propose=0.0, p_read=0.0, snapshot_threshold=0,
                        # one entry per append: a follower can be brought to index 2 but not 3
                        max_append_entries=1, early_send=early_send, eager_commit=eager_commit)
        super().__init__(seed=0, cfg=cfg)

    # -- primitives -----------------------------------------------------------------------------

    def raft(self, nid: str) -> RaftNode:
        r = self.nodes[nid].raft
        if r is None:
            raise ScriptError(f"{nid} is down")
        return r

    def alive(self) -> list[str]:
        return [i for i in self.ids if self.nodes[i].raft is not None]

    def connect_only(self, *groups: tuple[str, ...]) -> None:
        """Cut every link except those inside each group (both directions)."""
        ok = {(a, b) for g in groups for a in g for b in g if a != b}
        self.blocked = {(a, b) for a in self.ids for b in self.ids if a != b and (a, b) not in ok}

    def cut_from(self, nid: str) -> None:
        """Drop whatever ``nid`` sends from now on (including what is already on the wire)."""
        self.blocked |= {(nid, b) for b in self.ids if b != nid}

    def deliver(self, until: Callable[[], bool] | None = None) -> bool:
        """Deliver messages in order until none is left, or until ``until()`` holds after one."""
        while self.net:
            _, _, m = heapq.heappop(self.net)
            sn = self.nodes[m.to]
            if sn.raft is None or (m.frm, m.to) in self.blocked:
                continue
            sn.raft.step(m)
            self._handle(sn)
            if until is not None and until():
                return True
        return False

    def tick(self, ids: list[str], until: Callable[[], bool] | None = None) -> bool:
        """One beat of the clock of ``ids`` only (the others' clocks stand still), then deliver."""
        self.now += 1
        for nid in ids:
            sn = self.nodes[nid]
            if sn.raft is not None:
                sn.raft.tick()
                self._handle(sn)
        return self.deliver(until)

    def crash(self, nid: str) -> None:
        self._crash(self.nodes[nid], power_loss=False, down=10**9)  # back only when the script says

    def restart(self, nid: str) -> None:
        self._start(self.nodes[nid], rejoin=False)

    def elect(self, cand: str, voters: list[str]) -> int:
        """Make ``cand`` leader with the votes of ``voters`` and nobody else. Returns its term.

        Leader stickiness (check-quorum) makes a node ignore votes while it hears from a leader, so
        first every live clock runs one full election timeout with all links cut: each node times
        out and, with pre-vote, becomes a pre-candidate *without* changing its term, forgetting its
        leader. Then only ``cand``'s clock runs, with only its links to ``voters`` up. Stops as soon
        as it leads: its first appends are still on the wire, for the caller to deliver or drop.
        """
        self.connect_only()
        for _ in range(self.cfg.election_ticks[1] + 1):
            self.tick(self.alive())
        self.connect_only((cand, *voters))
        leads = lambda: self.nodes[cand].raft is not None and self.nodes[cand].raft.role == Role.LEADER  # noqa: E731
        for _ in range(5 * self.cfg.election_ticks[1]):
            if self.tick([cand], until=leads):
                self.trace.append(f"t{self.now} script: {cand} leads term {self.raft(cand).term} "
                                  f"with votes of {voters}")
                return self.raft(cand).term
        raise ScriptError(f"{cand} was not elected by {voters}: {self.raft(cand).status()}")

    def expect(self, cond: bool, what: str) -> None:
        if not cond:
            raise ScriptError(f"figure 8 script: expected {what}; " + "; ".join(
                str(self.nodes[i].raft.status() if self.nodes[i].raft else f"{i} down") for i in self.ids))

    def log_of(self, nid: str) -> list[int]:
        """Terms of the entries ``nid`` stores durably, from index 1."""
        return [e.term for e in self.nodes[nid].disk.entries]

    # -- the scenario ---------------------------------------------------------------------------

    def figure8(self) -> dict[str, int]:
        """Play Figure 8, then heal and check liveness. Returns what the script observed."""
        seen: dict[str, int] = {}
        try:
            # (0) n1 leads t1; the no-op commits everywhere.
            t1 = self.elect("n1", ["n2", "n3", "n4", "n5"])
            self.deliver()
            for _ in range(self.cfg.heartbeat_ticks):  # a heartbeat carries the commit (eager_commit off)
                self.tick(["n1"])
            self.expect(all(self.raft(i).log.committed == 1 for i in self.ids), "(0): index 1 committed everywhere")

            # (a) A reaches n2 only.
            self.trace.append(f"t{self.now} script: (a) n1 writes A, only n2 receives it")
            self.connect_only(("n1", "n2"))
            prop = self.raft("n1").propose(b"A")
            self.proposals["n1"][prop.index] = (prop.term, b"A")  # acknowledged if it is ever applied
            self._handle(self.nodes["n1"])
            self.deliver()
            self.expect(self.log_of("n1") == self.log_of("n2") == [t1, t1], "(a): A on n1 and n2")
            self.expect(all(self.log_of(i) == [t1] for i in ("n3", "n4", "n5")), "(a): A nowhere else")

            # (b) n1 crashes; n5 wins t2 with n3, n4; its no-op at 2 never leaves n5.
            self.crash("n1")
            t2 = self.elect("n5", ["n3", "n4"])
            self.cut_from("n5")
            self.deliver()
            self.crash("n5")
            self.expect(t2 > t1 and self.log_of("n5") == [t1, t2], "(b): n5 stores (2, t2)")
            self.expect(self.log_of("n3") == self.log_of("n4") == [t1], "(b): n3, n4 do not")

            # (c) n1 restarts and wins t3 with n2, n3, then brings n3 to index 2 (not 3) and crashes.
            self.trace.append(f"t{self.now} script: (c)")
            self.restart("n1")
            t3 = self.elect("n1", ["n2", "n3"])
            n3_matches_2 = lambda: self.raft("n1").status()["followers"]["n3"]["match"] >= 2  # noqa: E731
            self.expect(self.deliver(until=n3_matches_2), "(c): n1 learns that n3 stores index 2")
            seen["commit_c"] = self.raft("n1").log.committed
            self.trace.append(f"t{self.now} script: (c) A on n1, n2, n3; n1 commit {seen['commit_c']}; n1 dies")
            self.cut_from("n1")
            self.deliver()
            self.crash("n1")
            self.expect(t3 > t2 and self.log_of("n1") == [t1, t1, t3], "(c): n1 stores A and (3, t3)")
            self.expect(self.log_of("n3")[:2] == [t1, t1] and len(self.log_of("n3")) == 2,
                        "(c): n3 stores A, not (3, t3): A is on a majority (n1, n2, n3)")

            # (d) n5 restarts and wins t4 with n3, n4: legal only if A was not committed.
            self.trace.append(f"t{self.now} script: (d)")
            self.restart("n5")
            t4 = self.elect("n5", ["n3", "n4"])
            self.deliver()
            self.expect(t4 > t3 and self.log_of("n3")[:2] == [t1, t2], "(d): n5 overwrote A on n3")
            seen["terms"] = (t1, t2, t3, t4)

            self._heal()  # everyone back, every link up: the usual liveness and final checks
            self._liveness()
        except SafetyViolation as exc:
            raise SafetyViolation(f"figure 8: {exc}\nlast events:\n  " + "\n  ".join(self.trace)) from None
        return seen


__all__ = ["ScriptedSim", "ScriptError"]
