"""The authoritative DNS server of one master: asyncio UDP + TCP over a swappable RecordSet.

    server = DnsServer(build_records(snapshot), DnsServerConfig(host="10.0.0.5", port=53))
    await server.start()            # returns once both sockets are bound (server.port)
    server.update(build_records(newer_snapshot))   # atomic swap, visible to the next query
    await server.stop()

Names in the zone are answered from the RecordSet (answers.py); other names are
forwarded to upstream resolvers (forward.py). Floods are bounded: a token bucket per
UDP client address, a cap on TCP connections per client and in total, an idle
timeout on TCP, and a cap on forwarded queries in flight. Nothing a client sends can
raise out of a handler: unreadable packets are answered FORMERR or dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from dataclasses import dataclass
from typing import Any

from dcosd.master.dns import wire
from dcosd.master.dns.answers import ZoneAnswers
from dcosd.master.dns.forward import Forwarder, Upstream, system_upstreams
from dcosd.master.dns.records import RecordSet

log = logging.getLogger(__name__)

VERSION = "dcosd-0.1.0"  # reported as the Mesos-DNS version by the HTTP API


@dataclass(frozen=True)
class DnsServerConfig:
    host: str = "127.0.0.1"
    port: int = 53  # 0: any free port (the same one for UDP and TCP)
    # Other zones go to these resolvers ("ip" or "ip:port"); None: /etc/resolv.conf's
    # nameservers (without ourselves); (): no forwarding, such names are REFUSED.
    upstreams: tuple[str, ...] | None = None
    forward_timeout: float = 2.0  # per upstream attempt; after the last one: SERVFAIL
    max_forwards: int = 512  # forwarded queries in flight; beyond: SERVFAIL at once
    udp_rate: float = 5000.0  # queries/s per UDP client address (0: no limit)
    udp_burst: float = 10000.0
    max_clients_tracked: int = 65536  # token buckets kept before idle ones are forgotten
    tcp_per_client: int = 16  # concurrent TCP connections per client address
    tcp_total: int = 1024
    tcp_idle_timeout: float = 10.0  # seconds to wait for the next query (or its rest)


class _Buckets:
    """Per-address token buckets; over the rate, queries are dropped (the client retries)."""

    def __init__(self, rate: float, burst: float, max_tracked: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_tracked = max_tracked
        self.state: dict[str, list[float]] = {}
        self.dropped = 0

    def allow(self, addr: str, now: float) -> bool:
        b = self.state.get(addr)
        if b is None:
            if len(self.state) >= self.max_tracked:
                self._forget(now)
            self.state[addr] = [self.burst - 1.0, now]
            return True
        tokens = b[0] + (now - b[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        b[1] = now
        if tokens < 1.0:
            b[0] = tokens
            self.dropped += 1
            return False
        b[0] = tokens - 1.0
        return True

    def _forget(self, now: float) -> None:
        # Forget buckets that have refilled (their clients are idle); if none, everyone.
        full = [a for a, (tok, t) in self.state.items() if tok + (now - t) * self.rate >= self.burst]
        for a in full:
            del self.state[a]
        if len(self.state) >= self.max_tracked:
            self.state.clear()


class _Udp:
    """UDP on a raw non-blocking socket: each wake-up drains up to ``BATCH`` datagrams.

    Cheaper per query than a DatagramProtocol (no transport bookkeeping per packet),
    and a reply that would block is dropped, as UDP allows, instead of queued.
    """

    BATCH = 64

    def __init__(self, server: "DnsServer", sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.closed = False

    def on_readable(self) -> None:
        srv = self.server
        buckets = srv._buckets
        sock = self.sock
        handle = srv.handle
        stats = srv.stats
        for _ in range(self.BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP errors reported on the socket
                continue
            if buckets is not None and not buckets.allow(addr[0], time.monotonic()):
                continue
            stats["udp"] += 1
            try:
                result = handle(data, True)
            except Exception:  # a bug must cost one answer, never the server
                log.exception("DNS: failed to answer a UDP query from %s", addr[0])
                result = wire.header_error(data, wire.SERVFAIL)
            if result is None:
                continue
            if isinstance(result, wire.Query):
                srv._spawn(srv._forward_udp(self, result, addr))
                continue
            self.sendto(result, addr)

    def sendto(self, data: bytes, addr: Any) -> None:
        if self.closed:
            return
        try:
            self.sock.sendto(data, addr)
        except OSError:
            pass  # full buffer or unreachable client: UDP may drop

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.closed:
            self.closed = True
            loop.remove_reader(self.sock.fileno())
            self.sock.close()


class DnsServer:
    def __init__(self, records: RecordSet, config: DnsServerConfig = DnsServerConfig()) -> None:
        self.config = config
        self._zone = ZoneAnswers(records)
        self._buckets = (
            _Buckets(config.udp_rate, config.udp_burst, config.max_clients_tracked) if config.udp_rate > 0 else None
        )
        self._tcp_clients: dict[str, int] = {}
        self._tcp_count = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._udp: _Udp | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self.port = config.port
        self.forwarder: Forwarder | None = None
        self.stats = {"udp": 0, "tcp": 0, "forwarded": 0, "formerr": 0}

    # ------------------------------------------------------------------ the zone
    @property
    def records(self) -> RecordSet:
        return self._zone.rs

    def update(self, records: RecordSet) -> None:
        """Serve ``records`` from the next query on (one reference swap; O(1))."""
        self._zone = ZoneAnswers(records)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind UDP and TCP on the same port; returns when both listen."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        upstreams = cfg.upstreams
        family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
        for attempt in range(20):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((cfg.host, cfg.port))
                port = sock.getsockname()[1]
                self._tcp = await asyncio.start_server(self._tcp_client, cfg.host, port, reuse_address=True)
            except OSError:
                sock.close()
                if cfg.port or attempt == 19:
                    raise
                continue
            self._udp = _Udp(self, sock)
            loop.add_reader(sock.fileno(), self._udp.on_readable)
            self.port = port
            break
        parsed = (
            [Upstream.parse(u) for u in upstreams]
            if upstreams is not None
            else system_upstreams(exclude=(cfg.host, self.port))
        )
        self.forwarder = Forwarder(parsed, cfg.forward_timeout, cfg.max_forwards)
        log.info("DNS: serving %s on %s:%d (udp, tcp); forwarding to %s", self.records.domain, cfg.host,
                 self.port, ", ".join(map(str, parsed)) or "nobody")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close(asyncio.get_running_loop())
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()
            self._tcp = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ answering
    def handle(self, data: bytes, udp: bool) -> bytes | wire.Query | None:
        """The answer to one message: bytes to send, a Query to forward, or None to drop."""
        try:
            q = wire.parse_query(data)
        except wire.WireError as exc:
            self.stats["formerr"] += 1
            return exc.response
        if q.qclass != wire.CLASS_IN:
            return wire.answer(q, wire.REFUSED, aa=False)
        if q.qtype in (wire.AXFR, wire.IXFR):
            return wire.answer(q, wire.REFUSED, aa=False)
        entry = self._zone.lookup(q.key, q.qtype)
        if entry is None:
            return q
        limit = q.udp_limit() if udp else wire.TCP_MAX
        orders = entry.orders
        if 23 + len(q.question) + entry.size <= limit:  # header + question + sections + OPT fit
            body = orders[int(random.random() * len(orders))] if len(orders) > 1 else orders[0]
            return wire.answer_joined(
                q, entry.rcode, body, len(entry.answers), len(entry.authority), len(entry.additional)
            )
        answers = entry.answers
        if len(answers) > 1:
            answers = random.sample(answers, len(answers))
        return wire.answer(q, entry.rcode, answers, entry.authority, entry.additional, limit=limit)

    async def _forward_udp(self, proto: _Udp, q: wire.Query, addr: Any) -> None:
        assert self.forwarder is not None
        self.stats["forwarded"] += 1
        reply = await self.forwarder.forward(q, tcp=False)
        proto.sendto(reply, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        peer = writer.get_extra_info("peername")
        ip = peer[0] if peer else "?"
        cfg = self.config
        if self._tcp_count >= cfg.tcp_total or self._tcp_clients.get(ip, 0) >= cfg.tcp_per_client:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        self._tcp_count += 1
        self._tcp_clients[ip] = self._tcp_clients.get(ip, 0) + 1
        try:
            while True:
                async with asyncio.timeout(cfg.tcp_idle_timeout):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
                self.stats["tcp"] += 1
                result = self.handle(data, udp=False)
                if isinstance(result, wire.Query):
                    assert self.forwarder is not None
                    self.stats["forwarded"] += 1
                    result = await self.forwarder.forward(result, tcp=True)
                if result is None:
                    break  # not a query: not a DNS client
                writer.write(len(result).to_bytes(2, "big") + result)
                async with asyncio.timeout(cfg.tcp_idle_timeout):
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
            pass  # the client went away or stalled mid-frame: close, keep serving others
        except Exception:
            log.exception("DNS: failed to answer a TCP query from %s", ip)
        finally:
            self._tcp_count -= 1
            left = self._tcp_clients[ip] - 1
            if left:
                self._tcp_clients[ip] = left
            else:
                del self._tcp_clients[ip]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
