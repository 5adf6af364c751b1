"""WAL checkpoints on their own thread, off the write path.

SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages: that commit then
copies ~4 MB into the database file and fsyncs it, and every write queued behind it waits (we
measured single commits of 100 ms on the replicated path). Here the writer's WAL hook only notes
the WAL's size and wakes a thread with its own connection, which runs a PASSIVE checkpoint beside
the writer (WAL mode lets both proceed; apsw releases the GIL inside SQLite).

A passive checkpoint may never catch up with a writer that never pauses, and SQLite only rewinds the
WAL once a checkpoint is complete, so past ``INLINE_PAGES`` the writer checkpoints itself after its
next commit (``maybe_inline``), as SQLite would have.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import apsw

log = logging.getLogger(__name__)

BACKGROUND_PAGES = 1000  # SQLite's own autocheckpoint threshold
INLINE_PAGES = 8000  # ~32 MB of WAL: the background thread is not keeping up


class Checkpointer:
    def __init__(self, path: Path, writer: apsw.Connection) -> None:
        self._path = str(path)
        self._writer = writer
        self._pages = 0
        self._due = threading.Event()
        self._stopping = False
        writer.set_wal_hook(self._on_commit)  # replaces SQLite's autocheckpoint on this connection
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def _on_commit(self, db: apsw.Connection, name: str, pages: int) -> int:
        self._pages = pages
        if pages >= BACKGROUND_PAGES:
            self._due.set()
        return apsw.SQLITE_OK

    def maybe_inline(self) -> None:
        """On the writer's thread, between transactions: checkpoint here if the WAL ran away."""
        if self._pages >= INLINE_PAGES:
            self._pages = 0
            self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _run(self) -> None:
        try:
            db = apsw.Connection(self._path, flags=apsw.SQLITE_OPEN_READWRITE)
            db.setbusytimeout(5000)
        except apsw.Error as exc:
            # Not touching the writer from this thread: its own fallback (maybe_inline) bounds the WAL.
            log.warning("no background WAL checkpoints (cannot open %s: %s); the writer checkpoints every "
                        "%d pages itself", self._path, exc, INLINE_PAGES)
            return
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stopping:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except apsw.Error as exc:  # busy or I/O: the WAL grows, the writer's fallback bounds it
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            db.close()

    def close(self) -> None:
        """Stop the thread (before the writer closes; closing the last connection checkpoints)."""
        self._stopping = True
        self._due.set()
        self._thread.join(timeout=10)
