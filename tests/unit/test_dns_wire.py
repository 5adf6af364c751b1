"""The hand-rolled wire path, checked against dnslib: every answer we assemble must decode."""

from __future__ import annotations

import random
import struct

import dnslib
import pytest

from dcosd.master.dns import wire
from dcosd.master.dns.answers import ZoneAnswers
from dcosd.master.dns.records import DnsAgent, DnsMaster, DnsPort, DnsSnapshot, DnsTask, build_records
from dcosd.master.dns.server import DnsServer, DnsServerConfig

AGENT = DnsAgent("a-S0", "h", "10.0.1.1")


def zone(n_instances: int = 1) -> ZoneAnswers:
    tasks = tuple(
        DnsTask(f"t{i}", "web", "marathon", "a-S0", "TASK_RUNNING", f"172.16.{i // 250}.{i % 250 + 1}", (DnsPort(80),))
        for i in range(n_instances)
    )
    snap = DnsSnapshot(masters=(DnsMaster("m", "10.0.0.1"),), leader=DnsMaster("m", "10.0.0.1"),
                       agents=(AGENT,), tasks=tasks, serial=7)
    return ZoneAnswers(build_records(snap))


def q(name: str, qtype: str = "A", **kw) -> bytes:
    rec = dnslib.DNSRecord.question(name, qtype, **kw)
    return rec.pack()


def ask(z: ZoneAnswers, data: bytes, limit: int = wire.TCP_MAX) -> dnslib.DNSRecord:
    query = wire.parse_query(data)
    entry = z.lookup(query.key, query.qtype)
    assert entry is not None
    return dnslib.DNSRecord.parse(
        wire.answer(query, entry.rcode, entry.answers, entry.authority, entry.additional, limit=limit)
    )


def test_parse_plain_and_edns_queries() -> None:
    query = wire.parse_query(q("Web.Marathon.Mesos"))
    assert query.key == wire.encode_name("web.marathon.mesos.")
    assert query.qname == wire.encode_name("Web.Marathon.Mesos.")
    assert query.qtype == wire.A and query.qclass == wire.CLASS_IN and query.edns is None
    rec = dnslib.DNSRecord.question("x.mesos", "SRV")
    rec.add_ar(dnslib.EDNS0(udp_len=4000))
    query = wire.parse_query(rec.pack())
    assert query.edns == 4000 and query.udp_limit() == 4000 and query.qtype == wire.SRV


