"""Replicated writes: 3 dcosd masters vs 3 etcd members, loopback, fsync on, same run.

Writes/s and p99 latency at 1, 16 and 64 concurrent clients (aiohttp, keep-alive, each client
writing in a loop for --seconds). dcosd: POST /dcosd/v1/tasks to the leader (a task_submit
command, ~200 bytes, committed on a majority, fsynced, applied). etcd (Debian's etcd-server,
started here): PUT through its JSON gateway /v3/kv/put, 100-byte values, to the leader.

    apt-get install -y etcd-server etcd-client
    python bench/replicated_writes.py [--seconds 4] [--rounds 3]

Both clusters run side by side; each level alternates dcosd and etcd rounds and sums them, since the
fsync time of a shared virtual disk drifts by several times within minutes. CPU per write is the
CPU time of all three members (from /proc) over the writes acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.cluster import free_port, wait_for  # noqa: E402
from tests.harness.ha_cluster import TOKEN, HaCluster  # noqa: E402

LEVELS = (1, 16, 64)


async def run_level(make_request, clients: int, seconds: float) -> tuple[float, float, list[float]]:
    lat: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def client(c: int) -> None:
            n = 0
            while time.monotonic() < stop:
                n += 1
                t0 = time.perf_counter()
                try:
                    await make_request(http, c, n)
                except RuntimeError as exc:  # counted, not timed: an unavailable cluster is reported
                    errors.append(str(exc))
                    await asyncio.sleep(0.05)
                    continue
                lat.append(time.perf_counter() - t0)

        t0 = time.monotonic()
        await asyncio.gather(*(client(c) for c in range(clients)))
        elapsed = time.monotonic() - t0
    if errors:
        print(f"  {len(errors)} writes refused, e.g. {errors[0][:160]}", flush=True)
    return len(lat) / elapsed, sorted(lat)[min(len(lat) - 1, int(len(lat) * 0.99))], lat


def dcosd_writer(url: str, run: str):
    async def req(http: aiohttp.ClientSession, c: int, n: int) -> None:
        body = {"task_id": f"{run}-{c}-{n}", "name": "b", "argv": ["true"], "resources": {"cpus": 0.01, "mem": 4}}
        async with http.post(url + "/dcosd/v1/tasks", json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            await r.read()
            if r.status != 201:
                raise RuntimeError(f"dcosd answered {r.status}: {(await r.text())[:300]}")
    return req


def etcd_writer(url: str, run: str):
    value = base64.b64encode(b"x" * 100).decode()

    async def req(http: aiohttp.ClientSession, c: int, n: int) -> None:
        key = base64.b64encode(f"{run}-{c}-{n}".encode()).decode()
        async with http.post(url + "/v3/kv/put", json={"key": key, "value": value}) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"etcd answered {r.status}")
    return req


def start_etcd(tmp: Path) -> tuple[list[subprocess.Popen], list[str]]:
    exe = shutil.which("etcd")
    if exe is None:
        raise SystemExit("etcd not found: apt-get install -y etcd-server etcd-client")
    names = ["e1", "e2", "e3"]
    peer = {n: free_port() for n in names}
    client = {n: free_port() for n in names}
    initial = ",".join(f"{n}=http://127.0.0.1:{peer[n]}" for n in names)
    procs = []
    for n in names:
        log = open(tmp / f"{n}.log", "wb")
        procs.append(subprocess.Popen([
            exe, "--name", n, "--data-dir", str(tmp / n),
            "--listen-peer-urls", f"http://127.0.0.1:{peer[n]}", "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer[n]}", "--listen-client-urls", f"http://127.0.0.1:{client[n]}",
            "--advertise-client-urls", f"http://127.0.0.1:{client[n]}", "--initial-cluster", initial,
            "--initial-cluster-state", "new", "--initial-cluster-token", "bench"], stdout=log, stderr=log))
    urls = [f"http://127.0.0.1:{client[n]}" for n in names]
    return procs, urls


def etcd_leader(urls: list[str]) -> str:
    import json

    def find() -> str | None:
        for u in urls:
            req = urllib.request.Request(u + "/v3/maintenance/status", data=b"{}", method="POST")
            with urllib.request.urlopen(req, timeout=2) as r:
                st = json.loads(r.read())
            if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                return u
        return None

    return wait_for(find, timeout=30, what="etcd leader")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Tally:
    """One system at one level, over all its rounds."""

    def __init__(self) -> None:
        self.writes = 0
        self.seconds = 0.0
        self.cpu = 0.0
        self.latencies: list[float] = []
        self.round_rates: list[float] = []  # writes/s of each round, in order

    def rate(self) -> float:
        return self.writes / self.seconds if self.seconds else 0.0

    def p99(self) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")

    def cpu_per_write_us(self) -> float:
        return self.cpu / self.writes * 1e6 if self.writes else float("nan")


async def one_round(tally: Tally, make_request, clients: int, seconds: float, pids: list[int]) -> None:
    c0, t0 = cpu_seconds(pids), time.monotonic()
    rate, _, lat = await run_level(make_request, clients, seconds)
    tally.round_rates.append(rate)
    tally.seconds += time.monotonic() - t0
    tally.cpu += cpu_seconds(pids) - c0
    tally.writes += len(lat)
    tally.latencies += lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0, help="per round")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per level; the two systems alternate, so a drift of the disk's fsync time "
                         "(large on shared virtual disks) falls on both")
    ap.add_argument("--clients", default=",".join(map(str, LEVELS)),
                    help="comma-separated levels of concurrent clients (default %(default)s)")
    args = ap.parse_args()
    levels = tuple(int(c) for c in args.clients.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="dcosd-replwrites-"))
    (tmp / "dcosd").mkdir()
    ha = HaCluster(tmp / "dcosd")
    etcd_procs: list[subprocess.Popen] = []
    results: dict[tuple[str, int], Tally] = {}
    try:
        ha.start_all()
        leader = ha.urls[ha.wait_leader(timeout=30)]
        etcd_procs, urls = start_etcd(tmp)
        eleader = etcd_leader(urls)
        dpids = [p.pid for p in ha.procs.values()]
        epids = [p.pid for p in etcd_procs]
        for c in levels:
            for r in range(args.rounds):
                for name, writer, pids in (("dcosd", dcosd_writer(leader, f"d{c}r{r}"), dpids),
                                           ("etcd", etcd_writer(eleader, f"e{c}r{r}"), epids)):
                    tally = results.setdefault((name, c), Tally())
                    asyncio.run(one_round(tally, writer, c, args.seconds, pids))
            for name in ("dcosd", "etcd"):
                t = results[(name, c)]
                print(f"{name:6s} {c:3d} clients: {t.rate():8.0f} writes/s  p99 {t.p99() * 1000:7.1f} ms  "
                      f"{t.cpu_per_write_us():6.0f} us CPU per write (all members)", flush=True)
    finally:
        ha.stop_all()
        for p in etcd_procs:
            p.terminate()
        for p in etcd_procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.rounds} alternating rounds of {args.seconds:g} s per level")
    print("clients  dcosd w/s   etcd w/s  ratio   dcosd p99  etcd p99  ratio   CPU/write dcosd  etcd")
    for c in levels:
        d, e = results[("dcosd", c)], results[("etcd", c)]
        print(f"{c:7d} {d.rate():10.0f} {e.rate():10.0f} {d.rate() / e.rate():6.2f}x {d.p99() * 1000:9.1f}ms "
              f"{e.p99() * 1000:7.1f}ms {d.p99() / e.p99():5.2f}x   {d.cpu_per_write_us():7.0f}us {e.cpu_per_write_us():5.0f}us")
    # How far the ratio moves between neighbouring rounds: the disk and CPU of a shared VM drift, and a
    # ratio is only as good as its spread.
    print("\nwrites/s ratio of each round against the etcd round after it (median, then each round)")
    for c in levels:
        pairs = [a / b for a, b in zip(results[("dcosd", c)].round_rates, results[("etcd", c)].round_rates) if b]
        if pairs:
            print(f"{c:7d}  {statistics.median(pairs):5.2f}x   " + " ".join(f"{r:.2f}" for r in pairs))


if __name__ == "__main__":
    main()
