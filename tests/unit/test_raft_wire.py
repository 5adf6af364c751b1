"""The binary encoding of Raft messages between masters (replog/wire.py)."""

from __future__ import annotations

import random

import pytest

from dcosd.master.replog.messages import Entry, EntryKind, Message, MsgType, Snapshot, SnapshotMeta
from dcosd.master.replog.wire import (
    CHUNK,
    VERSION,
    ImageToFollow,
    WireError,
    decode_chunk,
    decode_frame,
    encode_chunk,
    encode_frame,
    is_chunk,
)


def _random_message(rng: random.Random) -> Message:
    t = rng.choice(list(MsgType))
    entries = tuple(Entry(rng.randrange(1 << 40), rng.randrange(1 << 40), rng.randbytes(rng.randrange(0, 400)),
                          rng.choice(list(EntryKind))) for _ in range(rng.choice((0, 0, 1, 3, 64))))
    snapshot = None
    if rng.random() < 0.1:
        snapshot = Snapshot(SnapshotMeta(rng.randrange(1 << 40), rng.randrange(1 << 20)), rng.randbytes(rng.randrange(0, 5000)))
    elif rng.random() < 0.05:  # an image that follows in chunk frames: only its size travels here
        snapshot = Snapshot(SnapshotMeta(rng.randrange(1 << 40), rng.randrange(1 << 20)), ImageToFollow(rng.randrange(1 << 45)))
    ids = ["m1", "m2", "master-é", "x" * 200]
    return Message(t, rng.choice(ids), rng.choice(ids), rng.randrange(1 << 50), log_term=rng.randrange(1 << 30),
                   index=rng.randrange(1 << 50), entries=entries, commit=rng.randrange(1 << 50),
                   reject=rng.random() < 0.3, reject_hint=rng.randrange(1 << 40), seq=rng.randrange(1 << 60),
                   snapshot=snapshot, rejoin=rng.random() < 0.2, transfer=rng.random() < 0.2)


@pytest.mark.parametrize("seed", range(200))
def test_every_field_survives_a_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    batch = [_random_message(rng) for _ in range(rng.randrange(1, 20))]
    assert decode_frame(encode_frame(batch)) == batch


def test_an_empty_batch_is_a_frame_of_no_messages() -> None:
    assert decode_frame(encode_frame([])) == []


def test_entry_data_is_carried_as_raw_bytes_not_escaped() -> None:
    command = b'{"type": "task_submit", "spec": {"argv": ["echo", "\\"quoted\\""]}}'
    frame = encode_frame([Message(MsgType.APPEND, "m1", "m2", 3, entries=(Entry(3, 7, command),))])
    assert command in frame


@pytest.mark.parametrize("seed", range(50))
def test_every_truncation_is_refused_whole(seed: int) -> None:
    rng = random.Random(seed)
    frame = encode_frame([_random_message(rng) for _ in range(3)])
    cut = rng.randrange(1, len(frame))
    try:
        got = decode_frame(frame[:cut])
    except WireError:
        return
    # A cut exactly between two messages is a valid shorter frame; anything else must not parse.
    assert encode_frame(got) == frame[:cut]


def test_a_frame_of_another_version_is_refused_with_the_reason() -> None:
    frame = bytearray(encode_frame([Message(MsgType.HEARTBEAT, "m1", "m2", 1)]))
    frame[0] = VERSION + 1
    with pytest.raises(WireError, match="version"):
        decode_frame(bytes(frame))
    with pytest.raises(WireError):
        decode_frame(b"")


def test_garbage_is_a_wire_error_never_another_exception() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        junk = bytes((VERSION,)) + rng.randbytes(rng.randrange(0, 120))
        try:
            decode_frame(junk)
        except WireError:
            pass


def test_an_image_to_follow_is_announced_by_its_size_alone() -> None:
    m = Message(MsgType.SNAPSHOT, "m1", "m2", 4, snapshot=Snapshot(SnapshotMeta(90, 3), ImageToFollow(5 << 30)))
    frame = encode_frame([m])
    assert len(frame) < 200  # 5 GiB announced, nothing of it in the frame
    assert decode_frame(frame) == [m]


@pytest.mark.parametrize("offset,data", [(0, b""), (0, b"x"), (123456789, bytes(range(256)) * 40)])
def test_a_chunk_carries_its_offset_and_bytes(offset: int, data: bytes) -> None:
    frame = encode_chunk(offset, data)
    assert is_chunk(frame) and frame[0] == CHUNK != VERSION
    got_offset, got = decode_chunk(frame)
    assert (got_offset, bytes(got)) == (offset, data)
    assert not is_chunk(encode_frame([Message(MsgType.HEARTBEAT, "m1", "m2", 1)]))
    with pytest.raises(WireError):  # a chunk is not a frame of messages, nor the reverse
        decode_frame(frame)
    with pytest.raises(WireError):
        decode_chunk(encode_frame([Message(MsgType.HEARTBEAT, "m1", "m2", 1)]))


def test_a_chunk_frame_cut_short_is_a_wire_error() -> None:
    frame = encode_chunk(7, b"abc")
    for n in range(0, 9):
        with pytest.raises(WireError):
            decode_chunk(frame[:n])
