"""The DNS server on 127.0.0.1, asked by dnslib, dig and dnspython. Loopback only: the
upstream resolvers are fakes started here; nothing is sent to any other address."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import sys
import time
from typing import AsyncIterator

import dnslib
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dcosd.master.dns.http import DnsHttpApi
from dcosd.master.dns.records import (
    DnsAgent,
    DnsFramework,
    DnsMaster,
    DnsPort,
    DnsSnapshot,
    DnsTask,
    build_records,
)
from dcosd.master.dns.server import DnsServer, DnsServerConfig

try:
    import dns.asyncquery
    import dns.message
    import dns.rcode
    import dns.rdatatype
except ImportError:  # pragma: no cover - dnspython is optional
    dns = None  # type: ignore[assignment]

LEADER = DnsMaster("m1", "10.0.0.1")
AGENT = DnsAgent("agent-S0", "node-1", "10.0.1.1")


def snapshot(*extra: DnsTask, serial: int = 1) -> DnsSnapshot:
    tasks = (
        DnsTask("nginx.1", "nginx", "marathon", "agent-S0", "TASK_RUNNING", None, (DnsPort(31000),)),
        DnsTask("app.1", "app", "marathon", "agent-S0", "TASK_RUNNING", "172.17.0.2",
                (DnsPort(8080, "tcp", "http"),), "app.grp"),
        *extra,
    )
    return DnsSnapshot(masters=(LEADER,), leader=LEADER, agents=(AGENT,),
                       frameworks=(DnsFramework("f", "marathon", "10.0.0.1", 8080),), tasks=tasks, serial=serial)


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    srv = DnsServer(build_records(snapshot()), DnsServerConfig(port=0, upstreams=(), tcp_idle_timeout=1.0))
    await srv.start()
    yield srv
    await srv.stop()


def _send(rec: dnslib.DNSRecord, port: int, tcp: bool = False, source: str = "") -> dnslib.DNSRecord:
    data = rec.pack()
    if tcp:
        with socket.create_connection(("127.0.0.1", port), timeout=3,
                                      source_address=(source, 0) if source else None) as s:
            s.sendall(struct.pack("!H", len(data)) + data)
            size = struct.unpack("!H", _recv_exact(s, 2))[0]
            return dnslib.DNSRecord.parse(_recv_exact(s, size))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        if source:
            s.bind((source, 0))
        s.sendto(data, ("127.0.0.1", port))
        return dnslib.DNSRecord.parse(s.recv(65535))


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


async def ask(port: int, name: str, qtype: str = "A", tcp: bool = False, qclass: str = "IN",
              source: str = "") -> dnslib.DNSRecord:
    return await asyncio.to_thread(_send, dnslib.DNSRecord.question(name, qtype, qclass), port, tcp, source)


async def dig(port: int, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=3", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return out.decode()


needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) not installed")
needs_dnspython = pytest.mark.skipif(dns is None, reason="dnspython not installed")


# ----------------------------------------------------------------------------- answers
@pytest.mark.parametrize("tcp", [False, True])
async def test_a_and_srv_with_dnslib(server: DnsServer, tcp: bool) -> None:
    reply = await ask(server.port, "nginx.marathon.mesos", tcp=tcp)
    assert reply.header.rcode == 0 and reply.header.aa == 1
    assert [str(r.rdata) for r in reply.rr] == ["10.0.1.1"]
    srv = await ask(server.port, "_nginx._tcp.marathon.mesos", "SRV", tcp=tcp)
    (rr,) = srv.rr
    assert rr.rdata.port == 31000 and str(rr.rdata.target).endswith(".marathon.slave.mesos.")


@needs_dig
async def test_dig_answers(server: DnsServer) -> None:
    p = server.port
    assert (await dig(p, "+short", "nginx.marathon.mesos")).split() == ["10.0.1.1"]
    assert (await dig(p, "+short", "NgInX.MaRaThOn.MeSoS")).split() == ["10.0.1.1"]
    assert (await dig(p, "+short", "+tcp", "leader.mesos")).split() == ["10.0.0.1"]
    srv = (await dig(p, "+short", "_nginx._tcp.marathon.mesos", "SRV")).split()
    assert srv[:3] == ["0", "1", "31000"] and srv[3].endswith(".marathon.slave.mesos.")
    for name in ("app.grp.marathon.mesos", "app-grp.marathon.mesos"):
        assert (await dig(p, "+short", name)).split() == ["172.17.0.2"], name
    assert "status: NXDOMAIN" in (nx := await dig(p, "nothing.mesos"))
    assert "mesos.\t\t\t60\tIN\tSOA\tns1.mesos. root.ns1.mesos." in nx
    empty = await dig(p, "nginx.marathon.mesos", "AAAA")
    assert "status: NOERROR" in empty and "ANSWER: 0" in empty and "AUTHORITY: 1" in empty
    assert "status: REFUSED" in await dig(p, "-c", "CH", "version.bind", "TXT")
    assert "ns1.mesos." in await dig(p, "+short", "mesos", "NS")


@needs_dnspython
async def test_dnspython_answers(server: DnsServer) -> None:
    p = server.port
    r = await dns.asyncquery.udp(dns.message.make_query("_app.grp._tcp.marathon.mesos", "SRV"), "127.0.0.1",
                                 port=p, timeout=3)
    assert r.rcode() == dns.rcode.NOERROR
    (rrset,) = r.answer
    assert [x.port for x in rrset] == [8080]
    r = await dns.asyncquery.tcp(dns.message.make_query("nope.marathon.mesos", "A"), "127.0.0.1", port=p, timeout=3)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == dns.rdatatype.SOA
    r = await dns.asyncquery.udp(dns.message.make_query("APP-GRP.marathon.mesos", "A"), "127.0.0.1", port=p,
                                 timeout=3)
    assert [x.address for x in r.answer[0]] == ["172.17.0.2"]
    r = await dns.asyncquery.udp(dns.message.make_query("leader.mesos", "MX"), "127.0.0.1", port=p, timeout=3)
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority


async def test_update_is_visible_at_once(server: DnsServer) -> None:
    assert (await ask(server.port, "redis.marathon.mesos")).header.rcode == 3
    server.update(build_records(snapshot(
        DnsTask("redis.1", "redis", "marathon", "agent-S0", "TASK_RUNNING", "172.17.0.9"), serial=2)))
    reply = await ask(server.port, "redis.marathon.mesos")
    assert [str(r.rdata) for r in reply.rr] == ["172.17.0.9"]
    soa = await ask(server.port, "mesos", "SOA")
    assert soa.rr[0].rdata.times[0] == 2


async def test_udp_truncation_then_tcp(server: DnsServer) -> None:
    many = [DnsTask(f"w.{i}", "wide", "marathon", "agent-S0", "TASK_RUNNING", f"172.18.0.{i + 1}") for i in range(60)]
    server.update(build_records(snapshot(*many)))
    udp = await ask(server.port, "wide.marathon.mesos")
    assert udp.header.tc == 1 and len(udp.pack()) <= 512
    tcp = await ask(server.port, "wide.marathon.mesos", tcp=True)
    assert tcp.header.tc == 0 and len(tcp.rr) == 60


# ----------------------------------------------------------------------------- robustness
async def test_malformed_packets_do_not_kill_it(server: DnsServer) -> None:
    def throw_garbage() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            for junk in (b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\xff" * 40, bytes(range(256)) * 2):
                s.sendto(junk, ("127.0.0.1", server.port))
            # a readable header with a broken question gets FORMERR
            s.sendto(struct.pack("!HHHHHH", 77, 0, 1, 0, 0, 0) + b"\x05mes", ("127.0.0.1", server.port))
            while True:
                data = s.recv(65535)
                if data[:2] == b"\x00\x4d":
                    return data
    formerr = await asyncio.to_thread(throw_garbage)
    assert formerr is not None and dnslib.DNSRecord.parse(formerr).header.rcode == 1
    assert (await ask(server.port, "leader.mesos")).rr


async def test_truncated_and_stalled_tcp_frames(server: DnsServer) -> None:
    def bad_clients() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
            s.sendall(b"\x00\x40" + b"\x00" * 10)  # promises 64 bytes, sends 10, hangs up
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
            s.sendall(b"\x00")  # half a length prefix, then silence: closed after the idle timeout
            t0 = time.monotonic()
            assert s.recv(10) == b""
            assert time.monotonic() - t0 < 3
        with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
            s.sendall(b"\x00\x05hello")  # a frame that is no DNS message: FORMERR-less drop → closed
            assert s.recv(10) == b""
    await asyncio.to_thread(bad_clients)
    assert (await ask(server.port, "leader.mesos", tcp=True)).rr


# ----------------------------------------------------------------------------- forwarding
class FakeUpstream:
    """A resolver on 127.0.0.1 answering every A question with 192.0.2.1 (UDP and TCP)."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.queries = 0

    def reply(self, data: bytes) -> bytes:
        self.queries += 1
        rec = dnslib.DNSRecord.parse(data)
        out = rec.reply()
        out.add_answer(dnslib.RR(rec.q.qname, dnslib.QTYPE.A, rdata=dnslib.A("192.0.2.1"), ttl=30))
        return out.pack()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        up = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.t = transport

            def datagram_received(self, data: bytes, addr: tuple) -> None:
                if up.answer:
                    self.t.sendto(up.reply(data), addr)  # type: ignore[attr-defined]
                else:
                    up.queries += 1

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            size = int.from_bytes(await reader.readexactly(2), "big")
            out = self.reply(await reader.readexactly(size))
            writer.write(len(out).to_bytes(2, "big") + out)
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        # UDP and TCP on one port: the kernel picks a free UDP port, and its TCP twin may be some other
        # process's connection right now (CI once hit it) — then take another, as DnsServer.start does.
        for attempt in range(20):
            self.udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
            port = self.udp.get_extra_info("sockname")[1]
            try:
                self.tcp = await asyncio.start_server(tcp, "127.0.0.1", port)
            except OSError:
                self.udp.close()
                if attempt == 19:
                    raise
                continue
            return port
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        self.udp.close()
        self.tcp.close()
        await self.tcp.wait_closed()


