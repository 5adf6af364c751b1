"""Failover: kill -9 of the leader → first write acknowledged by the new leader.

3 masters on loopback (real processes, fsync on). Each trial: wait for a leader, kill -9 it, then
a client writes to the survivors in a loop (each attempt with a short timeout, alternating
masters); the figure is the time from the kill to the first acknowledged write. The killed master
is restarted before the next trial. Reference: etcd 3.4, default timeouts, 3 members on loopback:
1.5 s (issue 4).

    python bench/failover.py [--trials 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.ha_cluster import HaCluster  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dcosd-failover-"))
    ha = HaCluster(tmp)
    times: list[float] = []
    try:
        ha.start_all()
        n = 0
        for trial in range(args.trials):
            leader = ha.wait_leader(timeout=30)
            ha.wait_caught_up(ha.ids, timeout=30)
            survivors = [i for i in ha.ids if i != leader]
            t0 = time.monotonic()
            ha.kill9(leader)
            k = 0
            while True:
                n += 1
                k += 1
                try:
                    code, _ = ha.api(survivors[k % 2], "POST", "/dcosd/v1/tasks",
                                     {"task_id": f"f{n}", "name": "f", "argv": ["true"],
                                      "resources": {"cpus": 0.01, "mem": 4}}, timeout=0.5)
                except OSError:
                    code = 0
                if code == 201:
                    break
                time.sleep(0.005)
            dt = time.monotonic() - t0
            times.append(dt)
            print(f"trial {trial + 1:2d}: {dt * 1000:7.0f} ms (killed {leader})", flush=True)
            ha.start(leader)
    finally:
        ha.stop_all()
    times.sort()
    p50 = statistics.median(times)
    print(f"\nfailover over {len(times)} trials: p50 {p50 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms, "
          f"min {times[0] * 1000:.0f} ms")
    print(f"vs etcd reference 1.5 s: p50 ratio {p50 / 1.5:.2f} (goal p50 < 1 s)")


if __name__ == "__main__":
    main()
