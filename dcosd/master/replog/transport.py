"""Raft messages between masters: one long-lived stream per ordered pair of masters, over HTTP.

Each master dials every peer with ``GET /dcosd/internal/v1/raft`` carrying the cluster secret and
``Connection: Upgrade``, ``Upgrade: tcp``; the peer answers ``101 Switching Protocols`` and from then
on the connection carries length-prefixed binary frames (replog/wire.py), one per batch, in one
direction. Replies travel the other way, on the connection the peer dialled.

Why not a request per batch, or WebSocket: with an HTTP POST per batch, request handling on both
ends cost more CPU than the replication itself; WebSocket framing, masking and its reader task
still took a third of a follower's CPU. Here ``send()`` writes the frame to the socket at once (no
task to wake) and the receiving side parses frames straight out of the connection's bytes
(``FrameReader``, fed by aiohttp's upgraded connection) into ``RaftStore.step``.

A snapshot image (a file, image.py) follows its message in chunk frames when the receiver's 101
says it takes them (``CHUNKS_HEADER``): a task per peer reads the file a chunk at a time and waits for
the socket to drain before the next, so heartbeats and appends pass between chunks and memory holds
one chunk. A master from before chunks gets the image in the message, as it expects.

Fire and forget, as the core expects. A peer that is down costs a bounded outbox (oldest dropped:
the core resends) and a reconnect after ``_RETRY_PAUSE``; a peer whose socket stops draining gets
nothing more until it does. A cut link is noticed by TCP_USER_TIMEOUT: data unacknowledged for
``_DEAD_AFTER`` seconds aborts the connection, and the next send redials.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from .image import CHUNK_SIZE, ImageFile, ImageReceiver, TransferCounts
from .messages import Message, Snapshot
from .wire import ImageToFollow, WireError, decode_chunk, decode_frame, encode_chunk, encode_frame, is_chunk

log = logging.getLogger(__name__)

RAFT_PATH = "/dcosd/internal/v1/raft"
CLUSTER_HEADER = "X-Dcosd-Cluster"  # the dialler's cluster id, empty before its cluster has one
PEERS_HEADER = "X-Dcosd-Peers"  # the ids of the dialler's --peers, sorted, comma-separated
FROM_HEADER, TO_HEADER = "X-Dcosd-From", "X-Dcosd-To"  # the dialler's --id, and the id it is dialling
MAX_OUTBOX = 4096
CHUNKS_HEADER = "X-Dcosd-Raft-Chunks"  # in the 101: this master takes snapshot images in chunk frames
MAX_FRAME = 1 << 31  # a snapshot image from a master that sends no chunks travels as one frame
MAX_UNSENT = 64 << 20  # bytes queued in a socket that does not drain: stop adding (the core resends)
# The core sends its snapshot again when the follower has not answered within ~0.5 s, far less than a
# large image takes to cross and install. The same image to the same peer on the same stream is not
# started again while it is being sent, nor for this long after: restarting it would never finish on
# a slow link, and a follower that installed it takes appends without answering the snapshot.
RESEND_IMAGE_AFTER = 10.0
_RETRY_PAUSE = 0.05
_CONNECT_TIMEOUT = 1.0
_DEAD_AFTER = 2.0
_LEN = 4


def _prefixed(body: bytes) -> bytes:
    return len(body).to_bytes(_LEN, "little") + body


def _frame(messages: list[Message]) -> bytes:
    return _prefixed(encode_frame(messages))


def _chunk_frame(offset: int, data: bytes) -> bytes:
    return _prefixed(encode_chunk(offset, data))


class FrameReader:
    """The receiving end: aiohttp feeds it the bytes after the 101 (RequestHandler.set_parser).
    ``images``: the state database's path, beside which images sent in chunks are written (None: this
    end did not offer to take chunks, and a chunk is an error)."""

    def __init__(self, deliver: Callable[[list[Message]], None], peer: str, images: Path | None = None,
                 counts: TransferCounts | None = None) -> None:
        self._deliver = deliver
        self._peer = peer
        self._buf = bytearray()
        self._images = ImageReceiver(images, peer, counts) if images is not None else None
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        arrived: list[Message] = []  # every frame this read completed, delivered together
        try:
            while end - pos >= _LEN:
                n = int.from_bytes(buf[pos:pos + _LEN], "little")
                if n > MAX_FRAME:
                    log.warning("dropping the raft stream from %s: a frame of %d bytes announced", self._peer, n)
                    self._finish()
                    return True, b""
                if end - pos - _LEN < n:
                    break
                body = bytes(buf[pos + _LEN:pos + _LEN + n])
                pos += _LEN + n
                try:
                    arrived += self._chunk(body) if is_chunk(body) else self._messages(decode_frame(body))
                except WireError as exc:
                    log.warning("dropping the raft stream from %s: %s", self._peer, exc)
                    self._finish()
                    return True, b""  # eof: aiohttp closes the connection
        finally:
            if arrived:  # also those before a frame that did not parse, as they were read
                self._deliver(arrived)
        del buf[:pos]
        return False, b""

    def _messages(self, messages: list[Message]) -> list[Message]:
        """The messages to hand on now: an image announced to follow is held until it has come."""
        if not any(m.snapshot is not None and isinstance(m.snapshot.data, ImageToFollow) for m in messages):
            return messages
        out = []
        for m in messages:
            if m.snapshot is None or not isinstance(m.snapshot.data, ImageToFollow):
                out.append(m)
            elif self._images is None:
                raise WireError("a snapshot announced in chunks, which this master did not offer to take")
            else:
                self._images.start(m)
                whole = self._images.finish_empty()
                if whole is not None:
                    out.append(whole)
        return out

    def _chunk(self, body: bytes) -> list[Message]:
        if self._images is None:
            raise WireError("a snapshot chunk, which this master did not offer to take")
        offset, data = decode_chunk(body)
        whole = self._images.chunk(offset, data)
        return [whole] if whole is not None else []

    def feed_eof(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._images is not None:
            self._images.abort()  # an unfinished image: the leader sends its snapshot again
        if not self.done.done():
            self.done.set_result(None)


class _Dialed(asyncio.Protocol):
    """The sending end's connection: the HTTP handshake, then nothing but our frames going out."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future = asyncio.get_running_loop().create_future()
        self.takes_chunks = False  # the peer's 101 said so (CHUNKS_HEADER)
        self._head = b""
        self._drained: asyncio.Future | None = None  # set while the transport's buffer is over its mark

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    async def drained(self) -> None:
        if self._drained is not None:
            await self._drained

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.upgraded.done():
            return  # the peer sends nothing after the 101
        self._head += data
        if b"\r\n\r\n" in self._head:
            head = self._head.split(b"\r\n\r\n", 1)[0]
            status = head.split(b"\r\n", 1)[0]
            parts = status.split()
            code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self.takes_chunks = f"\r\n{CHUNKS_HEADER.lower()}: 1".encode() in head.lower()
            self.upgraded.set_result(code)
        elif len(self._head) > 16384:
            self.upgraded.set_result(0)

    def connection_lost(self, exc: Exception | None) -> None:
        self.resume_writing()  # a stream waiting to send its next chunk ends
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)


