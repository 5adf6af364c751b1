"""Snapshot images that travel in chunks (replog/image.py, transport.py): the receiving end writes
them to a file as they come, between other frames; the sending end streams a file to a peer that
offered to take chunks, and sends the whole image in the message to one that did not (a master from
before chunks). Real files; the sender against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest
from aiohttp import web

from dcosd.master.replog import image as image_mod
from dcosd.master.replog.image import ImageFile, ImageReceiver, TransferCounts
from dcosd.master.replog.messages import Message, MsgType, Snapshot, SnapshotMeta
from dcosd.master.replog.transport import CHUNKS_HEADER, RAFT_PATH, FrameReader, HttpTransport, _chunk_frame, _frame
from dcosd.master.replog.wire import ImageToFollow
from tests.harness.cluster import free_port


def _announce(index: int, size: int) -> Message:
    return Message(MsgType.SNAPSHOT, "m1", "m2", 5, snapshot=Snapshot(SnapshotMeta(index, 4), ImageToFollow(size)))


def _heartbeat(k: int) -> Message:
    return Message(MsgType.HEARTBEAT, "m1", "m2", 5, commit=k, seq=k)


def _leftovers(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.iterdir() if p.name != db.name)


async def test_an_image_arrives_in_chunks_between_heartbeats_cut_anywhere(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    got: list[Message] = []
    reader = FrameReader(got.extend, "m1", images=db)
    image = random.Random(3).randbytes(100_000)
    stream = _frame([_heartbeat(0), _announce(70, len(image))])
    for k, offset in enumerate(range(0, len(image), 30_000)):
        stream += _chunk_frame(offset, image[offset:offset + 30_000]) + _frame([_heartbeat(k + 1)])
    rng = random.Random(1)
    pos = 0
    while pos < len(stream):  # cut by TCP anywhere
        n = rng.randrange(1, 9000)
        assert reader.feed_data(stream[pos:pos + n]) == (False, b"")
        pos += n
    # The heartbeats came as they arrived; the snapshot once whole, after the third chunk's heartbeat.
    assert [m.type for m in got] == [MsgType.HEARTBEAT] * 4 + [MsgType.SNAPSHOT, MsgType.HEARTBEAT]
    snap = got[4].snapshot
    assert snap is not None and snap.meta == SnapshotMeta(70, 4)
    assert isinstance(snap.data, ImageFile) and snap.data.size == len(image)
    assert snap.data.read() == image
    assert _leftovers(db) == [snap.data.path.name] and not snap.data.path.name.endswith(".part")
    reader.feed_eof()
    assert snap.data.path.exists()  # handed on: the storage's now, not the stream's


async def test_an_unfinished_image_is_dropped_when_the_stream_ends_or_a_newer_one_is_announced(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    got: list[Message] = []
    counts = TransferCounts()
    reader = FrameReader(got.extend, "m1", images=db, counts=counts)
    reader.feed_data(_frame([_announce(50, 1000)]) + _chunk_frame(0, b"a" * 400))
    assert [n.endswith(".part") for n in _leftovers(db)] == [True]
    # A newer announcement (the leader sending its snapshot again) replaces the unfinished one.
    reader.feed_data(_frame([_announce(60, 10)]) + _chunk_frame(0, b"b" * 4))
    assert len(_leftovers(db)) == 1 and "-60-" in _leftovers(db)[0]
    reader.feed_eof()
    assert _leftovers(db) == [] and got == []
    assert reader.done.done()
    assert (counts.received, counts.receive_failures) == (0, 2)


@pytest.mark.parametrize("bad", [
    lambda: _frame([_announce(50, 10)]) + _chunk_frame(4, b"x" * 6),  # not where the image is at
    lambda: _frame([_announce(50, 10)]) + _chunk_frame(0, b"x" * 11),  # beyond the announced size
    lambda: _chunk_frame(0, b"x"),  # a chunk of no image
])
async def test_a_chunk_out_of_place_ends_the_stream_and_leaves_no_file(tmp_path: Path, bad) -> None:
    db = tmp_path / "state.db"
    got: list[Message] = []
    reader = FrameReader(got.extend, "m1", images=db)
    eof, _ = reader.feed_data(bad())
    assert eof and reader.done.done()
    assert got == [] and _leftovers(db) == []


async def test_a_master_that_did_not_offer_chunks_drops_a_stream_that_sends_them(tmp_path: Path) -> None:
    reader = FrameReader(lambda m: None, "m1")  # images=None: its 101 did not carry CHUNKS_HEADER
    eof, _ = reader.feed_data(_frame([_announce(50, 10)]))
    assert eof and reader.done.done()


async def test_an_image_with_no_room_on_disk_is_refused_and_the_stream_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    got: list[Message] = []
    reader = FrameReader(got.extend, "m1", images=db)
    huge = 1 << 62  # more than any disk here has free
    assert reader.feed_data(_frame([_announce(50, huge)]) + _chunk_frame(0, b"x" * 100)
                            + _frame([_heartbeat(1)])) == (False, b"")
    assert [m.type for m in got] == [MsgType.HEARTBEAT] and _leftovers(db) == []
    # The next image (the leader tries again, say after space was freed) is taken.
    reader.feed_data(_frame([_announce(51, 3)]) + _chunk_frame(0, b"abc"))
    assert got[-1].snapshot is not None and got[-1].snapshot.data.read() == b"abc"


async def test_a_disk_that_fills_up_mid_image_drops_it_and_keeps_the_stream(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "state.db"
    receiver = ImageReceiver(db, "m1")
    receiver.start(_announce(50, 20))
    real_write = os.write

    def full(fd: int, data) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(image_mod.os, "write", full)
    assert receiver.chunk(0, memoryview(b"x" * 10)) is None
    monkeypatch.setattr(image_mod.os, "write", real_write)
    assert receiver.chunk(10, memoryview(b"y" * 10)) is None  # the rest of that image is dropped quietly
    assert _leftovers(db) == []


async def _peer(tmp_path: Path, *, offers_chunks: bool):
    """A master's receiving end of the raft stream, as ha.py serves it; messages land in a list."""
    got: list[Message] = []
    db = tmp_path / "peer" / "state.db"
    db.parent.mkdir()
    counts = TransferCounts()

    async def raft(request: web.Request) -> web.StreamResponse:
        headers = {"Connection": "Upgrade", "Upgrade": "tcp"}
        if offers_chunks:
            headers[CHUNKS_HEADER] = "1"
        resp = web.StreamResponse(status=101, headers=headers)
        await resp.prepare(request)
        reader = FrameReader(got.extend, "m1", images=db if offers_chunks else None, counts=counts)
        request.protocol.set_parser(reader)  # type: ignore[union-attr,arg-type]
        await reader.done
        return resp

    app = web.Application()
    app.router.add_get(RAFT_PATH, raft)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}", got, counts


