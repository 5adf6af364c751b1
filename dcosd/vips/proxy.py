"""Every VIP served on this machine: a listener per address:port, balancing new connections.

``VipProxy.apply(table)`` makes the listeners match a table: new VIPs get their address
on ``lo`` (netlink.py) and a listening socket; gone ones stop accepting and lose their
address; for the others only the backend list is swapped. Connections already proxied
keep their backend whatever the table says next — a change never cuts one.

A new connection goes to the backend with the fewest connections through this agent,
ties broken round-robin. When the backend refuses or does not answer within
``connect_timeout``, the next one is tried (and the failed one is tried last for
``retry_after`` seconds), so a backend that died before the table caught up costs the
client nothing but one refused SYN. Without any backend the client is reset.
Bytes are relayed by asyncio protocols with flow control both ways (a slow reader
pauses the other side), and half-closes are passed on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from dcosd.vips.table import Vip, VipTable

log = logging.getLogger(__name__)

Backend = tuple[str, int]
HIGH_WATER = 256 * 1024


@dataclass
class _Entry:
    vip: Vip
    server: asyncio.AbstractServer
    backends: tuple[Backend, ...]
    active: dict[Backend, int] = field(default_factory=dict)
    failed_until: dict[Backend, float] = field(default_factory=dict)
    rr: int = 0
    connections: int = 0

    def candidates(self) -> list[Backend]:
        b = self.backends
        if not b:
            return []
        start = self.rr % len(b)
        self.rr += 1
        now = time.monotonic()
        order = list(b[start:] + b[:start])
        order.sort(key=lambda x: (self.failed_until.get(x, 0.0) > now, self.active.get(x, 0)))
        return order


class _Side(asyncio.Protocol):
    """One end of a relayed connection; ``peer`` is the other end."""

    def __init__(self, pipe: "_Pipe", peer: "_Side | None" = None) -> None:
        self.pipe = pipe
        self.transport: Any = None
        self.peer = peer
        self.eof = False
        self.linked = peer is None  # the client side always; a backend side once chosen

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
        if peer is None or peer.eof:
            self.pipe.close()
            return False
        return True  # half-closed: keep relaying the other way

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.linked:
            self.pipe.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Pipe:
    def __init__(self, proxy: "VipProxy", entry: _Entry) -> None:
        self.proxy = proxy
        self.entry = entry
        self.client = _ClientSide(self)
        self.backend_side: _Side | None = None
        self.backend: Backend | None = None
        self.closed = False
        self.connecting: asyncio.Task | None = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.connecting is not None:
            self.connecting.cancel()
        for side in (self.client, self.backend_side):
            if side is not None and side.transport is not None:
                side.transport.close()
        if self.backend is not None:
            n = self.entry.active.get(self.backend, 1) - 1
            if n > 0:
                self.entry.active[self.backend] = n
            else:
                self.entry.active.pop(self.backend, None)
        self.proxy.pipes.discard(self)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self.entry
        for backend in entry.candidates():
            # Linked to the client before connecting: a backend may send and close before this
            # coroutine resumes, and those bytes must reach the client.
            side = _Side(self, peer=self.client)
            try:
                await asyncio.wait_for(loop.create_connection(lambda: side, backend[0], backend[1]),
                                       self.proxy.connect_timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                entry.failed_until[backend] = time.monotonic() + self.proxy.retry_after
                log.debug("VIP %s: backend %s:%d failed (%s), trying the next", entry.vip.key, *backend, exc)
                continue
            if self.closed:  # the client went away meanwhile
                if side.transport is not None:
                    side.transport.close()
                return
            entry.failed_until.pop(backend, None)
            self.backend_side, self.backend, side.linked = side, backend, True
            entry.active[backend] = entry.active.get(backend, 0) + 1
            self.client.peer = side
            self.proxy.accepted += 1
            if side.transport is None:  # already closed by the backend (its bytes are forwarded)
                self.close()
            elif self.client.transport is not None:
                self.client.transport.resume_reading()
            return
        self.proxy.refused += 1
        if self.client.transport is not None:
            self.client.transport.abort()  # no backend answers: a reset, as a port without listener gives
        self.close()


class _ClientSide(_Side):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # until a backend is connected
        self.pipe.entry.connections += 1
        self.pipe.proxy.pipes.add(self.pipe)
        self.pipe.connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            await self.pipe.connect()
        except asyncio.CancelledError:
            pass
        finally:
            self.pipe.connecting = None


class VipProxy:
    """The VIP listeners of this agent. ``addresses`` puts VIP addresses on lo (netlink.Rtnl)."""

    def __init__(self, addresses: Any, connect_timeout: float = 1.0, retry_after: float = 2.0) -> None:
        self.addresses = addresses
        self.connect_timeout = connect_timeout
        self.retry_after = retry_after
        self.entries: dict[tuple[str, int], _Entry] = {}
        self.owned_ips: set[str] = set()
        self.pipes: set[_Pipe] = set()
        self.accepted = 0
        self.refused = 0
        self.problems: dict[str, str] = {}  # VIP key → why it is not served

    async def start(self) -> None:
        """Remove VIP addresses a previous run of the agent left behind (kill -9)."""
        for ip in self.addresses.ours():
            self.addresses.remove(ip)
            log.info("removed VIP address %s left by a previous run", ip)

    async def apply(self, table: VipTable) -> None:
        wanted = {(v.ip, v.port): v for v in table.vips}
        for key in [k for k in self.entries if k not in wanted]:
            entry = self.entries.pop(key)
            entry.server.close()
            log.info("VIP %s (%s:%d) no longer served", entry.vip.key, *key)
        problems = {}
        for key, vip in wanted.items():
            entry = self.entries.get(key)
            if entry is not None:
                if entry.backends != vip.backends:
                    log.info("VIP %s: backends %s", vip.key, _show(vip.backends))
                entry.vip, entry.backends = vip, vip.backends
                continue
            try:
                entry = await self._listen(vip)
            except OSError as exc:
                problems[vip.key] = f"cannot serve {vip.ip}:{vip.port}: {exc.strerror or exc}"
                log.warning("VIP %s: %s", vip.key, problems[vip.key])
                continue
            self.entries[key] = entry
            log.info("VIP %s serving on %s:%d, backends %s", vip.key, vip.ip, vip.port, _show(vip.backends))
        self.problems = problems
        in_use = {ip for ip, _ in self.entries}
        for ip in sorted(self.owned_ips - in_use):
            self._remove_address(ip)

    async def _listen(self, vip: Vip) -> _Entry:
        if vip.ip not in self.owned_ips:
            self.addresses.add(vip.ip)  # False: already there (e.g. a VIP on another port)
            self.owned_ips.add(vip.ip)
        entry: _Entry | None = None

        def factory() -> asyncio.Protocol:
            assert entry is not None
            return _Pipe(self, entry).client

        server = await asyncio.get_running_loop().create_server(
            factory, host=vip.ip, port=vip.port, reuse_address=True, backlog=1024)
        entry = _Entry(vip, server, vip.backends)
        return entry

    def _remove_address(self, ip: str) -> None:
        try:
            self.addresses.remove(ip)
        except OSError as exc:
            log.warning("could not remove VIP address %s: %s", ip, exc)
        self.owned_ips.discard(ip)

    async def close(self) -> None:
        """Stop serving: listeners closed, relayed connections closed, addresses removed."""
        for entry in self.entries.values():
            entry.server.close()
        for pipe in list(self.pipes):
            pipe.close()
        for entry in self.entries.values():
            await entry.server.wait_closed()
        self.entries.clear()
        for ip in sorted(self.owned_ips):
            self._remove_address(ip)

    def describe(self) -> list[dict[str, Any]]:
        return [{**e.vip.to_dict(), "connections": e.connections,
                 "active": {f"{h}:{p}": n for (h, p), n in e.active.items()}} for e in self.entries.values()]


def _show(backends: tuple[Backend, ...]) -> str:
    return ", ".join(f"{h}:{p}" for h, p in backends) or "none"
