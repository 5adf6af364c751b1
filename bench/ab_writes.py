"""A/B of replicated writes between two revisions of dcosd, side by side in one run.

Each revision runs as its own 3-master cluster on loopback (the tree's sources on PYTHONPATH); every
level alternates rounds between them, so the drift of a shared virtual disk and of the machine's
load falls on both. Prints writes/s, p99 and CPU per write (all three masters) for each, and B/A.

    python bench/ab_writes.py --base HEAD~1                # A = that revision, B = this working tree
    python bench/ab_writes.py --base v1 --against v2       # A = v1, B = v2
    python bench/ab_writes.py --base HEAD~1 --clients 1,16,64 --rounds 5 --seconds 3

Under each level's totals it prints the spread of the per-round B/A ratios, and says when the rounds
disagree on the sign of the difference. On a 2-core VM two runs of the same tree differ by up to
±5-10% at one client: repeat, or compare a revision with itself (--base X --against X), before
believing less.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from replicated_writes import Tally, dcosd_writer, one_round  # noqa: E402
from revisions import revisions  # noqa: E402

from tests.harness.ha_cluster import HaCluster  # noqa: E402


def _add(total: Tally, part: Tally) -> None:
    total.writes += part.writes
    total.seconds += part.seconds
    total.cpu += part.cpu
    total.latencies += part.latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="revision A (git rev)")
    ap.add_argument("--against", help="revision B (default: this working tree)")
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    clusters: dict[str, HaCluster] = {}
    with revisions(args.base, args.against, "dcosd-ab-") as (tree_a, tree_b, tmp):
        try:
            run(args, clusters, tmp, (tree_a, tree_b))
        finally:
            for c in clusters.values():
                c.stop_all()


def run(args: argparse.Namespace, clusters: dict[str, HaCluster], tmp: Path, trees: tuple[Path, Path]) -> None:
    for name, tree in zip("AB", trees):
        (tmp / name).mkdir()
        clusters[name] = HaCluster(tmp / name, env={"PYTHONPATH": str(tree)})
        clusters[name].start_all()
    leaders = {n: c.urls[c.wait_leader(timeout=30)] for n, c in clusters.items()}
    print(f"A = {args.base}, B = {args.against or 'working tree'}; {args.rounds} alternating rounds of "
          f"{args.seconds:g} s per level", flush=True)
    for level in (int(c) for c in args.clients.split(",")):
        tallies = {n: Tally() for n in clusters}
        per_round: list[tuple[float, float]] = []  # (B/A writes/s, B/A CPU per write) of each round
        for r in range(args.rounds):
            # The order within a round alternates too: whoever runs second meets the other's
            # leftovers (WAL checkpoints, dirty pages being written back).
            order = "AB" if r % 2 == 0 else "BA"
            this = {n: Tally() for n in clusters}
            for n in order:
                c = clusters[n]
                asyncio.run(one_round(this[n], dcosd_writer(leaders[n], f"{n}{level}r{r}"), level,
                                      args.seconds, [p.pid for p in c.procs.values()]))
                _add(tallies[n], this[n])
            ra, rb = this["A"], this["B"]
            if ra.writes and rb.writes:
                per_round.append((rb.rate() / ra.rate(), rb.cpu_per_write_us() / ra.cpu_per_write_us()))
        a, b = tallies["A"], tallies["B"]
        print(f"{level:3d} clients  A {a.rate():6.0f} w/s p99 {a.p99() * 1e3:5.1f} ms cpu {a.cpu_per_write_us():5.0f} us"
              f" | B {b.rate():6.0f} w/s p99 {b.p99() * 1e3:5.1f} ms cpu {b.cpu_per_write_us():5.0f} us"
              f" | B/A writes {b.rate() / a.rate():.3f} cpu {b.cpu_per_write_us() / a.cpu_per_write_us():.3f}",
              flush=True)
        if len(per_round) > 1:
            w, u = sorted(x for x, _ in per_round), sorted(y for _, y in per_round)
            print(f"             per round B/A: writes {w[0]:.3f}..{w[-1]:.3f} (median {statistics.median(w):.3f}),"
                  f" cpu {u[0]:.3f}..{u[-1]:.3f} (median {statistics.median(u):.3f})"
                  f"{'' if w[0] > 1 or w[-1] < 1 else ' — the rounds disagree on the sign: noise'}", flush=True)


if __name__ == "__main__":
    main()
