"""The DNS wire format for the hot path: parse a query, assemble an answer. Pure: stdlib only.

dnslib parses and packs a query/answer pair in ~80 µs; this does it in a few µs by
handling only what a server needs — one question, an optional EDNS OPT record — and
by assembling answers from resource records encoded once (see answers.py). Anything
it cannot read is a ``WireError``: answered FORMERR when the header is readable,
dropped when it is not. dnslib stays the reference: the tests check every answer we
produce decodes with it (and with dig and dnspython).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

# Types, classes, codes (RFC 1035, 2782, 3596, 6891).
A, NS, SOA, AAAA, SRV, OPT, IXFR, AXFR, ANY = 1, 2, 6, 28, 33, 41, 251, 252, 255
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

QR, AA, TC, RD, RA, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0010
OPCODE_MASK = 0x7800

UDP_MIN = 512  # the largest UDP answer a client without EDNS accepts
UDP_MAX = 4096  # we never send a UDP answer larger than this, whatever EDNS says
TCP_MAX = 65535
EDNS_PAYLOAD = 1232  # advertised in our OPT record (DNS flag day 2020)

QNAME_OWNER = b"\xc0\x0c"  # compression pointer to the question's name (offset 12)

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")


class WireError(Exception):
    """A message we cannot answer normally: ``response`` is the FORMERR/NOTIMP to send, or None to drop."""

    def __init__(self, message: str, response: bytes | None = None) -> None:
        super().__init__(message)
        self.response = response


@dataclass(slots=True)
class Query:
    id: int
    flags: int
    qname: bytes  # wire form as received (its case is echoed back)
    key: bytes  # wire form lower-cased: the lookup key
    qtype: int
    qclass: int
    question: bytes  # the question section as received
    edns: int | None  # the client's UDP payload size when it sent OPT, else None
    raw: bytes  # the whole message, for forwarding

    def udp_limit(self) -> int:
        if self.edns is None:
            return UDP_MIN
        return max(UDP_MIN, min(self.edns, UDP_MAX))


def header_error(data: bytes, rcode: int) -> bytes | None:
    """A header-only answer (no question echoed) with ``rcode``; None when there is no header."""
    if len(data) < 12:
        return None
    qid, flags = struct.unpack_from("!HH", data)
    if flags & QR:
        return None  # never answer an answer: that is how reflection loops start
    flags = QR | (flags & (OPCODE_MASK | RD | CD)) | RA | rcode
    return _HEADER.pack(qid, flags, 0, 0, 0, 0)


def _skip_name(data: bytes, pos: int) -> int:
    """Offset just past a (possibly compressed) name at ``pos``."""
    end = len(data)
    while True:
        if pos >= end:
            raise IndexError
        n = data[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            if pos + 2 > end:
                raise IndexError
            return pos + 2
        if n & 0xC0:
            raise ValueError("bad label type")
        pos += n + 1


def parse_query(data: bytes) -> Query:
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) < 12:
        raise WireError("shorter than a header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & QR:
        raise WireError("not a query")
    if flags & OPCODE_MASK:
        raise WireError("opcode not implemented", header_error(data, NOTIMP))
    if qd != 1:
        raise WireError("not exactly one question", header_error(data, FORMERR))
    pos = 12
    end = len(data)
    try:
        while True:
            n = data[pos]
            if n == 0:
                pos += 1
                break
            if n > 63:  # a compression pointer has nothing to point at in the question
                raise ValueError("bad label in question")
            pos += n + 1
        if pos - 12 > 255 or pos + 4 > end:
            raise ValueError("bad question")
        qname = data[12:pos]
        qtype, qclass = struct.unpack_from("!HH", data, pos)
        pos += 4
        question = data[12:pos]
        edns = None
        if an or ns or ar:
            for i in range(an + ns + ar):
                pos = _skip_name(data, pos)
                rtype, rclass, _ttl, rdlen = _RR_FIXED.unpack_from(data, pos)
                pos += 10 + rdlen
                if pos > end:
                    raise ValueError("record past the end")
                if rtype == OPT:
                    if edns is not None or i < an + ns:
                        raise ValueError("misplaced or repeated OPT")
                    edns = rclass
    except (IndexError, ValueError, struct.error) as exc:
        raise WireError(f"malformed query: {exc}", header_error(data, FORMERR)) from None
    return Query(qid, flags, qname, qname.lower(), qtype, qclass, question, edns, data)


_OPT_RR = b"\x00" + _RR_FIXED.pack(OPT, EDNS_PAYLOAD, 0, 0)


def answer_joined(q: Query, rcode: int, body: bytes, an: int, ns: int, ar: int) -> bytes:
    """The untruncated answer from sections already joined (``answer`` when it may not fit)."""
    flags = QR | AA | (q.flags & (RD | CD)) | RA | rcode
    if q.edns is None:
        return _HEADER.pack(q.id, flags, 1, an, ns, ar) + q.question + body
    return _HEADER.pack(q.id, flags, 1, an, ns, ar + 1) + q.question + body + _OPT_RR


def answer(
    q: Query,
    rcode: int,
    answers: tuple[bytes, ...] | list[bytes] = (),
    authority: tuple[bytes, ...] = (),
    additional: tuple[bytes, ...] = (),
    *,
    aa: bool = True,
    limit: int = TCP_MAX,
) -> bytes:
    """A complete answer to ``q``, truncated to ``limit`` octets (TC set) when it does not fit.

    Truncation drops the additional section first, then answers from the end, then
    the authority section: what is left is still a valid message.
    """
    flags = QR | (q.flags & (RD | CD)) | RA | rcode
    if aa:
        flags |= AA
    opt = _OPT_RR if q.edns is not None else b""
    size = 12 + len(q.question) + len(opt)
    size_an = sum(map(len, answers))
    size_ns = sum(map(len, authority))
    size_ar = sum(map(len, additional))
    if size + size_an + size_ns + size_ar > limit:
        flags |= TC
        additional = ()
        if size + size_an + size_ns > limit:
            kept: list[bytes] = []
            room = limit - size - size_ns
            for rr in answers:
                if len(rr) > room:
                    break
                kept.append(rr)
                room -= len(rr)
            answers = kept
            if room < 0:
                authority = ()
    return b"".join(
        (
            _HEADER.pack(q.id, flags, 1, len(answers), len(authority), len(additional) + (1 if opt else 0)),
            q.question,
            *answers,
            *authority,
            *additional,
            opt,
        )
    )


# ------------------------------------------------------------------ encoding records
def encode_name(name: str) -> bytes:
    """``"a.b."`` → ``b"\\x01a\\x01b\\x00"`` (no compression)."""
    out = bytearray()
    for part in name.rstrip(".").split("."):
        if part:
            raw = part.encode("ascii")
            if len(raw) > 63:
                raise ValueError(f"label too long in {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > 255:
        raise ValueError(f"name too long: {name!r}")
    return bytes(out)


def decode_name(wire: bytes) -> list[bytes]:
    """Labels of an uncompressed wire name (the lookup key)."""
    labels = []
    pos = 0
    while wire[pos]:
        n = wire[pos]
        labels.append(wire[pos + 1 : pos + 1 + n])
        pos += n + 1
    return labels


def pointer(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + _RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata


def rdata_ip(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def rdata_srv(priority: int, weight: int, port: int, target: str) -> bytes:
    # RFC 2782: the target is never compressed.
    return struct.pack("!HHH", priority, weight, port) + encode_name(target)


def rdata_soa(mname: str, rname: str, serial: int, refresh: int, retry: int, expire: int, minimum: int) -> bytes:
    return encode_name(mname) + encode_name(rname) + struct.pack("!IIIII", serial, refresh, retry, expire, minimum)
