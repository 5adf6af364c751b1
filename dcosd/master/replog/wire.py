"""The binary encoding of Raft messages between masters. Pure: bytes in, messages out.

A frame is a version byte followed by messages, each a fixed header (struct ``_HEAD``), the sender
and receiver ids, its entries and, for SNAPSHOT, the image. Entry data (a command's JSON) and
snapshot images travel as raw bytes: nothing is escaped, base64-encoded or parsed twice, which is
what made the JSON batches of the first transport cost more CPU than the log writes themselves.

    frame   = VERSION:u8  message*
    message = type:u8 flags:u8 len(frm):u16 len(to):u16
              term log_term index commit reject_hint seq :u64  n_entries:u32
              frm to  entry*n_entries  [snapshot]
    entry   = term index :u64  kind:u8  len:u32  data
    snapshot= index term :u64  len:u64  data            (only when flags & SNAPSHOT)

A snapshot image can instead follow its message in chunk frames (flags & STREAMED: ``len`` is the
image's size and no data follows in the message; the receiver advertised that it takes them, see
transport.py). Chunks go on the same stream, in order, interleaved with message frames:

    chunk   = CHUNK:u8  offset:u64  data                (bytes [offset, offset + len(data)) of the image)

All integers little-endian. A frame that does not parse raises ``WireError`` (never a partial batch).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .messages import Entry, EntryKind, Message, MsgType, Snapshot, SnapshotMeta

VERSION = 1
CHUNK = 2  # the first byte of a chunk frame; masters that do not take chunks are never sent one
_REJECT, _REJOIN, _SNAPSHOT, _TRANSFER, _STREAMED = 1, 2, 4, 8, 16
_OFFSET = struct.Struct("<Q")
_HEAD = struct.Struct("<BBHHQQQQQQI")
_ENTRY = struct.Struct("<QQBI")
_SNAP = struct.Struct("<QQQ")
_TYPES = {int(t): t for t in MsgType}
_KINDS = {int(k): k for k in EntryKind}


class WireError(ValueError):
    """A frame from a peer that is not a valid encoding (a bug, a version mismatch, or not a peer)."""


@dataclass(frozen=True, slots=True)
class ImageToFollow:
    """A snapshot's ``data`` standing for an image of ``size`` bytes that travels in chunk frames."""

    size: int


def encode_frame(messages: list[Message]) -> bytes:
    out = [bytes((VERSION,))]
    for m in messages:
        frm, to = m.frm.encode(), m.to.encode()
        streamed = m.snapshot is not None and isinstance(m.snapshot.data, ImageToFollow)
        flags = ((_REJECT if m.reject else 0) | (_REJOIN if m.rejoin else 0) | (_SNAPSHOT if m.snapshot else 0)
                 | (_TRANSFER if m.transfer else 0) | (_STREAMED if streamed else 0))
        out.append(_HEAD.pack(int(m.type), flags, len(frm), len(to), m.term, m.log_term, m.index, m.commit,
                              m.reject_hint, m.seq, len(m.entries)))
        out.append(frm)
        out.append(to)
        for e in m.entries:
            out.append(_ENTRY.pack(e.term, e.index, int(e.kind), len(e.data)))
            out.append(e.data)
        if m.snapshot is not None:
            data = m.snapshot.data
            if streamed:
                out.append(_SNAP.pack(m.snapshot.meta.index, m.snapshot.meta.term, data.size))
            else:
                out.append(_SNAP.pack(m.snapshot.meta.index, m.snapshot.meta.term, len(data)))
                out.append(data)
    return b"".join(out)


def encode_chunk(offset: int, data: bytes) -> bytes:
    return bytes((CHUNK,)) + _OFFSET.pack(offset) + data


def is_chunk(buf: bytes | bytearray | memoryview) -> bool:
    return len(buf) > 0 and buf[0] == CHUNK


def decode_chunk(buf: bytes | bytearray | memoryview) -> tuple[int, memoryview]:
    """(offset, data) of a chunk frame; the data is a view into ``buf``."""
    view = memoryview(buf)
    if len(view) < 1 + _OFFSET.size or view[0] != CHUNK:
        raise WireError("malformed snapshot chunk frame")
    return _OFFSET.unpack_from(view, 1)[0], view[1 + _OFFSET.size:]


def decode_frame(buf: bytes) -> list[Message]:
    try:
        return _decode(memoryview(buf))
    except (struct.error, KeyError, UnicodeDecodeError, IndexError) as exc:
        raise WireError(f"malformed raft frame ({type(exc).__name__}: {exc})") from None


def _decode(buf: memoryview) -> list[Message]:
    if len(buf) < 1 or buf[0] != VERSION:
        raise WireError(f"unknown raft frame version {buf[0] if len(buf) else None} (this master speaks {VERSION})")
    out: list[Message] = []
    pos, end = 1, len(buf)
    head, entry, snap = _HEAD.unpack_from, _ENTRY.unpack_from, _SNAP.unpack_from
    while pos < end:
        t, flags, lf, lt, term, log_term, index, commit, hint, seq, n = head(buf, pos)
        pos += _HEAD.size
        frm = str(buf[pos:pos + lf], "utf-8")
        pos += lf
        to = str(buf[pos:pos + lt], "utf-8")
        pos += lt
        entries = []
        for _ in range(n):
            et, ei, kind, ln = entry(buf, pos)
            pos += _ENTRY.size
            if pos + ln > end:
                raise WireError("raft frame ends inside an entry")
            entries.append(Entry(et, ei, bytes(buf[pos:pos + ln]), _KINDS[kind]))
            pos += ln
        snapshot = None
        if flags & _SNAPSHOT and flags & _STREAMED:
            si, st, ln = snap(buf, pos)
            pos += _SNAP.size
            snapshot = Snapshot(SnapshotMeta(si, st), ImageToFollow(ln))
        elif flags & _SNAPSHOT:
            si, st, ln = snap(buf, pos)
            pos += _SNAP.size
            if pos + ln > end:
                raise WireError("raft frame ends inside a snapshot")
            snapshot = Snapshot(SnapshotMeta(si, st), bytes(buf[pos:pos + ln]))
            pos += ln
        if pos > end:
            raise WireError("raft frame ends inside a message")
        out.append(Message(_TYPES[t], frm, to, term, log_term=log_term, index=index, entries=tuple(entries),
                           commit=commit, reject=bool(flags & _REJECT), reject_hint=hint, seq=seq,
                           snapshot=snapshot, rejoin=bool(flags & _REJOIN),
                           transfer=bool(flags & _TRANSFER)))
    return out
