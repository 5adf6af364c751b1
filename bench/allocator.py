"""Allocator benchmark: cycle latency and placement throughput at 1,000 agents.

    python bench/allocator.py [--agents 1000] [--frameworks 20] [--tasks 10000] [--no-save]

Two measurements, on one core (the process pins itself to one CPU when it can), timed in thread CPU time:

1. Full cycle: every agent free, 20 active frameworks in 20 roles; time one
   ``allocate(now)`` over all agents (then decline everything unfiltered and
   repeat). p50/p99 over the repetitions.
2. Placement: 10,000 pending tasks spread over the frameworks, each framework
   packing its pending tasks into every offer it gets (first fit), declining
   what it cannot use, suppressing when it has nothing pending. Tasks run for a
   simulated 5-30 s and are recovered when they end; simulated time advances one
   allocation interval (1 s) per cycle until every task is placed. Placements
   per second = tasks placed / time spent inside the allocator (allocate, accept,
   decline, recover). Wall time including the simulated frameworks is reported too.

Figures are compared with the previous run stored in bench/results/allocator.json
(ratio new/old; for latencies lower is better, for throughput higher is better),
then that file is overwritten with this run's figures (unless --no-save).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dcosd.master.allocator import Allocator, AllocatorConfig, Launch  # noqa: E402
from dcosd.model.resources import Resources  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "allocator.json"

# CPU time of this thread: the figures measure the allocator's work, not how busy the
# machine is (benchmarks here run beside other processes); wall time is reported apart.
clock = time.thread_time


def pin_one_core() -> str:
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"cpu {cpu}"
    except (AttributeError, OSError):
        return "unpinned"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def build(agents: int, frameworks: int, seed: int) -> Allocator:
    rng = random.Random(seed)
    a = Allocator(AllocatorConfig(shuffle_seed=seed))
    for i in range(agents):
        cpus = rng.choice([4, 8, 8, 16])
        a.add_agent(f"agent-{i:04d}", Resources.of([(31000, 31999)], cpus=cpus, mem=cpus * 4096, disk=100_000),
                    hostname=f"node{i}", attributes={"rack": f"r{i % 20}"})
    for j in range(frameworks):
        a.add_framework(f"fw-{j:02d}", [f"role-{j:02d}"])
        a.set_weight(f"role-{j:02d}", 1 + (j % 3))
    return a


def bench_full_cycles(agents: int, frameworks: int, reps: int) -> dict[str, float]:
    a = build(agents, frameworks, seed=1)
    times = []
    offers_per_cycle = 0
    for r in range(reps):
        now = float(r)
        t0 = clock()
        offers = a.allocate(now)
        times.append(clock() - t0)
        offers_per_cycle = len(offers)
        for o in offers:
            a.decline(o.framework_id, [o.offer_id], now, refuse_seconds=0)
    return {
        "full_cycle_p50_ms": pct(times, 50) * 1e3,
        "full_cycle_p99_ms": pct(times, 99) * 1e3,
        "full_cycle_offers": offers_per_cycle,
    }


class SimFramework:
    """A framework with a queue of pending tasks that packs them into offers (first fit)."""

    def __init__(self, fid: str, role: str, tasks: list[Resources]) -> None:
        self.fid = fid
        self.role = role
        self.pending = tasks
        self.suppressed = False

    def pack(self, offer) -> list[Launch]:  # type: ignore[no-untyped-def]
        sc = offer.scalars()
        cpus, mem = sc.get("cpus", 0.0), sc.get("mem", 0.0)
        ports = offer.ports()
        free_ports = sum(hi - lo + 1 for lo, hi in ports)
        ops: list[Launch] = []
        keep: list[Resources] = []
        port_iter = (p for lo, hi in ports for p in range(lo, hi + 1))
        for i, t in enumerate(self.pending):
            tc, tm = t.get("cpus"), t.get("mem")
            if tc <= cpus + 1e-9 and tm <= mem + 1e-9 and free_ports > 0:
                port = next(port_iter)
                ops.append(Launch(Resources.of([(port, port)], cpus=tc, mem=tm)))
                cpus -= tc
                mem -= tm
                free_ports -= 1
            else:
                keep.append(t)
            if cpus < 0.25 or mem < 256:
                keep.extend(self.pending[i + 1:])
                break
        self.pending = keep
        return ops


def bench_placement(agents: int, frameworks: int, tasks: int, seed: int = 2) -> dict[str, float]:
    rng = random.Random(seed)
    a = build(agents, frameworks, seed=seed)
    sizes = [Resources.of(cpus=c, mem=m) for c, m in ((0.5, 512), (1, 1024), (1, 2048), (2, 4096), (0.25, 256))]
    fws = []
    for j in range(frameworks):
        n = tasks // frameworks + (1 if j < tasks % frameworks else 0)
        fws.append(SimFramework(f"fw-{j:02d}", f"role-{j:02d}", [rng.choice(sizes) for _ in range(n)]))
    by_id = {f.fid: f for f in fws}
    running: dict[int, list[tuple[str, str, str, object]]] = {}
    placed = 0
    inside = 0.0
    cycle_times: list[float] = []
    wall0 = time.perf_counter()
    now = 0.0
    cycles = 0
    while placed < tasks and cycles < 10_000:
        t_now = int(now)
        ending = running.pop(t_now, [])
        t0 = clock()
        for agent_id, fid, role, drawn in ending:
            a.recover(agent_id, fid, role, drawn)  # type: ignore[arg-type]
        inside += clock() - t0

        t0 = clock()
        offers = a.allocate(now)
        dt = clock() - t0
        cycle_times.append(dt)
        inside += dt
        for o in offers:
            fw = by_id[o.framework_id]
            ops = fw.pack(o)
            t0 = clock()
            if ops:
                res = a.accept(o.framework_id, [o.offer_id], ops, now)
                assert res.ok, res
                placed += len(res.launched)
                for role, drawn in res.launched:
                    running.setdefault(t_now + rng.randint(5, 30), []).append((o.agent_id, o.framework_id, role, drawn))
            else:
                a.decline(o.framework_id, [o.offer_id], now)
            if not fw.pending and not fw.suppressed:
                a.suppress(fw.fid)
                fw.suppressed = True
            inside += clock() - t0
        now += 1.0
        cycles += 1
    wall = time.perf_counter() - wall0
    a.check_invariants()
    return {
        "placements": placed,
        "placement_cycles": cycles,
        "placements_per_s": placed / inside,
        "placements_per_s_wall": placed / wall,
        "cycle_p50_ms": pct(cycle_times, 50) * 1e3,
        "cycle_p99_ms": pct(cycle_times, 99) * 1e3,
        "allocator_seconds": inside,
    }


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


LOWER_IS_BETTER = {"full_cycle_p50_ms", "full_cycle_p99_ms", "cycle_p50_ms", "cycle_p99_ms", "allocator_seconds"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--frameworks", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--no-save", action="store_true", help="do not overwrite bench/results/allocator.json")
    args = ap.parse_args(argv)

    where = pin_one_core()
    figures: dict[str, float] = {}
    figures.update(bench_full_cycles(args.agents, args.frameworks, args.reps))
    figures.update(bench_placement(args.agents, args.frameworks, args.tasks))
    params = {"agents": args.agents, "frameworks": args.frameworks, "tasks": args.tasks}

    previous = None
    if RESULTS.exists():
        try:
            previous = json.loads(RESULTS.read_text())
        except (OSError, ValueError):
            previous = None
    print(f"allocator bench: {args.agents} agents, {args.frameworks} frameworks, {args.tasks} tasks ({where}, "
          f"python {sys.version.split()[0]})")
    if previous is None:
        print("no previous figures")
    elif previous.get("params") != params:
        print(f"previous figures ({previous.get('commit')}) were for {previous.get('params')}: not compared")
        previous = None
    else:
        print(f"previous figures: commit {previous.get('commit')}")
    print(f"{'figure':28} {'this run':>12} {'previous':>12} {'ratio':>8}")
    for name, value in figures.items():
        old = previous["figures"].get(name) if previous else None
        if isinstance(old, (int, float)) and old:
            ratio = value / old
            verdict = ""
            if name in LOWER_IS_BETTER or name.endswith("_per_s"):
                if abs(ratio - 1) >= 0.005:
                    verdict = "better" if (ratio < 1) == (name in LOWER_IS_BETTER) else "worse"
            print(f"{name:28} {value:12.2f} {old:12.2f} {ratio:7.2f}x {verdict}")
        else:
            print(f"{name:28} {value:12.2f} {'-':>12} {'-':>8}")
    goal_ok = figures["placements_per_s"] >= 10_000 and figures["full_cycle_p99_ms"] < 50
    print(f"goal (>= 10,000 placements/s, full cycle < 50 ms): {'met' if goal_ok else 'NOT met'}")
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"commit": git_commit(), "params": params,
                                       "figures": {k: round(v, 3) for k, v in figures.items()}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