async def test_other_zones_are_forwarded_to_the_upstream() -> None:
    fake = FakeUpstream()
    port = await fake.start()
    srv = DnsServer(build_records(snapshot()), DnsServerConfig(port=0, upstreams=(f"127.0.0.1:{port}",)))
    await srv.start()
    try:
        for tcp in (False, True):
            reply = await ask(srv.port, "www.example.com", tcp=tcp)
            assert reply.header.rcode == 0 and [str(r.rdata) for r in reply.rr] == ["192.0.2.1"]
            assert reply.header.aa == 0
        assert fake.queries == 2
        assert (await ask(srv.port, "leader.mesos")).rr  # our own zone is not forwarded
        assert fake.queries == 2
    finally:
        await srv.stop()
        await fake.stop()


async def test_unreachable_upstreams_give_servfail_after_timeout() -> None:
    silent = FakeUpstream(answer=False)
    port = await silent.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    srv = DnsServer(build_records(snapshot()), DnsServerConfig(
        port=0, upstreams=(f"127.0.0.1:{dead_port}", f"127.0.0.1:{port}"), forward_timeout=0.3))
    await srv.start()
    try:
        t0 = time.monotonic()
        reply = await ask(srv.port, "www.example.org")
        assert reply.header.rcode == 2  # SERVFAIL
        assert 0.25 < time.monotonic() - t0 < 2.5
        assert silent.queries == 1
    finally:
        await srv.stop()
        await silent.stop()


