"""Snapshot images as files: what stands for an image's bytes in ``Snapshot.data`` inside a master,
and the receiving end of an image that arrives in chunks (wire.py's chunk frames).

An image is the whole replicated state: tens of MB at tens of thousands of tasks, and unbounded in
principle. As bytes it was held in memory by every master for as long as it was the latest
snapshot (the core keeps it, to send to a follower that falls too far behind), copied twice more to
be framed and sent, gathered whole in the receiver's buffer, and stored a second time as a row of
the database; it travelled as one frame, which held up the heartbeats behind it on a slow link and
could not exceed 2 GiB. As a file, the core carries an ``ImageFile``; the sender (transport.py)
streams it in ``CHUNK_SIZE`` pieces between other frames, waiting for the socket to drain; the
receiver writes the pieces to a file as they come (``ImageReceiver``); the storage moves that file
into place when it installs the snapshot (storage.py). Memory per transfer is one chunk.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .messages import Message, Snapshot
from .wire import ImageToFollow, WireError

log = logging.getLogger(__name__)

CHUNK_SIZE = int(os.environ.get("DCOSD_RAFT_SNAPSHOT_CHUNK", str(1 << 20)))
RECEIVED = "snap-recv-"  # <db name>.snap-recv-<index>-<term>-<n>, with .part while it is arriving
_PART = ".part"
_serial = itertools.count(1)


@dataclass
class TransferCounts:
    """Snapshot images this master sent and received in chunks, since it started (/metrics/snapshot,
    as etcd counts its snapshot sends and receives): a follower being rebuilt, or one that never
    manages to take an image (its disk), shows here."""

    sent: int = 0
    send_failures: int = 0  # the stream ended or the file could not be read before all of it went
    bytes_sent: int = 0
    received: int = 0
    receive_failures: int = 0  # dropped unfinished (stream ended, newer image, no room, a disk error)
    bytes_received: int = 0


class ImageFile:
    """An image on disk, ``size`` bytes. Shared by reference: when the storage moves a received image
    into place it updates ``path`` here, and every holder (the core's snapshot) follows."""

    __slots__ = ("path", "size")

    def __init__(self, path: Path, size: int) -> None:
        self.path = Path(path)
        self.size = size

    def read(self) -> bytes:
        """The whole image: only for a master that takes no chunks (one from before them)."""
        return self.path.read_bytes()

    def __repr__(self) -> str:
        return f"ImageFile({str(self.path)!r}, {self.size})"


def image_size(data: Any) -> int:
    return data.size if isinstance(data, (ImageFile, ImageToFollow)) else len(data)


def received_index(db_path: Path, p: Path) -> int | None:
    """The snapshot index of a received image's file name (complete ones only), else None."""
    prefix = f"{db_path.name}.{RECEIVED}"
    if not p.name.startswith(prefix) or p.name.endswith(_PART):
        return None
    index = p.name[len(prefix):].split("-", 1)[0]
    return int(index) if index.isdigit() else None


class ImageReceiver:
    """One raft stream's incoming image: the message that announces it, then its chunks, written to a
    file beside the database; the message is handed on, with an ``ImageFile``, once all of it came.
    A stream that ends, or a newer announcement, drops an unfinished image (the leader sends its
    snapshot again while the follower has not answered)."""

    def __init__(self, db_path: Path, peer: str, counts: TransferCounts | None = None) -> None:
        self._db = Path(db_path)
        self._peer = peer
        self._counts = counts if counts is not None else TransferCounts()
        self._message: Message | None = None
        self._path: Path | None = None
        self._fd = -1
        self._size = 0
        self._offset = 0
        self._skipping = False  # this image failed here (disk): its remaining chunks are dropped
        self.chunks = 0

    def start(self, m: Message) -> None:
        assert m.snapshot is not None and isinstance(m.snapshot.data, ImageToFollow)
        self.abort()
        meta, size = m.snapshot.meta, m.snapshot.data.size
        path = self._db.with_name(f"{self._db.name}.{RECEIVED}{meta.index}-{meta.term}-{next(_serial)}{_PART}")
        try:
            free = os.statvfs(self._db.parent)
            if free.f_bavail * free.f_frsize < size:
                raise OSError(f"{free.f_bavail * free.f_frsize} bytes free in {self._db.parent}, "
                              f"the image needs {size}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            log.error("cannot receive the snapshot at index %d from master %s: %s", meta.index, self._peer, exc)
            self._counts.receive_failures += 1
            self._skipping = True
            return
        self._message, self._path, self._fd, self._size, self._offset = m, path, fd, size, 0
        self._skipping = False
        self.chunks = 0

    def chunk(self, offset: int, data: memoryview) -> Message | None:
        """Write one chunk; the announcing message (now with its ImageFile) once the image is whole."""
        if self._message is None:
            if self._skipping:
                return None
            raise WireError("a snapshot chunk with no snapshot announced")
        if offset != self._offset or offset + len(data) > self._size:
            raise WireError(f"snapshot chunk at {offset} (+{len(data)}): expected {self._offset} of {self._size}")
        try:
            view = data
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            log.error("cannot receive the snapshot from master %s: %s", self._peer, exc)
            self.abort()
            self._skipping = True
            return None
        self._offset += len(data)
        self.chunks += 1
        if self._offset < self._size:
            return None
        return self._finish()

    def _finish(self) -> Message | None:
        m, part = self._message, self._path
        assert m is not None and m.snapshot is not None and part is not None
        final = part.with_name(part.name[: -len(_PART)])
        try:
            os.close(self._fd)
            self._fd = -1
            os.rename(part, final)  # made durable when the storage installs it (or removed, unused)
        except OSError as exc:
            log.error("cannot receive the snapshot from master %s: %s", self._peer, exc)
            self.abort()
            return None
        self._message = self._path = None
        self._counts.received += 1
        self._counts.bytes_received += self._size
        log.info("snapshot at index %d received from master %s: %d bytes in %d chunks",
                 m.snapshot.meta.index, self._peer, self._size, self.chunks)
        return dataclasses.replace(m, snapshot=Snapshot(m.snapshot.meta, ImageFile(final, self._size)))

    def finish_empty(self) -> Message | None:
        """An announced image of 0 bytes is whole at once (no chunk follows)."""
        if self._message is not None and self._size == 0:
            return self._finish()
        return None

    def abort(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1
        if self._path is not None:
            self._counts.receive_failures += 1
            self._path.unlink(missing_ok=True)
        self._message = self._path = None
