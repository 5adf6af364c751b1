"""WAL checkpoints run on their own thread, and the writer still bounds the WAL when that thread lags.

SQLite's automatic checkpoint is replaced by the Checkpointer's WAL hook, so the main database
file only grows when one of our checkpoints copies pages into it: that is what these tests watch.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from dcosd.master.state import checkpoint
from dcosd.master.state.store import StateStore
from tests.harness.cluster import wait_for


async def _submit(store: StateStore, n: int) -> None:
    for start in range(0, n, 50):
        await asyncio.gather(*(store.propose({"type": "task_submit", "time": 1.0, "spec": {
            "task_id": f"t{i}", "name": "t", "argv": ["x" * 2000], "resources": {"cpus": 0.1, "mem": 32}}})
            for i in range(start, start + 50)))


async def test_a_background_thread_checkpoints_the_wal(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = StateStore(db)
    try:
        before = db.stat().st_size
        checkpoints = [t for t in threading.enumerate() if t.name == "wal-checkpoint"]
        assert checkpoints, "no checkpoint thread"
        await _submit(store, 3000)  # several thousand WAL pages
        wait_for(lambda: db.stat().st_size > before + 4_000_000, timeout=10, what="pages checkpointed into the db")
    finally:
        store.close()


async def test_the_writer_checkpoints_itself_when_the_thread_falls_behind(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "BACKGROUND_PAGES", 10**9)  # the thread is never woken
    monkeypatch.setattr(checkpoint, "INLINE_PAGES", 500)
    db = tmp_path / "state.db"
    store = StateStore(db)
    try:
        before = db.stat().st_size
        await _submit(store, 1500)
        assert db.stat().st_size > before + 2_000_000  # checkpointed inline, by the time the writes returned
        wal = Path(str(db) + "-wal").stat().st_size
        assert wal < 4 * 500 * 4200, f"the WAL grew to {wal} bytes past the inline bound"
    finally:
        store.close()


async def test_without_the_checkpointer_the_db_file_would_not_grow(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The control for the two tests above: with neither the thread nor the inline fallback
    # checkpointing, the pages stay in the WAL (so growth of the db file is the checkpointer's doing).
    monkeypatch.setattr(checkpoint, "BACKGROUND_PAGES", 10**9)
    monkeypatch.setattr(checkpoint, "INLINE_PAGES", 10**9)
    db = tmp_path / "state.db"
    store = StateStore(db)
    try:
        before = db.stat().st_size
        await _submit(store, 1500)
        assert db.stat().st_size == before
    finally:
        store.close()