async def test_no_upstreams_means_refused(server: DnsServer) -> None:
    assert (await ask(server.port, "www.example.com")).header.rcode == 5


# ----------------------------------------------------------------------------- floods
FLOODER = r"""
import select, socket, sys, time
port, query = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
sent = answered = 0
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.2", 0))
s.setblocking(False)
print("started", flush=True)
deadline = time.monotonic() + 10
while sent < 200_000 and time.monotonic() < deadline:
    if sent % 500 == 0 and select.select([sys.stdin], [], [], 0)[0]:
        break  # the test closed our stdin: stop
    try:
        s.sendto(query, ("127.0.0.1", port))
        sent += 1
    except BlockingIOError:
        time.sleep(0.0005)
    try:
        while True:
            s.recv(65535)
            answered += 1
    except BlockingIOError:
        pass
time.sleep(0.2)
try:
    while True:
        s.recv(65535)
        answered += 1
except BlockingIOError:
    pass
print(sent, answered, flush=True)
"""


async def test_udp_flood_from_one_client_does_not_starve_another() -> None:
    srv = DnsServer(build_records(snapshot()), DnsServerConfig(port=0, upstreams=(), udp_rate=200, udp_burst=50))
    await srv.start()
    query = dnslib.DNSRecord.question("nginx.marathon.mesos").pack().hex()
    flooder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOODER, str(srv.port), query,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert flooder.stdout is not None and flooder.stdin is not None
        assert (await flooder.stdout.readline()).strip() == b"started"
        await asyncio.sleep(0.3)  # the flood is on
        t0 = time.monotonic()
        for _ in range(30):
            # A stub resolver's behaviour: a short timeout and a retry.
            for attempt in range(6):
                try:
                    reply = await asyncio.to_thread(_send_with_timeout, "leader.mesos", srv.port, "127.0.0.3", 0.5)
                    break
                except TimeoutError:
                    assert attempt < 5, "the other client got no answer"
            assert [str(r.rdata) for r in reply.rr] == ["10.0.0.1"]
        good_time = time.monotonic() - t0
        flooder.stdin.close()
        out, _ = await asyncio.wait_for(flooder.communicate(), 15)
        elapsed = time.monotonic() - t0 + 0.5
    finally:
        if flooder.returncode is None:
            flooder.kill()
            await flooder.wait()
        await srv.stop()
    sent, answered = map(int, out.split())
    assert sent > 1000
    # The flooder got at most its bucket's worth: burst + rate × time (+ slack).
    assert answered <= 50 + 200 * elapsed + 50, (sent, answered, elapsed)
    assert good_time < 15


