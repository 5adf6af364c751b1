"""How long the simulated clusters take to finish after healing, over a range of seeds.

    python tests/sim/liveness_report.py 0 6000

The test (test_raft_sim.py) fails a seed that is not done within ``SimConfig.liveness_ticks``; this
prints how close the seeds come: the slowest, the 99th percentile, and any seed that failed.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from tests.sim.raftsim import SafetyViolation, Sim  # noqa: E402


def ticks_after_healing(seed: int) -> tuple[int, int, str | None]:
    sim = Sim(seed)
    try:
        sim.run()
        return seed, sim.now - sim.healed_at, None
    except SafetyViolation as exc:  # failing before the heal counts as 0 ticks after it
        return seed, sim.now - (sim.healed_at if sim.healed_at is not None else sim.now), str(exc).splitlines()[0]


def main() -> int:
    try:
        first, end = (int(a) for a in sys.argv[1:])
    except ValueError:
        first = end = 0
    if len(sys.argv) != 3 or not 0 <= first < end:
        print("usage: liveness_report.py FIRST_SEED END_SEED (integers, FIRST_SEED < END_SEED)", file=sys.stderr)
        return 2
    seeds = range(first, end)
    with multiprocessing.Pool(os.cpu_count()) as pool:
        results = pool.map(ticks_after_healing, seeds, chunksize=20)
    ticks = sorted(t for _, t, _ in results)
    slowest = sorted(results, key=lambda r: -r[1])[:10]
    print(f"seeds {seeds.start}-{seeds.stop - 1}: mean {statistics.mean(ticks):.1f} ticks after healing, "
          f"p99 {ticks[int(len(ticks) * 0.99)]}, max {ticks[-1]}")
    print("slowest:", ", ".join(f"{s} ({t})" for s, t, _ in slowest))
    failed = [r for r in results if r[2]]
    for seed, _, what in failed:
        print("FAILED", what)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