async def _until(pred, what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("offers_chunks", [True, False])
async def test_the_sender_streams_a_file_or_sends_it_whole_to_a_master_from_before_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offers_chunks: bool) -> None:
    monkeypatch.setattr("dcosd.master.replog.transport.CHUNK_SIZE", 64 * 1024)
    runner, url, got, counts = await _peer(tmp_path, offers_chunks=offers_chunks)
    sender = HttpTransport({"m1": "http://127.0.0.1:1", "m2": url}, secret=lambda: "s")
    try:
        sender.start("m1")
        content = random.Random(5).randbytes(1_000_000)
        path = tmp_path / "state.db.snapshot-80"
        path.write_bytes(content)
        snap = Message(MsgType.SNAPSHOT, "m1", "m2", 5, snapshot=Snapshot(SnapshotMeta(80, 4), ImageFile(path, len(content))))
        await _until(lambda: sender.reachable["m2"], "the stream to m2")
        sender.send([snap])
        sender.send([_heartbeat(1)])  # not held up behind the image
        await _until(lambda: any(m.type == MsgType.SNAPSHOT for m in got), "the snapshot at m2")
        received = next(m for m in got if m.type == MsgType.SNAPSHOT)
        assert received.snapshot is not None and received.snapshot.meta == SnapshotMeta(80, 4)
        if offers_chunks:
            assert isinstance(received.snapshot.data, ImageFile)
            assert received.snapshot.data.read() == content
            # The heartbeat sent after the snapshot arrived before the image was whole.
            assert [m.type for m in got] == [MsgType.HEARTBEAT, MsgType.SNAPSHOT]
            await _until(lambda: sender.images.sent == 1, "the sender to count it")
            assert sender.images.bytes_sent == counts.bytes_received == len(content)
            assert (counts.received, counts.receive_failures, sender.images.send_failures) == (1, 0, 0)
        else:
            assert received.snapshot.data == content  # bytes, in the message, as older masters expect
            assert [m.type for m in got] == [MsgType.SNAPSHOT, MsgType.HEARTBEAT]
    finally:
        await sender.stop()
        await runner.cleanup()


async def test_the_same_image_is_not_started_again_on_a_stream_while_it_is_fresh(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The core resends its snapshot every ~0.5 s until the follower answers; a large image takes
    longer than that to cross. A resend of the image being sent (or just sent) is dropped; a newer
    image goes; and the same image goes again once RESEND_IMAGE_AFTER has passed."""
    monkeypatch.setattr("dcosd.master.replog.transport.CHUNK_SIZE", 16 * 1024)
    announced: list[int] = []
    real_start = ImageReceiver.start

    def counting_start(self: ImageReceiver, m: Message) -> None:
        assert m.snapshot is not None
        announced.append(m.snapshot.meta.index)
        real_start(self, m)

    monkeypatch.setattr(ImageReceiver, "start", counting_start)
    runner, url, got, _ = await _peer(tmp_path, offers_chunks=True)
    sender = HttpTransport({"m1": "http://127.0.0.1:1", "m2": url}, secret=lambda: "s")

    def snapshot(index: int, content: bytes) -> Message:
        path = tmp_path / f"state.db.snapshot-{index}"
        path.write_bytes(content)
        return Message(MsgType.SNAPSHOT, "m1", "m2", 5,
                       snapshot=Snapshot(SnapshotMeta(index, 4), ImageFile(path, len(content))))

    def arrived() -> list[int]:
        return [m.snapshot.meta.index for m in got if m.snapshot is not None]

    try:
        sender.start("m1")
        await _until(lambda: sender.reachable["m2"], "the stream to m2")
        s80 = snapshot(80, random.Random(1).randbytes(300_000))
        sender.send([s80])
        sender.send([s80])  # the core again, while the first is crossing
        await _until(lambda: arrived() == [80], "the image at m2")
        sender.send([s80])  # and once more, just after
        sender.send([snapshot(81, b"a newer image")])
        await _until(lambda: arrived() == [80, 81], "the newer image at m2")
        assert announced == [80, 81]
        monkeypatch.setattr("dcosd.master.replog.transport.RESEND_IMAGE_AFTER", 0.0)
        sender.send([snapshot(81, b"a newer image")])
        await _until(lambda: arrived() == [80, 81, 81], "the image sent again")
        assert announced == [80, 81, 81]
    finally:
        await sender.stop()
        await runner.cleanup()
