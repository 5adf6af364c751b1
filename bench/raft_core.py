"""Proposals per second through a 3-node in-memory cluster of the pure Raft core.

No disk, no network: the ceiling the core itself puts on replicated writes (a baseline for the
SQLite + HTTP shell later). Each round the client proposes ``batch`` commands to the leader, then
every Ready is handled (persist = no-op, messages delivered in memory) until the cluster is quiet.
A proposal counts when it is applied on all three nodes.

    python bench/raft_core.py [--seconds 3] [--batches 1,10,100]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcosd.master.replog import RaftNode, Role  # noqa: E402


def run(batch: int, seconds: float) -> tuple[float, float]:
    ids = ["m1", "m2", "m3"]
    nodes = {i: RaftNode(i, ids, rng=random.Random(i), max_append_entries=256, max_inflight=64,
                         snapshot_threshold=10_000) for i in ids}
    applied = dict.fromkeys(ids, 0)
    queue: deque = deque()

    def pump() -> None:
        while True:
            busy = False
            for nid, n in nodes.items():
                while n.has_ready():
                    busy = True
                    rd = n.ready()
                    queue.extend(rd.messages)
                    applied[nid] = rd.committed_entries[-1].index if rd.committed_entries else applied[nid]
                    n.advance(rd)
                    if rd.snapshot_request:
                        n.compact(rd.snapshot_request, b"")
            while queue:
                busy = True
                m = queue.popleft()
                nodes[m.to].step(m)
            if not busy:
                return

    leader = nodes["m1"]
    while leader.role != Role.LEADER:
        leader.tick()
        pump()
    payload = b"x" * 100
    start_index = leader.log.last_index()
    t0 = time.perf_counter()
    rounds = 0
    while time.perf_counter() - t0 < seconds:
        leader.propose_many([payload] * batch)
        pump()
        rounds += 1
        if rounds % 50 == 0:
            for n in nodes.values():
                n.tick()
    elapsed = time.perf_counter() - t0
    done = min(applied.values()) - start_index
    return done / elapsed, elapsed / rounds * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--batches", default="1,10,100")
    args = ap.parse_args()
    print(f"{'batch':>6} {'proposals/s':>12} {'us/round':>10}   (3 nodes, pure core, in memory)")
    for b in (int(x) for x in args.batches.split(",")):
        rate, us = run(b, args.seconds)
        print(f"{b:>6} {rate:>12,.0f} {us:>10,.1f}")


if __name__ == "__main__":
    main()
