"""The receiving end of the masters' raft stream (replog/transport.py FrameReader): length-prefixed
frames cut anywhere by TCP come out whole and in order; anything else ends the stream."""

from __future__ import annotations

from dcosd.master.replog.messages import Entry, Message, MsgType
from dcosd.master.replog.transport import MAX_FRAME, FrameReader, _frame


def _batch(k: int) -> list[Message]:
    return [Message(MsgType.APPEND, "m1", "m2", 3, index=k, entries=(Entry(3, k + 1, b'{"type": "x"}'),)),
            Message(MsgType.HEARTBEAT, "m1", "m2", 3, commit=k, seq=k)]


async def test_frames_cut_at_every_byte_arrive_whole_and_in_order() -> None:
    got: list[list[Message]] = []
    reader = FrameReader(got.append, "m1")
    stream = b"".join(_frame(_batch(k)) for k in range(5))
    for i in range(len(stream)):  # one byte at a time: the worst TCP can do
        assert reader.feed_data(stream[i:i + 1]) == (False, b"")
    assert got == [_batch(k) for k in range(5)]
    assert not reader.done.done()
    reader.feed_eof()
    assert reader.done.done()


async def test_the_frames_one_read_completes_are_delivered_together() -> None:
    """One call per read, not per frame: the store then steps them all in one pump (shell.py step)."""
    got: list[list[Message]] = []
    reader = FrameReader(got.append, "m1")
    stream = b"".join(_frame(_batch(k)) for k in range(3))
    reader.feed_data(stream[:-1])  # the third frame is one byte short
    assert got == [_batch(0) + _batch(1)]
    reader.feed_data(stream[-1:])
    assert got == [_batch(0) + _batch(1), _batch(2)]


async def test_a_malformed_frame_ends_the_stream_without_delivering_it() -> None:
    got: list[list[Message]] = []
    reader = FrameReader(got.append, "m1")
    good = _frame(_batch(1))
    bad = (5).to_bytes(4, "little") + b"\x09junk"  # version 9: not ours
    eof, _ = reader.feed_data(good + bad + good)
    assert eof and reader.done.done()
    assert got == [_batch(1)]


async def test_an_impossible_frame_length_ends_the_stream_at_once() -> None:
    reader = FrameReader(lambda m: None, "m1")
    eof, _ = reader.feed_data((MAX_FRAME + 1).to_bytes(4, "little") + b"x" * 10)
    assert eof and reader.done.done()