def _send_with_timeout(name: str, port: int, source: str, timeout: float) -> dnslib.DNSRecord:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.bind((source, 0))
        s.sendto(dnslib.DNSRecord.question(name).pack(), ("127.0.0.1", port))
        return dnslib.DNSRecord.parse(s.recv(65535))


async def test_tcp_connections_per_client_are_bounded() -> None:
    srv = DnsServer(build_records(snapshot()), DnsServerConfig(port=0, upstreams=(), tcp_per_client=4))
    await srv.start()
    held: list[socket.socket] = []
    try:
        for _ in range(4):
            held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=3, source_address=("127.0.0.2", 0)))
        await asyncio.sleep(0)  # let the server accept them

        def fifth_is_closed() -> bytes:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                with socket.create_connection(("127.0.0.1", srv.port), timeout=3,
                                              source_address=("127.0.0.2", 0)) as s:
                    data = dnslib.DNSRecord.question("leader.mesos").pack()
                    try:
                        s.sendall(struct.pack("!H", len(data)) + data)
                        got = s.recv(2)
                    except ConnectionError:
                        got = b""
                    if got == b"":
                        return got
                time.sleep(0.05)
            return b"still served"

        assert await asyncio.to_thread(fifth_is_closed) == b""
        reply = await ask(srv.port, "leader.mesos", tcp=True, source="127.0.0.3")
        assert reply.rr
    finally:
        for s in held:
            s.close()
        await srv.stop()


# ----------------------------------------------------------------------------- HTTP API
async def test_http_api(server: DnsServer) -> None:
    app = web.Application()
    app.add_routes(DnsHttpApi.for_server(server).routes(prefix="/mesos_dns"))
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/mesos_dns/v1/version")
        assert (await r.json())["Service"] == "Mesos-DNS"
        r = await client.get("/mesos_dns/v1/hosts/NGINX.marathon.mesos")
        assert await r.json() == [{"host": "nginx.marathon.mesos.", "ip": "10.0.1.1"}]
        r = await client.get("/mesos_dns/v1/hosts/nothing.mesos")
        assert await r.json() == [{"host": "", "ip": ""}]
        r = await client.get("/mesos_dns/v1/services/_nginx._tcp.marathon.mesos.")
        (svc,) = await r.json()
        assert svc["service"] == "_nginx._tcp.marathon.mesos." and svc["ip"] == "10.0.1.1" and svc["port"] == "31000"
        assert svc["host"].endswith(".marathon.slave.mesos.")
        r = await client.get("/mesos_dns/v1/services/_none._tcp.marathon.mesos")
        assert await r.json() == [{"service": "", "host": "", "ip": "", "port": ""}]
        r = await client.get("/mesos_dns/v1/enumerate")
        (fw,) = (await r.json())["frameworks"]
        assert fw["name"] == "marathon" and {t["name"] for t in fw["tasks"]} == {"nginx", "app"}
        r = await client.get("/mesos_dns/v1/config")
        cfg = await r.json()
        assert cfg["Domain"] == "mesos" and cfg["TTL"] == 60 and cfg["Port"] == server.port
        r = await client.get("/mesos_dns/v1/axfr")
        assert (await r.json())["Records"]["As"]["leader.mesos."] == ["10.0.0.1"]
        assert (await client.get("/mesos_dns/v1/hosts/x.mesos/ports")).status == 501