@pytest.mark.parametrize(
    "data,rcode",
    [
        (b"", None),
        (b"\x00" * 11, None),
        (struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0), None),  # an answer, not a query
        (struct.pack("!HHHHHH", 1, 0x2800, 1, 0, 0, 0), wire.NOTIMP),  # opcode UPDATE
        (struct.pack("!HHHHHH", 1, 0, 0, 0, 0, 0), wire.FORMERR),
        (struct.pack("!HHHHHH", 1, 0, 2, 0, 0, 0), wire.FORMERR),
        (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x05mes", wire.FORMERR),
        (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", wire.FORMERR),
        (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x00\x00\x01", wire.FORMERR),
        (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 1) + b"\x00\x00\x01\x00\x01\x00\x00\x29", wire.FORMERR),
        (struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x3f" + b"a" * 63 * 5, wire.FORMERR),
    ],
)
def test_malformed_queries(data: bytes, rcode: int | None) -> None:
    with pytest.raises(wire.WireError) as err:
        wire.parse_query(data)
    if rcode is None:
        assert err.value.response is None
    else:
        reply = dnslib.DNSRecord.parse(err.value.response)
        assert reply.header.rcode == rcode and reply.header.qr == 1


def test_random_garbage_never_raises_anything_else() -> None:
    rng = random.Random(1)
    base = q("web.marathon.mesos", "SRV")
    for i in range(5000):
        data = bytearray(base if i % 2 else rng.randbytes(rng.randrange(0, 80)))
        for _ in range(rng.randrange(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            wire.parse_query(bytes(data))
        except wire.WireError as exc:
            if exc.response is not None:
                dnslib.DNSRecord.parse(exc.response)


def test_a_answer_keeps_the_question_spelling() -> None:
    z = zone()
    reply = ask(z, q("WEB.marathon.Mesos"))
    assert reply.header.rcode == wire.NOERROR and reply.header.aa == 1
    assert str(reply.q.qname) == "WEB.marathon.Mesos."
    (rr,) = reply.rr
    assert str(rr.rname) == "WEB.marathon.Mesos." and str(rr.rdata) == "172.16.0.1" and rr.ttl == 60


def test_srv_answer_with_glue() -> None:
    z = zone()
    reply = ask(z, q("_web._tcp.marathon.mesos", "SRV"))
    (rr,) = reply.rr
    assert rr.rtype == dnslib.QTYPE.SRV
    assert rr.rdata.port == 80 and rr.rdata.priority == 0 and rr.rdata.weight == 1
    target = str(rr.rdata.target)
    assert target.endswith(".marathon.slave.mesos.")
    assert [(str(a.rname), str(a.rdata)) for a in reply.ar] == [(target, "10.0.1.1")]


def test_nxdomain_and_nodata_carry_the_soa() -> None:
    z = zone()
    nx = ask(z, q("nothing.marathon.mesos"))
    assert nx.header.rcode == wire.NXDOMAIN and not nx.rr
    (soa,) = nx.auth
    assert str(soa.rname) == "mesos." and soa.rdata.times[0] == 7 and str(soa.rdata.mname) == "ns1.mesos."
    empty = ask(z, q("web.marathon.mesos", "TXT"))
    assert empty.header.rcode == wire.NOERROR and not empty.rr and str(empty.auth[0].rname) == "mesos."
    ent = ask(z, q("marathon.slave.mesos"))
    assert ent.header.rcode == wire.NOERROR and not ent.rr
    assert z.lookup(wire.encode_name("example.com."), wire.A) is None
    assert z.lookup(wire.encode_name("a\\.b.mesos."), wire.A).rcode == wire.NXDOMAIN  # odd bytes, in zone


def test_apex_soa_ns_and_any() -> None:
    z = zone()
    assert ask(z, q("mesos", "SOA")).rr[0].rtype == dnslib.QTYPE.SOA
    ns = ask(z, q("mesos", "NS"))
    assert str(ns.rr[0].rdata) == "ns1.mesos." and str(ns.ar[0].rdata) == "10.0.0.1"
    assert {r.rtype for r in ask(z, q("mesos", "ANY")).rr} == {dnslib.QTYPE.SOA, dnslib.QTYPE.NS}


def test_udp_truncation_sets_tc_and_stays_parseable() -> None:
    z = zone(100)
    big = ask(z, q("web.marathon.mesos"), limit=512)
    assert big.header.tc == 1 and 0 < len(big.rr) < 100
    assert len(big.pack()) <= 512
    full = ask(z, q("web.marathon.mesos"))
    assert full.header.tc == 0 and len(full.rr) == 100
    srv = ask(z, q("_web._tcp.marathon.mesos", "SRV"), limit=512)
    assert srv.header.tc == 1 and not srv.ar


def test_server_handle_edns_refused_class_and_shuffle() -> None:
    server = DnsServer(zone(20).rs, DnsServerConfig(upstreams=()))
    rec = dnslib.DNSRecord.question("web.marathon.mesos")
    rec.add_ar(dnslib.EDNS0(udp_len=4096))
    reply = dnslib.DNSRecord.parse(server.handle(rec.pack(), udp=True))
    assert len(reply.rr) == 20 and reply.ar[0].rtype == dnslib.QTYPE.OPT
    orders = {tuple(str(r.rdata) for r in dnslib.DNSRecord.parse(server.handle(rec.pack(), udp=True)).rr)
              for _ in range(20)}
    assert len(orders) > 1
    chaos = dnslib.DNSRecord.question("version.bind", "TXT", "CH")
    assert dnslib.DNSRecord.parse(server.handle(chaos.pack(), udp=True)).header.rcode == wire.REFUSED
    axfr = dnslib.DNSRecord.question("mesos", "AXFR")
    assert dnslib.DNSRecord.parse(server.handle(axfr.pack(), udp=False)).header.rcode == wire.REFUSED
    assert isinstance(server.handle(q("example.com"), udp=True), wire.Query)
