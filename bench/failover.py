"""Failover: the leader dies (kill -9) or is stopped (SIGTERM) → first write acknowledged by the new leader.

3 masters on loopback (real processes, fsync on). Each trial: wait for a leader, kill -9 it, then
a client writes to the survivors in a loop (each attempt with a short timeout, alternating
masters); the figure is the time from the kill to the first acknowledged write. The killed master
is restarted before the next trial. Reference: etcd 3.4, default timeouts, 3 members on loopback:
1.5 s (issue 4).

With ``--stop`` every trial is run twice, alternating: kill -9 (the baseline: the others wait for an
election timeout) and SIGTERM (``systemctl stop``: the leader hands leadership to a follower before
it exits), and the ratio of their medians is printed.

    python bench/failover.py [--trials 20] [--stop]
"""

from __future__ import annotations

import argparse
import signal
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
    ap.add_argument("--stop", action="store_true", help="also SIGTERM the leader, alternating with kill -9")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dcosd-failover-"))
    ha = HaCluster(tmp)
    times: list[float] = []
    stop_times: list[float] = []
    exits: list[float] = []
    n = 0
    try:
        ha.start_all()
        for trial in range(args.trials):
            for how in ("kill -9", "SIGTERM") if args.stop else ("kill -9",):
                dt, leader, n, exited = one_trial(ha, how, n)
                (times if how == "kill -9" else stop_times).append(dt)
                if how == "SIGTERM":
                    exits.append(exited)
                print(f"trial {trial + 1:2d}: {dt * 1000:7.0f} ms ({how} {leader})", flush=True)
    finally:
        ha.stop_all()
    report("kill -9", times)
    print(f"vs etcd reference 1.5 s: p50 ratio {statistics.median(times) / 1.5:.2f} (goal p50 < 1 s)")
    if stop_times:
        report("SIGTERM", stop_times)
        print(f"SIGTERM / kill -9 p50 ratio: {statistics.median(stop_times) / statistics.median(times):.3f}")
        print(f"the stopped leader exited {statistics.median(exits) * 1000:.0f} ms after SIGTERM (p50; "
              f"max {max(exits) * 1000:.0f} ms)")


def report(how: str, times: list[float]) -> None:
    times = sorted(times)
    print(f"\n{how}: failover over {len(times)} trials: p50 {statistics.median(times) * 1000:.0f} ms, "
          f"max {times[-1] * 1000:.0f} ms, min {times[0] * 1000:.0f} ms")


def one_trial(ha: HaCluster, how: str, n: int) -> tuple[float, str, int, float]:
    leader = ha.wait_leader(timeout=30)
    ha.wait_caught_up(ha.ids, timeout=30)
    survivors = [i for i in ha.ids if i != leader]
    t0 = time.monotonic()
    if how == "kill -9":
        ha.kill9(leader)
    else:
        ha.procs[leader].popen.send_signal(signal.SIGTERM)
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
    ha.procs[leader].popen.wait(30)
    exited = time.monotonic() - t0
    ha.start(leader)
    return dt, leader, n, exited


if __name__ == "__main__":
    main()
