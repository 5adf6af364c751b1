"""DNS queries/s and p99 latency: dcosd's server vs. a trivial dnslib server, same load.

    python bench/dns.py [--seconds 5] [--clients 50] [--tasks 10000]

Each server runs in its own process pinned to CPU 0 (os.sched_setaffinity); the load
runs in another process pinned to CPU 1: ``--clients`` UDP sockets, each bound to its
own loopback address (127.0.0.10, .11, …, so per-client rate limits see 50 clients),
each with one query in flight (closed loop), for ``--seconds``. Queries cycle over A
and SRV names of the ``--tasks`` running tasks, plus 1 in 10 unknown names
(NXDOMAIN). A query unanswered after 1 s counts as lost and is sent again.

Baseline ("dnslib-trivial"): an asyncio DatagramProtocol that parses each query with
dnslib and answers one fixed A record with dnslib — the least a dnslib-based server
does. Loopback only; every run is bounded in time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GOAL_QPS = 20_000


def _pin(cpu: int) -> None:
    try:
        ncpu = len(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu % max(1, os.cpu_count() or 1)})
        del ncpu
    except (AttributeError, OSError):
        pass


def _snapshot(n_tasks: int):  # type: ignore[no-untyped-def]
    from dcosd.master.dns.records import DnsAgent, DnsFramework, DnsMaster, DnsPort, DnsSnapshot, DnsTask

    agents = tuple(DnsAgent(f"agent{i}-S{i}", f"node{i}", f"10.1.{i // 250}.{i % 250 + 1}") for i in range(200))
    tasks = tuple(
        DnsTask(f"app{i % 2000}.{i}", f"app{i % 2000}", "marathon", agents[i % 200].agent_id, "TASK_RUNNING",
                f"172.16.{i // 250 % 256}.{i % 250 + 1}", (DnsPort(31000 + i % 1000),))
        for i in range(n_tasks)
    )
    leader = DnsMaster("m1", "10.0.0.1")
    return DnsSnapshot(masters=(leader,), leader=leader, agents=agents,
                       frameworks=(DnsFramework("f", "marathon", "10.0.0.1", 8080),), tasks=tasks)


def _serve_dcosd(n_tasks: int, ready, stop) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from dcosd.master.dns.records import build_records
    from dcosd.master.dns.server import DnsServer, DnsServerConfig

    _pin(0)
    t0 = time.perf_counter()
    records = build_records(_snapshot(n_tasks))
    build_s = time.perf_counter() - t0

    async def main() -> None:
        srv = DnsServer(records, DnsServerConfig(port=0, upstreams=()))
        await srv.start()
        ready.send((srv.port, build_s, len(records.records)))
        cpu0 = time.process_time()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait, 120)
        ready.send((time.process_time() - cpu0, srv.stats["udp"]))
        await srv.stop()

    asyncio.run(main())


def _serve_dnslib(n_tasks: int, ready, stop) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    import dnslib

    _pin(0)

    class Proto(asyncio.DatagramProtocol):
        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            self.t = transport

        count = 0

        def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
            Proto.count += 1
            try:
                q = dnslib.DNSRecord.parse(data)
            except Exception:
                return
            r = q.reply()
            r.add_answer(dnslib.RR(q.q.qname, dnslib.QTYPE.A, rdata=dnslib.A("10.0.0.1"), ttl=60))
            self.t.sendto(r.pack(), addr)

    async def main() -> None:
        t, _ = await asyncio.get_running_loop().create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        ready.send((t.get_extra_info("sockname")[1], 0.0, 0))
        cpu0 = time.process_time()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait, 120)
        ready.send((time.process_time() - cpu0, Proto.count))
        t.close()

    asyncio.run(main())


def _queries(n_tasks: int) -> list[bytes]:
    import dnslib

    out = []
    apps = min(n_tasks, 2000)
    for i in range(1000):
        if i % 10 == 9:
            name, qt = f"nothing{i}.marathon.mesos", "A"
        elif i % 3 == 0:
            name, qt = f"_app{i % apps}._tcp.marathon.mesos", "SRV"
        else:
            name, qt = f"app{i % apps}.marathon.mesos", "A"
        out.append(dnslib.DNSRecord.question(name, qt).pack())
    return out


def _load(port: int, clients: int, seconds: float, queries: list[bytes], result) -> None:  # type: ignore[no-untyped-def]
    _pin(1)
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(clients):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.0.{10 + i}", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    sent_at = [0.0] * clients
    qi = [i * 7 for i in range(clients)]
    lat: list[float] = []
    lost = 0
    now = time.perf_counter
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
        sent_at[i] = now()
        s.send(queries[qi[i] % len(queries)])
    start = now()
    end = start + seconds
    next_check = start + 0.25
    while True:
        t = now()
        if t >= end:
            break
        for key, _ in sel.select(0.05):
            i = key.data
            s = socks[i]
            try:
                s.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            t = now()
            lat.append(t - sent_at[i])
            qi[i] += 1
            sent_at[i] = t
            s.send(queries[qi[i] % len(queries)])
        if t >= next_check:
            next_check = t + 0.25
            for i, s in enumerate(socks):
                if t - sent_at[i] > 1.0:  # lost: send the next one
                    lost += 1
                    qi[i] += 1
                    sent_at[i] = t
                    s.send(queries[qi[i] % len(queries)])
    elapsed = now() - start
    for s in socks:
        s.close()
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")  # noqa: E731
    result.send((len(lat) / elapsed, p(0.5), p(0.99), lost, len(lat)))


def run(target, n_tasks: int, clients: int, seconds: float) -> tuple:  # type: ignore[no-untyped-def]
    ctx = mp.get_context("fork")
    ready_r, ready_w = ctx.Pipe(False)
    stop = ctx.Event()
    server = ctx.Process(target=target, args=(n_tasks, ready_w, stop), daemon=True)
    server.start()
    try:
        if not ready_r.poll(120):
            raise RuntimeError("server did not start")
        port, build_s, names = ready_r.recv()
        res_r, res_w = ctx.Pipe(False)
        load = ctx.Process(target=_load, args=(port, clients, seconds, _queries(n_tasks), res_w), daemon=True)
        load.start()
        if not res_r.poll(seconds + 60):
            raise RuntimeError("load did not finish")
        qps, p50, p99, lost, n = res_r.recv()
        load.join(10)
        stop.set()
        cpu, served = ready_r.recv() if ready_r.poll(10) else (float("nan"), 0)
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.kill()
    return qps, p50, p99, lost, n, build_s, names, (cpu / served * 1e6 if served else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=10_000)
    args = ap.parse_args()
    args.clients = max(1, min(args.clients, 200))
    args.seconds = max(0.5, min(args.seconds, 60.0))
    print(f"DNS over UDP on 127.0.0.1: {args.clients} closed-loop clients, {args.seconds:g} s each, "
          f"server pinned to CPU 0, load to CPU 1 ({os.cpu_count()} CPUs)")
    rows = []
    for name, target in (("dnslib-trivial (baseline)", _serve_dnslib), ("dcosd", _serve_dcosd)):
        qps, p50, p99, lost, n, build_s, names, us = run(target, args.tasks, args.clients, args.seconds)
        rows.append((name, qps, p50, p99, lost, n, us))
        if name == "dcosd":
            print(f"  dcosd zone: {args.tasks} tasks → {names} names, built in {build_s:.2f} s")
    # Server CPU per query is robust to a busy machine; queries/s and latency are not.
    print(f"  {'server':<28}{'queries/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'lost':>8}{'answers':>10}"
          f"{'CPU µs/q':>10}{'q/s per core':>14}")
    for name, qps, p50, p99, lost, n, us in rows:
        print(f"  {name:<28}{qps:>12,.0f}{p50:>10.2f}{p99:>10.2f}{lost:>8}{n:>10}{us:>10.1f}{1e6 / us:>14,.0f}")
    base, ours = rows[0], rows[1]
    print(f"  dcosd / baseline: {ours[1] / base[1]:.2f}x queries/s, {base[6] / ours[6]:.2f}x less CPU per query")
    print(f"  goal {GOAL_QPS:,} queries/s on one core: measured {ours[1]:,.0f}/s "
          f"({'met' if ours[1] >= GOAL_QPS else 'not met'}), CPU-bound ceiling {1e6 / ours[6]:,.0f}/s "
          f"({'met' if 1e6 / ours[6] >= GOAL_QPS else 'not met'}); load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
