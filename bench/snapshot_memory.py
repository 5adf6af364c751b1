"""Snapshot images in memory or on disk: two revisions of dcosd side by side in one run.

Each revision runs as its own 3-master cluster on loopback (the tree's sources on PYTHONPATH). Into
each, the same number of tasks is submitted (queued: no agent), enough for the masters to take
snapshots of the state. Then one follower is stopped, its data directory wiped, and it is started
again with --rejoin: the leader sends it its snapshot (InstallSnapshot).

Prints, for each revision and as B/A: the image's size; each master's resident memory after the
writes (VmRSS); the time from the wiped follower's start to its catching up; and the peak resident
memory (VmHWM) of the leader and of the rejoined follower over the transfer.

    python bench/snapshot_memory.py --base HEAD~1               # A = that revision, B = this tree
    python bench/snapshot_memory.py --base v1 --against v2 --writes 80000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from revisions import revisions  # noqa: E402

from tests.harness.ha_cluster import TOKEN, HaCluster  # noqa: E402


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


async def _submit(url: str, prefix: str, total: int, clients: int) -> None:
    counter = iter(range(total))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def client() -> None:
            for n in counter:
                body = {"task_id": f"{prefix}-{n}", "name": "b", "argv": ["true"], "resources": {"cpus": 0.01, "mem": 4}}
                async with http.post(url + "/dcosd/v1/tasks", json=body,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                    await r.read()
                    if r.status != 201:
                        raise SystemExit(f"snapshot_memory: a write was refused ({r.status})")

        await asyncio.gather(*(client() for _ in range(clients)))


def measure(name: str, ha: HaCluster, writes: int, clients: int) -> dict[str, float]:
    ha.start_all()
    leader = ha.wait_leader(timeout=30)
    asyncio.run(_submit(ha.urls[leader], name, writes, clients))
    ha.wait_caught_up(ha.ids, timeout=120)
    out: dict[str, float] = {}
    followers = [i for i in ha.ids if i != leader]
    for role, i in [("leader", leader)] + [(f"follower {k + 1}", f) for k, f in enumerate(followers)]:
        out[f"RSS after the writes, {role} (MB)"] = _status_kb(ha.procs[i].pid, "VmRSS") / 1024
    images = sorted(ha.data_dir(leader).glob("state.db.snapshot-*"))
    out["image size (MB)"] = images[-1].stat().st_size / 2**20 if images else float("nan")
    victim = followers[0]
    ha.stop(victim)
    ha.wipe(victim)
    leader_hwm_before = _status_kb(ha.procs[leader].pid, "VmHWM")
    leader_rss_before = _status_kb(ha.procs[leader].pid, "VmRSS")
    t0 = time.monotonic()
    p = ha.start(victim, "--rejoin")
    ha.wait_caught_up(ha.ids, timeout=300)
    out["wiped follower: start to caught up (s)"] = time.monotonic() - t0
    out["wiped follower: peak RSS (MB)"] = _status_kb(p.pid, "VmHWM") / 1024
    out["leader: peak RSS over the transfer, above its RSS before (MB)"] = max(
        0, _status_kb(ha.procs[leader].pid, "VmHWM") - max(leader_hwm_before, leader_rss_before)) / 1024
    out["leader: RSS after the transfer (MB)"] = _status_kb(ha.procs[leader].pid, "VmRSS") / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="revision A (git rev)")
    ap.add_argument("--against", help="revision B (default: this working tree)")
    ap.add_argument("--writes", type=int, default=60000, help="tasks submitted to each cluster")
    ap.add_argument("--clients", type=int, default=64)
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with revisions(args.base, args.against, "dcosd-snapmem-") as (tree_a, tree_b, tmp):
        for name, tree in (("A", tree_a), ("B", tree_b)):
            (tmp / name).mkdir()
            ha = HaCluster(tmp / name, env={"PYTHONPATH": str(tree)})
            try:
                results[name] = measure(name, ha, args.writes, args.clients)
            finally:
                ha.stop_all()
    print(f"A = {args.base}, B = {args.against or 'working tree'}; {args.writes} tasks submitted to each")
    for key in results["A"]:
        a, b = results["A"][key], results["B"][key]
        ratio = f"{b / a:6.2f}" if a else "   n/a"
        print(f"  {key:62s} A {a:8.1f}  B {b:8.1f}  B/A {ratio}")

if __name__ == "__main__":
    main()
