"""Forwarding of names outside the zone to upstream resolvers (what mesos-dns calls "external").

Upstreams are tried in order, each for ``timeout`` seconds; the first valid reply is
relayed (with the client's id restored), and when none answers the client gets
SERVFAIL. Each exchange uses a fresh socket (a random source port) and a fresh random
id, and a reply is accepted only from the upstream's address, with that id and the
same question — so a spoofed packet is not relayed. UDP clients are forwarded over
UDP (a truncated upstream reply is relayed as is, and the client retries over TCP),
TCP clients over TCP. At most ``max_inflight`` exchanges run at once; beyond that the
answer is SERVFAIL at once, so a flood of external names cannot exhaust sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import struct
from dataclasses import dataclass
from typing import Any

from dcosd.master.dns import wire

log = logging.getLogger(__name__)

RESOLV_CONF = "/etc/resolv.conf"


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int = 53

    @classmethod
    def parse(cls, text: str) -> "Upstream":
        """``"10.0.0.2"``, ``"10.0.0.2:5353"``, ``"::1"`` or ``"[::1]:5353"``."""
        text = text.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif text.count(":") == 1:
            host, _, p = text.partition(":")
            port = int(p)
        else:
            host, port = text, 53
        ipaddress.ip_address(host)  # an address, never a name: we are the resolver
        if not 0 < port < 65536:
            raise ValueError(f"bad port in upstream {text!r}")
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def system_upstreams(path: str = RESOLV_CONF, exclude: tuple[str, int] | None = None) -> list[Upstream]:
    """The nameservers of resolv.conf, less the address we serve on (no forwarding loop)."""
    out: list[Upstream] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                up = Upstream(str(ipaddress.ip_address(parts[1].split("%")[0])), 53)
            except ValueError:
                continue
            if exclude is not None and _is_self(up, *exclude):
                continue
            out.append(up)
    return out


def _is_self(up: Upstream, host: str, port: int) -> bool:
    if up.port != port:
        return False
    if up.host == host:
        return True
    return host in ("0.0.0.0", "::", "") and ipaddress.ip_address(up.host).is_loopback


class _OneShot(asyncio.DatagramProtocol):
    def __init__(self, fut: "asyncio.Future[bytes]", qid: int, question: bytes) -> None:
        self.fut = fut
        self.qid = qid
        self.question = question

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.fut.done() and _valid_reply(data, self.qid, self.question):
            self.fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)


def _valid_reply(data: bytes, qid: int, question: bytes) -> bool:
    if len(data) < 12 + len(question):
        return False
    rid, flags = struct.unpack_from("!HH", data)
    return rid == qid and bool(flags & wire.QR) and data[12 : 12 + len(question)].lower() == question.lower()


class Forwarder:
    def __init__(self, upstreams: list[Upstream], timeout: float = 2.0, max_inflight: int = 512) -> None:
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.max_inflight = max_inflight
        self.inflight = 0

    async def forward(self, q: wire.Query, tcp: bool) -> bytes:
        """The upstream's reply to ``q`` with ``q``'s id, or REFUSED/SERVFAIL."""
        if not self.upstreams:
            return wire.answer(q, wire.REFUSED, aa=False)
        if self.inflight >= self.max_inflight:
            return wire.answer(q, wire.SERVFAIL, aa=False)
        self.inflight += 1
        try:
            for up in self.upstreams:
                qid = random.getrandbits(16)
                msg = struct.pack("!H", qid) + q.raw[2:]
                try:
                    async with asyncio.timeout(self.timeout):
                        if tcp:
                            reply = await self._tcp(up, msg, qid, q.question)
                        else:
                            reply = await self._udp(up, msg, qid, q.question)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    log.debug("DNS: upstream %s failed: %r", up, exc)
                    continue
                # The client's id back; AA cleared: we relay, we are not the authority.
                flags = struct.unpack_from("!H", reply, 2)[0] & ~wire.AA
                return struct.pack("!HH", q.id, flags) + reply[4:]
            return wire.answer(q, wire.SERVFAIL, aa=False)
        finally:
            self.inflight -= 1

    async def _udp(self, up: Upstream, msg: bytes, qid: int, question: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _OneShot(fut, qid, question), remote_addr=(up.host, up.port)
        )
        try:
            transport.sendto(msg)
            return await fut
        finally:
            transport.close()

    async def _tcp(self, up: Upstream, msg: bytes, qid: int, question: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(up.host, up.port)
        try:
            writer.write(len(msg).to_bytes(2, "big") + msg)
            await writer.drain()
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
                if _valid_reply(data, qid, question):
                    return data
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
