"""Nothing acknowledged is lost: kill -9 of a writer mid-stream, and a full disk."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dcosd.errors import StorageError
from dcosd.master.state import views
from dcosd.master.state.store import StateStore

WRITER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from dcosd.master.state.store import StateStore

    async def main():
        store = StateStore(Path(sys.argv[1]))
        n = 0
        async def one(i):
            spec = {"task_id": f"t{i}", "name": "t", "argv": ["true"], "resources": {"cpus": 0.1, "mem": 32}}
            await store.propose({"type": "task_submit", "time": 1.0, "spec": spec})
            print(f"t{i}", flush=True)
        while True:
            await asyncio.gather(*(one(n + k) for k in range(8)))
            n += 8
    asyncio.run(main())
""")


def test_kill9_of_the_writer_loses_no_acknowledged_command(tmp_path: Path):
    db = tmp_path / "state.db"
    acked: list[str] = []
    with subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        try:
            while len(acked) < 400:
                line = proc.stdout.readline()
                assert line, "writer died"
                acked.append(line.strip())
        finally:
            proc.kill()
            proc.wait()
        rest = proc.stdout.read().split()
    store = StateStore(db)
    try:
        present = {q["id"] for q in views.queued_tasks(store)}
    finally:
        store.close()
    assert set(acked + rest) <= present
    assert len(present) >= 400


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
async def test_full_disk_is_a_clear_error_and_keeps_committed_state(tmp_path: Path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], check=True)
    try:
        store = StateStore(mnt / "state.db")
        await store.propose({"type": "task_submit", "time": 1.0,
                             "spec": {"task_id": "kept", "name": "k", "argv": ["true"], "resources": {}}})
        big = "x" * 60_000
        error = None
        for i in range(100):
            try:
                await store.propose({"type": "task_submit", "time": 1.0, "spec": {
                    "task_id": f"f{i}", "name": "f", "argv": ["true"], "resources": {}, "env": {"PAD": big}}})
            except StorageError as exc:
                error = exc
                break
        assert error is not None, "the disk never filled"
        assert "nothing was changed" in str(error)
        # SQLite rolled the transaction back itself: what the operator reads is the full disk, not the
        # "no transaction is active" of a second rollback.
        assert f"cannot write state in {mnt / 'state.db'}: the disk is full" in str(error), error
        assert views.task(store, "kept") is not None
        store.close()
        reopened = StateStore(mnt / "state.db")
        assert views.task(reopened, "kept") is not None
        reopened.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
