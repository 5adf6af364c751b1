"""Answers of one RecordSet, as wire-encoded resource records. Pure: stdlib only.

A ``ZoneAnswers`` wraps one immutable RecordSet. ``lookup(key, qtype)`` returns the
sections of the answer to a question (``Entry``), or None when the name is outside
the zone (the server forwards it). Entries of existing names are encoded on first
use and cached, so a hot name costs one dict lookup; the cache lives and dies with
its RecordSet, so ``update()`` is a pointer swap and never blocks. Names that do not
exist are not cached (a flood of random names must not grow memory); their NXDOMAIN
costs a few µs.

Answer records carry the question's name as a compression pointer (offset 12), so
one encoding serves any spelling of the name (0x20 case randomisation included).
"""

from __future__ import annotations

import itertools
import math
import random
from typing import NamedTuple

from dcosd.master.dns import wire
from dcosd.master.dns.records import RecordSet

_TYPE_NAMES = {wire.A: "A", wire.AAAA: "AAAA", wire.SRV: "SRV", wire.SOA: "SOA", wire.NS: "NS"}
_OTHER = 0  # cache slot shared by every type we hold no records of (all answer NOERROR + SOA)
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_CACHE = 262_144


class Entry(NamedTuple):
    rcode: int
    answers: tuple[bytes, ...]
    authority: tuple[bytes, ...]
    additional: tuple[bytes, ...]
    # The hot path: the three sections already joined, in several answer orders, and
    # their size. Any order is picked at random per query: the shuffle costs one index.
    orders: tuple[bytes, ...] = ()
    size: int = 0


PERMUTATIONS = 16


def _orders(answers: tuple[bytes, ...], tail: bytes) -> tuple[bytes, ...]:
    n = len(answers)
    if n <= 1:
        return (b"".join(answers) + tail,)
    if math.factorial(n) <= PERMUTATIONS * 2:
        perms = list(itertools.permutations(answers))
    else:
        # Random orders in which every record leads about equally often.
        perms = []
        for k in range(PERMUTATIONS):
            p = list(answers)
            random.shuffle(p)
            lead = answers[k % n]
            p.remove(lead)
            perms.append((lead, *p))
    return tuple(b"".join(p) + tail for p in perms)


def make_entry(rcode: int, answers: tuple[bytes, ...], authority: tuple[bytes, ...],
               additional: tuple[bytes, ...]) -> Entry:
    tail = b"".join(authority) + b"".join(additional)
    orders = _orders(answers, tail)
    return Entry(rcode, answers, authority, additional, orders, len(orders[0]))


class ZoneAnswers:
    def __init__(self, rs: RecordSet) -> None:
        self.rs = rs
        self.ttl = rs.ttl
        self.zone_wire = wire.encode_name(rs.domain)
        self.zone_labels = wire.decode_name(self.zone_wire)
        soa = rs.soa
        self._soa_rdata = wire.rdata_soa(
            soa.mname, soa.rname, soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum
        )
        self._cache: dict[tuple[bytes, int], Entry] = {}

    # ------------------------------------------------------------------ lookup
    def lookup(self, key: bytes, qtype: int) -> Entry | None:
        """``key`` is the lower-cased wire name of the question."""
        slot = qtype if qtype in _TYPE_NAMES or qtype == wire.ANY else _OTHER
        entry = self._cache.get((key, slot))
        if entry is not None:
            return entry
        labels = wire.decode_name(key)
        n = len(self.zone_labels)
        if len(labels) < n or labels[len(labels) - n :] != self.zone_labels:
            return None
        name = None
        if all(lab and _SAFE.issuperset(lab) for lab in labels):
            name = b".".join(labels).decode("ascii") + "."
        recs = self.rs.records.get(name) if name else None
        if recs is None:
            return make_entry(wire.NXDOMAIN, (), (self._soa(key),), ())
        entry = self._build(key, slot, recs)
        if len(self._cache) >= MAX_CACHE:
            self._cache.clear()
        self._cache[(key, slot)] = entry
        return entry

    def _soa(self, key: bytes) -> bytes:
        # The SOA's owner is the apex: a suffix of the question's name, so a pointer into it.
        owner = wire.pointer(12 + len(key) - len(self.zone_wire))
        return wire.rr(owner, wire.SOA, self.ttl, self._soa_rdata)

    def _build(self, key: bytes, slot: int, recs: dict) -> Entry:
        types = list(_TYPE_NAMES) if slot == wire.ANY else [slot] if slot in _TYPE_NAMES else []
        answers: list[bytes] = []
        additional: list[bytes] = []
        ttl = self.ttl
        owner = wire.QNAME_OWNER
        for t in types:
            for value in recs.get(_TYPE_NAMES[t], ()):
                if t in (wire.A, wire.AAAA):
                    answers.append(wire.rr(owner, t, ttl, wire.rdata_ip(value)))
                elif t == wire.SRV:
                    answers.append(
                        wire.rr(owner, t, ttl, wire.rdata_srv(value.priority, value.weight, value.port, value.target))
                    )
                elif t == wire.SOA:
                    answers.append(wire.rr(owner, t, ttl, self._soa_rdata))
                elif t == wire.NS:
                    answers.append(wire.rr(owner, t, ttl, wire.encode_name(value)))
        # Glue: addresses of SRV targets and name servers, when we hold them.
        targets = [v.target for v in recs.get("SRV", ())] if wire.SRV in types else []
        if wire.NS in types:
            targets += list(recs.get("NS", ()))
        for target in dict.fromkeys(targets):
            t_recs = self.rs.records.get(target, {})
            for t, tname in ((wire.A, "A"), (wire.AAAA, "AAAA")):
                for ip in t_recs.get(tname, ()):
                    additional.append(wire.rr(wire.encode_name(target), t, ttl, wire.rdata_ip(ip)))
        authority = () if answers else (self._soa(key),)
        return make_entry(wire.NOERROR, tuple(answers), authority, tuple(additional))