class HttpTransport:
    def __init__(self, peers: dict[str, str], secret: Callable[[], str],
                 cluster_id: Callable[[], str | None] = lambda: None) -> None:
        self.peers = {p: url.rstrip("/") for p, url in peers.items()}
        self._secret = secret
        self._cluster_id = cluster_id
        self._outbox: dict[str, list[Message]] = {p: [] for p in self.peers}
        self._conn: dict[str, _Dialed | None] = {p: None for p in self.peers}
        self._dialing: dict[str, asyncio.Task | None] = {p: None for p in self.peers}
        self._others: set[str] = set()
        self._my_id = ""
        self._refusal_logged: dict[str, float] = {}  # peer -> when its 409 was last logged
        self._streams: dict[str, asyncio.Task] = {}  # peer -> the image being sent to it in chunks
        # peer -> (stream, index, term, when it was all sent; None while sending) of its latest image
        self._images_sent: dict[str, tuple[_Dialed, int, int, float | None]] = {}
        self._stopped = False
        self.reachable: dict[str, bool] = {p: False for p in self.peers}
        self.images = TransferCounts()  # sent from here, and received by this master's FrameReaders

    def start(self, my_id: str) -> None:
        self._my_id = my_id
        self._others = {p for p in self.peers if p != my_id}
        for p in self._others:
            self._dial(p)

    async def stop(self) -> None:
        self._stopped = True
        tasks = [t for t in self._dialing.values() if t is not None] + list(self._streams.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in self._conn.values():
            if c is not None and c.transport is not None:
                c.transport.close()

    def send(self, messages: list[Message]) -> None:
        by_peer: dict[str, list[Message]] = {}
        for m in messages:
            if m.to in self._others:
                by_peer.setdefault(m.to, []).append(m)
        for peer, batch in by_peer.items():
            conn = self._conn[peer]
            if conn is not None and conn.transport is not None and not conn.transport.is_closing():
                if conn.transport.get_write_buffer_size() < MAX_UNSENT:
                    self._write(peer, conn, batch)
                continue
            box = self._outbox[peer]
            box.extend(batch)
            if len(box) > MAX_OUTBOX:
                del box[: len(box) - MAX_OUTBOX]
            self._dial(peer)

    def _write(self, peer: str, conn: _Dialed, batch: list[Message]) -> None:
        assert conn.transport is not None
        if not any(m.snapshot is not None and isinstance(m.snapshot.data, ImageFile) for m in batch):
            conn.transport.write(_frame(batch))
            return
        out = []
        for m in batch:
            image = m.snapshot.data if m.snapshot is not None else None
            if not isinstance(image, ImageFile):
                out.append(m)
                continue
            assert m.snapshot is not None
            meta = m.snapshot.meta
            try:
                if conn.takes_chunks:
                    sent = self._images_sent.get(peer)
                    if (sent is not None and sent[:3] == (conn, meta.index, meta.term)
                            and (sent[3] is None or asyncio.get_running_loop().time() - sent[3] < RESEND_IMAGE_AFTER)):
                        continue
                    f = open(image.path, "rb")  # now: the file may be replaced by a newer snapshot later
                    out.append(dataclasses.replace(m, snapshot=Snapshot(meta, ImageToFollow(image.size))))
                    self._stream(peer, conn, f, image.size, (conn, meta.index, meta.term, None))
                else:
                    out.append(dataclasses.replace(m, snapshot=Snapshot(m.snapshot.meta, image.read())))
            except OSError as exc:  # the core sends its snapshot again later
                log.warning("cannot send the snapshot at index %d to master %s: %s", m.snapshot.meta.index, peer, exc)
        if out:
            conn.transport.write(_frame(out))

    def _stream(self, peer: str, conn: _Dialed, f: BinaryIO, size: int, sending: tuple) -> None:
        """Send the image in ``f`` as chunk frames after the message announcing it (written by the
        caller, before any chunk: this task runs later). A newer image for the peer replaces it."""
        before = self._streams.pop(peer, None)
        if before is not None:
            before.cancel()  # the receiver drops the unfinished image when it sees the next announcement
        self._images_sent[peer] = sending
        task = asyncio.get_running_loop().create_task(self._send_chunks(peer, conn, f, size, sending),
                                                      name=f"raft-snapshot-{peer}")
        self._streams[peer] = task

        def ended(t: asyncio.Task) -> None:
            f.close()  # also when it was cancelled before it ran
            if self._streams.get(peer) is t:
                del self._streams[peer]

        task.add_done_callback(ended)

    async def _send_chunks(self, peer: str, conn: _Dialed, f: BinaryIO, size: int, sending: tuple) -> None:
        loop = asyncio.get_running_loop()
        done = False
        try:
            offset = 0
            while offset < size:
                transport = conn.transport
                if transport is None or transport.is_closing():  # the receiver dropped the image
                    raise ConnectionError("the stream ended")
                piece = await loop.run_in_executor(None, f.read, min(CHUNK_SIZE, size - offset))
                if not piece:
                    raise OSError(f"the image ended at {offset} of {size} bytes")
                transport.write(_chunk_frame(offset, piece))
                offset += len(piece)
                await conn.drained()
            done = True
            self.images.sent += 1
            self.images.bytes_sent += size
        except OSError as exc:  # the core sends its snapshot again
            self.images.send_failures += 1
            log.warning("sending a snapshot to master %s failed: %s", peer, exc)
            if conn.transport is not None:
                # The receiver would wait for chunks that will not come: end the stream (it drops the
                # image, and the next send redials).
                conn.transport.close()
        finally:  # (cancelled: a newer image for the peer replaced this one; f is closed by _stream)
            if self._images_sent.get(peer) is sending:
                if done:
                    self._images_sent[peer] = (*sending[:3], loop.time())
                else:  # cut short: the next time the core sends it, it goes again
                    del self._images_sent[peer]

    # -- connections ----------------------------------------------------------------------------
    def _dial(self, peer: str) -> None:
        if not self._stopped and self._dialing[peer] is None:
            self._dialing[peer] = asyncio.get_running_loop().create_task(self._connect(peer),
                                                                         name=f"raft-dial-{peer}")

    async def _connect(self, peer: str) -> None:
        loop = asyncio.get_running_loop()
        url = urlsplit(self.peers[peer])
        host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)
        try:
            while not self._stopped:
                conn = None
                try:
                    async with asyncio.timeout(_CONNECT_TIMEOUT):
                        _, conn = await loop.create_connection(_Dialed, host, port)
                        sock = conn.transport.get_extra_info("socket") if conn.transport else None
                        if sock is not None and hasattr(socket, "TCP_USER_TIMEOUT"):
                            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(_DEAD_AFTER * 1000))
                        assert conn.transport is not None
                        conn.transport.write(
                            f"GET {url.path.rstrip('/')}{RAFT_PATH} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                            f"Connection: Upgrade\r\nUpgrade: tcp\r\n{CLUSTER_HEADER}: {self._cluster_id() or ''}\r\n"
                            f"{PEERS_HEADER}: {','.join(sorted(self.peers))}\r\n"
                            f"{FROM_HEADER}: {self._my_id}\r\n{TO_HEADER}: {peer}\r\n"
                            f"Authorization: Bearer {self._secret()}\r\n\r\n".encode())
                        code = await conn.upgraded
                    if code != 101:
                        if code in (401, 403):
                            log.warning("master %s refused raft messages (%s): is the cluster secret the same?",
                                        peer, code)
                        elif code == 409:
                            now = loop.time()
                            if now - self._refusal_logged.get(peer, -3600.0) >= 60:  # it is retried every second
                                self._refusal_logged[peer] = now
                                log.error("master %s refused raft messages: its --id or --peers differ from this "
                                          "master's, or it belongs to another cluster than this master's state "
                                          "(its log says which)", peer)
                        else:
                            log.warning("master %s answered %s to the raft stream", peer, code)
                        conn.transport.close()
                        await asyncio.sleep(1.0)
                        continue
                except (TimeoutError, OSError, ConnectionError) as exc:
                    if conn is not None and conn.transport is not None:
                        conn.transport.close()
                    if self.reachable[peer]:
                        log.warning("master %s unreachable: %s", peer, exc)
                    self.reachable[peer] = False
                    await asyncio.sleep(_RETRY_PAUSE)
                    continue
                self.reachable[peer] = True
                self._conn[peer] = conn
                waiting, self._outbox[peer] = self._outbox[peer], []
                if waiting:
                    self._write(peer, conn, waiting)
                await conn.lost
                self._conn[peer] = None
                if self.reachable[peer]:
                    log.info("raft stream to master %s closed; redialling", peer)
                await asyncio.sleep(_RETRY_PAUSE)
        finally:
            self._dialing[peer] = None
