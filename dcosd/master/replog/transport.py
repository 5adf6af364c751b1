"""HTTP between masters: POST /dcosd/internal/v1/raft, a JSON batch of messages, cluster secret.

Fire and forget, as the core expects: each peer has an outbox and one sender task that posts
everything waiting in one request, so messages batch themselves while a request is in flight.
A peer that does not answer costs a bounded outbox (oldest messages dropped: the core resends)
and a short pause before the next attempt. Replies travel as ordinary messages the other way.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from .messages import Entry, EntryKind, Message, MsgType, Snapshot, SnapshotMeta

log = logging.getLogger(__name__)

RAFT_PATH = "/dcosd/internal/v1/raft"
MAX_OUTBOX = 4096
_RETRY_PAUSE = 0.05


def encode(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"t": int(m.type), "f": m.frm, "to": m.to, "term": m.term}
    if m.log_term:
        d["lt"] = m.log_term
    if m.index:
        d["i"] = m.index
    if m.commit:
        d["c"] = m.commit
    if m.reject:
        d["r"] = 1
    if m.reject_hint:
        d["rh"] = m.reject_hint
    if m.seq:
        d["s"] = m.seq
    if m.rejoin:
        d["rj"] = 1
    if m.entries:
        d["e"] = [[e.term, e.index, int(e.kind), e.data.decode()] for e in m.entries]
    if m.snapshot is not None:
        d["snap"] = [m.snapshot.meta.index, m.snapshot.meta.term, base64.b64encode(m.snapshot.data).decode()]
    return d


def decode(d: dict[str, Any]) -> Message:
    snap = None
    if "snap" in d:
        i, t, data = d["snap"]
        snap = Snapshot(SnapshotMeta(int(i), int(t)), base64.b64decode(data))
    return Message(MsgType(d["t"]), str(d["f"]), str(d["to"]), int(d["term"]), log_term=d.get("lt", 0),
                   index=d.get("i", 0), commit=d.get("c", 0), reject=bool(d.get("r")),
                   reject_hint=d.get("rh", 0), seq=d.get("s", 0), rejoin=bool(d.get("rj")), snapshot=snap,
                   entries=tuple(Entry(t, i, data.encode(), EntryKind(k)) for t, i, k, data in d.get("e", ())))


class HttpTransport:
    def __init__(self, peers: dict[str, str], secret: Callable[[], str]) -> None:
        self.peers = {p: url.rstrip("/") for p, url in peers.items()}
        self._secret = secret
        self._outbox: dict[str, list[Message]] = {p: [] for p in self.peers}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task] = []
        self._http: aiohttp.ClientSession | None = None
        self.reachable: dict[str, bool] = {p: False for p in self.peers}

    def start(self, my_id: str) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10, sock_connect=1),
                                           connector=aiohttp.TCPConnector(limit_per_host=4))
        for p in self.peers:
            if p != my_id:
                self._wake[p] = asyncio.Event()
                self._tasks.append(asyncio.create_task(self._sender(p), name=f"raft-send-{p}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._http is not None:
            await self._http.close()

    def send(self, messages: list[Message]) -> None:
        for m in messages:
            box = self._outbox.get(m.to)
            if box is None or m.to not in self._wake:
                continue
            box.append(m)
            if len(box) > MAX_OUTBOX:
                del box[: len(box) - MAX_OUTBOX]
            self._wake[m.to].set()

    async def _sender(self, peer: str) -> None:
        url = self.peers[peer] + RAFT_PATH
        wake = self._wake[peer]
        assert self._http is not None
        while True:
            await wake.wait()
            wake.clear()
            batch, self._outbox[peer] = self._outbox[peer], []
            if not batch:
                continue
            body = json.dumps([encode(m) for m in batch])
            try:
                async with self._http.post(url, data=body, headers={
                        "Authorization": f"Bearer {self._secret()}", "Content-Type": "application/json"}) as resp:
                    await resp.read()
                    if resp.status != 204:
                        log.warning("master %s refused raft messages (%s)", peer, resp.status)
                        await asyncio.sleep(1.0)
                    self.reachable[peer] = resp.status == 204
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if self.reachable[peer]:
                    log.warning("master %s unreachable: %s", peer, exc)
                self.reachable[peer] = False
                await asyncio.sleep(_RETRY_PAUSE)


def decode_batch(raw: bytes) -> list[Message]:
    return [decode(d) for d in json.loads(raw)]
