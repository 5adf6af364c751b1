"""Raft messages between masters: one long-lived WebSocket per ordered pair of masters.

Each master dials every peer at ``GET /dcosd/internal/v1/raft`` (an HTTP upgrade carrying the
cluster secret) and sends its messages for that peer as binary frames (replog/wire.py); replies
come back the same way on the connection the peer dialled. A stream, not a request per batch:
with an HTTP POST per batch, request and response handling on both ends cost more CPU than the
replication itself, and a reply waited for a request of its own.

Fire and forget, as the core expects. Messages queued while a frame is being written go out
together in the next frame, so batches form by themselves under load. A peer that is down costs a
bounded outbox (oldest dropped: the core resends) and a reconnect every ``_RETRY_PAUSE``. A peer
that stops answering pings (a cut link, where TCP alone would wait minutes) is dropped after
``_PING_SECONDS`` and redialled.

``send()`` is called from the Raft loop; it only queues and wakes the peer's sender task, which runs
on the next turn of the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiohttp

from .messages import Message
from .wire import encode_frame

log = logging.getLogger(__name__)

RAFT_PATH = "/dcosd/internal/v1/raft"
MAX_OUTBOX = 4096
MAX_FRAME = 1 << 31  # a snapshot image travels as one frame
_RETRY_PAUSE = 0.05
_PING_SECONDS = 1.0


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
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=1))
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
        while True:
            try:
                await self._stream(peer, url)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError, ConnectionError) as exc:
                if self.reachable[peer]:
                    log.warning("master %s unreachable: %s", peer, exc)
                elif isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status in (401, 403):
                    log.warning("master %s refused raft messages (%s): is the cluster secret the same?",
                                peer, exc.status)
                    await asyncio.sleep(1.0)
            self.reachable[peer] = False
            await asyncio.sleep(_RETRY_PAUSE)

    async def _stream(self, peer: str, url: str) -> None:
        assert self._http is not None
        wake = self._wake[peer]
        async with self._http.ws_connect(url, headers={"Authorization": f"Bearer {self._secret()}"},
                                         heartbeat=_PING_SECONDS, max_msg_size=MAX_FRAME, compress=0,
                                         autoclose=True) as ws:
            self.reachable[peer] = True
            closed = asyncio.create_task(self._until_closed(ws, wake), name=f"raft-recv-{peer}")
            try:
                while True:
                    await wake.wait()
                    wake.clear()
                    if ws.closed:
                        raise ConnectionError("connection closed")
                    batch, self._outbox[peer] = self._outbox[peer], []
                    if batch:
                        await ws.send_bytes(encode_frame(batch))
            finally:
                closed.cancel()

    @staticmethod
    async def _until_closed(ws: aiohttp.ClientWebSocketResponse, wake: asyncio.Event) -> None:
        # Nothing but control frames comes back on this connection; reading them is what notices a
        # close or a missed pong, and waking the sender makes it reconnect.
        async for _ in ws:
            pass
        wake.set()
