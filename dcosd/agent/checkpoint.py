"""The agent's own SQLite checkpoint: its id, the tasks it runs, status updates not yet acknowledged.

All access goes through one worker thread (apsw connections are used by one
thread at a time, and an fsync must never stall the event loop). A status update
is written here, together with the task's new state, before it is sent: an agent
killed at any point re-sends it after restart, and drops it only once the master
has acknowledged it.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import apsw

from dcosd.errors import StorageError

T = TypeVar("T")

_SCHEMA = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        resources TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE updates (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        task_id TEXT NOT NULL,
        body TEXT NOT NULL
    );
    """,
]


class Checkpoint:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-db")
        self._db: apsw.Connection | None = None

    async def _run(self, fn: Callable[[apsw.Connection], T]) -> T:
        def call() -> T:
            try:
                if self._db is None:
                    self._db = self._open()
                return fn(self._db)
            except apsw.Error as exc:
                raise StorageError(f"agent checkpoint {self.path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _open(self) -> apsw.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = apsw.Connection(str(self.path))
        db.setbusytimeout(5000)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        version = next(iter(db.execute("PRAGMA user_version")))[0]
        with db:
            for n in range(version, len(_SCHEMA)):
                db.execute(_SCHEMA[n])
            db.execute(f"PRAGMA user_version = {len(_SCHEMA)}")
        return db

    async def get_meta(self, key: str) -> str | None:
        def q(db: apsw.Connection) -> str | None:
            for (v,) in db.execute("SELECT value FROM meta WHERE key = ?", (key,)):
                return v
            return None

        return await self._run(q)

    async def set_meta(self, key: str, value: str) -> None:
        await self._run(lambda db: db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)))

    async def load_tasks(self) -> list[dict[str, Any]]:
        def q(db: apsw.Connection) -> list[dict[str, Any]]:
            return [{"task_id": t, "spec": json.loads(s), "resources": json.loads(r), "state": st}
                    for t, s, r, st in db.execute("SELECT task_id, spec, resources, state FROM tasks")]

        return await self._run(q)

    async def add_task(self, task_id: str, spec: dict[str, Any], resources: dict[str, Any], state: str,
                       now: float) -> bool:
        """Record a task to launch; False if it is already known (a re-sent launch)."""

        def q(db: apsw.Connection) -> bool:
            with db:
                if any(db.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task_id,))):
                    return False
                db.execute("INSERT INTO tasks (task_id, spec, resources, state, updated_at) VALUES (?,?,?,?,?)",
                           (task_id, json.dumps(spec), json.dumps(resources), state, now))
                return True

        return await self._run(q)

    async def record_update(self, update: dict[str, Any]) -> None:
        """Make a status update durable together with the task's new state."""

        def q(db: apsw.Connection) -> None:
            with db:
                db.execute("INSERT INTO updates (uuid, task_id, body) VALUES (?,?,?)",
                           (update["uuid"], update["task_id"], json.dumps(update)))
                db.execute("UPDATE tasks SET state = ?, updated_at = ? WHERE task_id = ?",
                           (update["state"], update["timestamp"], update["task_id"]))

        await self._run(q)

    async def pending_updates(self, limit: int = 500) -> list[dict[str, Any]]:
        def q(db: apsw.Connection) -> list[dict[str, Any]]:
            return [json.loads(b) for (b,) in db.execute("SELECT body FROM updates ORDER BY seq LIMIT ?", (limit,))]

        return await self._run(q)

    async def ack_updates(self, uuids: list[str], terminal_states: frozenset[str]) -> None:
        """Drop acknowledged updates; forget tasks whose terminal update was acknowledged."""

        def q(db: apsw.Connection) -> None:
            with db:
                for u in uuids:
                    row = next(iter(db.execute("SELECT task_id, body FROM updates WHERE uuid = ?", (u,))), None)
                    if row is None:
                        continue
                    db.execute("DELETE FROM updates WHERE uuid = ?", (u,))
                    if json.loads(row[1])["state"] in terminal_states:
                        db.execute("DELETE FROM tasks WHERE task_id = ?", (row[0],))

        await self._run(q)

    async def close(self) -> None:
        def q(db: apsw.Connection) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            await self._run(q)
        self._pool.shutdown(wait=True)
