"""The master's SQLite store: one writer thread with group commit, readers on the loop.

Writes are commands (see machine.py). ``propose()`` hands a command to the
writer thread, which takes every command waiting, and in ONE transaction
appends each to the ``log`` table and applies it (each under its own
savepoint, so one refused command does not undo its neighbours), then commits
with a full fsync. Only then are the callers' futures resolved: nothing is
acted on before it is durably recorded, and a kill -9 at any point loses
nothing that was acknowledged.

Reads use a separate connection on the event loop thread; WAL lets them run
beside the writer, and since futures resolve after COMMIT a caller always
reads its own writes.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from pathlib import Path
from typing import Any

import apsw

from dcosd.errors import DcosdError, StorageError
from dcosd.master.state import machine
from dcosd.master.state.checkpoint import Checkpointer
from dcosd.master.state.migrations import LATEST, MIGRATIONS

# Keep this many applied log entries; older ones are deleted (the replicated log
# of a later issue replaces this with snapshots).
LOG_RETAIN = 10_000
_MAX_BATCH = 512
# Listeners that rebuild a derived view (DNS records, the VIP table) from the state gather a burst
# of commits for this long into one rebuild: well inside their one-second promises, and it keeps a
# full read of the state from running once per commit under load.
COALESCE_SECONDS = 0.1


def open_db(path: Path, *, readonly: bool = False) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    try:
        db = apsw.Connection(str(path), flags=flags)
        db.setbusytimeout(5000)
        if not readonly:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
    except apsw.Error as exc:
        raise StorageError(f"cannot open state database {path}: {exc}") from exc
    return db


def rollback(db: apsw.Connection) -> None:
    """Undo the open transaction, if there still is one. On some errors (a full disk, I/O) SQLite has
    rolled it back already, and a ROLLBACK then raises "no transaction is active" in place of the
    error that says what went wrong."""
    if not db.getautocommit():
        db.execute("ROLLBACK")


def why_not_written(exc: apsw.Error) -> str:
    """An SQLite write error as an operator should read it."""
    if isinstance(exc, apsw.FullError):
        return f"the disk is full ({type(exc).__name__}: {exc}); free space there"
    return f"{type(exc).__name__}: {exc}"


def migrate(db: apsw.Connection) -> int:
    version = next(iter(db.execute("PRAGMA user_version")))[0]
    if version > LATEST:
        raise StorageError(f"state database is at schema {version}, newer than this dcosd ({LATEST}); upgrade dcosd")
    if version < LATEST:
        with db:
            for n in range(version, LATEST):
                db.execute(MIGRATIONS[n])
            db.execute(f"PRAGMA user_version = {LATEST}")
    return LATEST


class _Pending:
    __slots__ = ("command", "future", "loop")

    def __init__(self, command: dict[str, Any], future: asyncio.Future, loop: asyncio.AbstractEventLoop) -> None:
        self.command = command
        self.future = future
        self.loop = loop


class Reads:
    """Reads of the state on the event loop, through the store's own reader connection (WAL)."""

    reader: apsw.Connection

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return list(self.reader.execute(sql, args))
        except apsw.Error as exc:
            raise StorageError(f"cannot read state: {exc}") from exc

    def query_one(self, sql: str, args: tuple = ()) -> tuple | None:
        rows = self.query(sql, args)
        return rows[0] if rows else None


class StateStore(Reads):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = open_db(self.path)
        migrate(self._writer)
        self.reader = open_db(self.path)
        self._checkpointer = Checkpointer(self.path, self._writer)
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="state-writer", daemon=True)
        self._thread.start()
        self._closed = False
        # Callbacks run on the loop after each committed batch: (command, result) pairs.
        self.listeners: list[Any] = []

    # -- writes --------------------------------------------------------------------
    async def propose(self, command: dict[str, Any], *, outcome_only: bool = False) -> Any:
        """Record and apply one command; returns apply()'s result once durable. (``outcome_only``, a
        hint for the replicated store, changes nothing here: the answer comes after the commit.)"""
        if self._closed:
            raise StorageError("state store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._queue.put(_Pending(command, fut, loop))
        return await fut

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._commit_batch(batch)

    def _commit_batch(self, batch: list[_Pending]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        db = self._writer
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                last = next(iter(db.execute("SELECT COALESCE(MAX(idx), 0) FROM log")))[0]
                for p in batch:
                    db.execute("SAVEPOINT cmd")
                    try:
                        result = machine.apply(db, p.command)
                        last += 1
                        db.execute("INSERT INTO log (idx, term, command) VALUES (?, ?, ?)",
                                   (last, 1, json.dumps(p.command)))
                        db.execute("RELEASE cmd")
                        outcomes.append((True, result))
                    except DcosdError as exc:
                        db.execute("ROLLBACK TO cmd")
                        db.execute("RELEASE cmd")
                        outcomes.append((False, exc))
                if last % 1000 < len(batch):
                    db.execute("DELETE FROM log WHERE idx <= ?", (last - LOG_RETAIN,))
                db.execute("COMMIT")
            except BaseException:
                rollback(db)
                raise
            self._checkpointer.maybe_inline()
        except apsw.Error as exc:
            err = StorageError(f"cannot write state in {self.path}: {why_not_written(exc)}; nothing was changed")
            outcomes = [(False, err)] * len(batch)
        except Exception as exc:  # a bug in apply(): refuse the batch rather than kill the writer
            err = StorageError(f"internal error applying a command: {type(exc).__name__}: {exc}")
            outcomes = [(False, err)] * len(batch)
        for p, (ok, value) in zip(batch, outcomes):
            p.loop.call_soon_threadsafe(self._resolve, p, ok, value)

    def _resolve(self, p: _Pending, ok: bool, value: Any) -> None:
        if ok:
            for listener in self.listeners:
                listener(p.command, value)
        if p.future.done():
            return
        if ok:
            p.future.set_result(value)
        else:
            p.future.set_exception(value)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._checkpointer.close()
        self._writer.close()
        self.reader.close()
