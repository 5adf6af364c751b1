"""Snapshots of a master's own state, taken beside the writer (replog/storage.py), on real SQLite files.

The image is of the state pinned at the snapshot's index even while the writer goes on; it becomes
durable as a file before the database points at it, so a crash at any step leaves either the old
snapshot with its whole log or the new one.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import apsw
import pytest

from dcosd.errors import StorageError
from dcosd.master.replog.image import ImageFile
from dcosd.master.replog.messages import Entry, HardState, Ready, Snapshot, SnapshotMeta
from dcosd.master.replog.storage import RaftStorage
from dcosd.master.state.store import migrate, open_db
from tests.harness.cluster import wait_for
from tests.harness.ha_cluster import HaCluster


def _submit(i: int, term: int = 1) -> Entry:
    spec = {"task_id": f"t{i}", "name": "t", "argv": ["true"], "resources": {"cpus": 0.1, "mem": 32}}
    return Entry(term, i, json.dumps({"type": "task_submit", "time": 1.0, "spec": spec}).encode())


def _write(storage: RaftStorage, first: int, last: int) -> None:
    """Append and apply entries first..last (committed), as a Ready would."""
    entries = [_submit(i) for i in range(first, last + 1)]
    storage.write_ready(Ready(hard_state=HardState(1, "m1", last), entries=entries, committed_entries=entries))


def _queued(path: Path) -> int:
    db = apsw.Connection(str(path))
    try:
        return next(iter(db.execute("SELECT COUNT(*) FROM queue")))[0]
    finally:
        db.close()


@pytest.fixture
def storage(tmp_path: Path):
    db = open_db(tmp_path / "state.db")
    migrate(db)
    s = RaftStorage(db, tmp_path / "state.db")
    yield s
    db.close()


def _reopen(tmp_path: Path) -> RaftStorage:
    db = open_db(tmp_path / "state.db")
    return RaftStorage(db, tmp_path / "state.db")


def _save(storage: RaftStorage, index: int) -> bytes:
    """Image the state at ``index`` and save it as the image of that index, as the shell does."""
    return storage.save_image_file(index, storage.image_file_of(storage.pin_state(), index)).read()


def test_the_image_is_the_pinned_state_while_the_writer_goes_on(storage: RaftStorage, tmp_path: Path) -> None:
    _write(storage, 1, 50)
    pinned = storage.pin_state()
    images: list[Path] = []
    t = threading.Thread(target=lambda: images.append(storage.image_file_of(pinned, 50)))
    t.start()
    _write(storage, 51, 80)  # the writer is not held up, and its writes are not in the image
    t.join()
    assert _queued(images[0]) == 50
    assert _queued(tmp_path / "state.db") == 80


def test_a_recorded_snapshot_survives_a_restart_and_drops_its_log(storage: RaftStorage, tmp_path: Path) -> None:
    _write(storage, 1, 50)
    data = _save(storage, 50)
    storage.record_snapshot(50, 1)
    _write(storage, 51, 60)  # the next transaction records it
    storage.db.close()
    state, applied = _reopen(tmp_path).load()
    assert (state.snapshot.meta.index, state.snapshot.meta.term) == (50, 1)
    assert isinstance(state.snapshot.data, ImageFile)  # the core holds the file, not the bytes
    assert state.snapshot.data.read() == data
    assert [e.index for e in state.entries] == list(range(51, 61))
    assert applied == 60


def test_an_image_saved_but_never_recorded_is_ignored_and_removed(storage: RaftStorage, tmp_path: Path) -> None:
    _write(storage, 1, 50)
    _save(storage, 50)
    storage.db.close()  # a crash before any transaction recorded it
    state, _ = _reopen(tmp_path).load()
    assert state.snapshot.meta.index == 0
    assert [e.index for e in state.entries] == list(range(1, 51))  # the whole log is still there
    assert not list(tmp_path.glob("state.db.snapshot-*"))


def test_a_newer_snapshot_replaces_the_older_image(storage: RaftStorage, tmp_path: Path) -> None:
    _write(storage, 1, 50)
    _save(storage, 50)
    storage.record_snapshot(50, 1)
    _write(storage, 51, 90)
    _save(storage, 90)
    storage.record_snapshot(90, 1)
    _write(storage, 91, 91)
    assert [p.name for p in tmp_path.glob("state.db.snapshot-*")] == ["state.db.snapshot-90"]


def test_a_recorded_image_that_is_missing_stops_the_master_with_the_way_out(storage: RaftStorage,
                                                                           tmp_path: Path) -> None:
    _write(storage, 1, 50)
    _save(storage, 50)
    storage.record_snapshot(50, 1)
    _write(storage, 51, 51)
    storage.db.close()
    (tmp_path / "state.db.snapshot-50").unlink()
    with pytest.raises(StorageError, match="--rejoin"):
        _reopen(tmp_path).load()


def test_masters_killed_after_compacting_come_back_with_everything(tmp_path: Path) -> None:
    ha = HaCluster(tmp_path, env={"DCOSD_RAFT_SNAPSHOT_EVERY": "40", "DCOSD_RAFT_SNAPSHOT_SIZE_RATIO": "0"})
    try:
        ha.start_all()
        leader = ha.wait_leader()
        for k in range(130):
            assert ha.submit(leader, f"k{k}") == 201
        ha.wait_caught_up(ha.ids)
        wait_for(lambda: all(ha.status(i)["snapshot_index"] >= 80 for i in ha.ids), timeout=20,
                 what="every master compacted its log")
        for i in ha.ids:
            ha.kill9(i)
        ha.start_all()
        leader = ha.wait_leader(timeout=30)
        assert ha.submit(leader, "after") == 201
        ha.wait_caught_up(ha.ids)
        for i in ha.ids:
            assert {f"k{k}" for k in range(130)} | {"after"} <= ha.queued_ids(i)
        ha.assert_same_state()
    finally:
        ha.stop_all()


def test_the_log_below_a_snapshot_is_deleted_a_step_at_a_time(storage: RaftStorage, tmp_path: Path) -> None:
    from dcosd.master.replog.storage import TRUNCATE_STEP

    last = 2 * TRUNCATE_STEP + 500
    for first in range(1, last + 1, 500):
        _write(storage, first, first + 499)
    _save(storage, last)
    storage.record_snapshot(last, 1)

    def lowest() -> int:
        return next(iter(storage.db.execute("SELECT MIN(idx) FROM raft_log")))[0]

    seen = []
    for k in range(4):  # each following Ready deletes at most TRUNCATE_STEP rows below the snapshot
        _write(storage, last + 1 + k, last + 1 + k)
        seen.append(lowest())
    assert seen == [TRUNCATE_STEP + 1, 2 * TRUNCATE_STEP + 1, last + 1, last + 1]


def test_recording_a_snapshot_leaves_a_later_image_and_its_scratch_alone(storage: RaftStorage,
                                                                          tmp_path: Path) -> None:
    _write(storage, 1, 50)
    (tmp_path / "state.db.snapshot-40").write_bytes(b"an older image")
    _save(storage, 50)
    _write(storage, 51, 90)
    _save(storage, 90)  # saved, not recorded yet
    scratch = tmp_path / "state.db.snap-out-120"  # a third one being imaged on its thread
    scratch.write_bytes(b"in the making")
    storage.record_snapshot(50, 1)
    _write(storage, 91, 91)  # the transaction that records 50
    assert sorted(p.name for p in tmp_path.glob("state.db.snapshot-*")) == ["state.db.snapshot-50",
                                                                            "state.db.snapshot-90"]
    assert scratch.exists()
    storage.db.close()
    _reopen(tmp_path).load()  # at start, only the recorded image survives
    assert [p.name for p in tmp_path.glob("state.db.snapshot-*")] == ["state.db.snapshot-50"]
    assert not scratch.exists()


def _leader_image(tmp_path: Path, last: int) -> bytes:
    """The image another master (a leader) has of entries 1..last."""
    other = tmp_path / "leader"
    other.mkdir()
    db = open_db(other / "state.db")
    migrate(db)
    s = RaftStorage(db, other / "state.db")
    _write(s, 1, last)
    try:
        scratch = s.image_file_of(s.pin_state(), last)
        data = scratch.read_bytes()
        scratch.unlink()
        return data
    finally:
        db.close()


def test_a_received_image_becomes_this_masters_image_file_not_a_row(storage: RaftStorage, tmp_path: Path) -> None:
    """Installed, an image that came in chunks (a file beside the database) is moved into place: the
    core's ImageFile follows it, the database holds no copy, and a restart loads it as a file.
    Received images it makes useless go; one still arriving, or of a later index, stays."""
    data = _leader_image(tmp_path, 70)
    received = tmp_path / "state.db.snap-recv-70-1-3"
    received.write_bytes(data)
    stale = tmp_path / "state.db.snap-recv-60-1-2"
    stale.write_bytes(b"an image the core had no use for")
    arriving = tmp_path / "state.db.snap-recv-80-1-4.part"
    arriving.write_bytes(b"half an image")
    later = tmp_path / "state.db.snap-recv-90-1-5"
    later.write_bytes(b"a later image, not installed yet")
    image = ImageFile(received, len(data))
    storage.write_ready(Ready(hard_state=HardState(1, None, 70), snapshot=Snapshot(SnapshotMeta(70, 1), image)))
    assert image.path == tmp_path / "state.db.snapshot-70" and image.read() == data
    assert sorted(p.name for p in tmp_path.glob("state.db.snap*")) == [
        "state.db.snap-recv-80-1-4.part", "state.db.snap-recv-90-1-5", "state.db.snapshot-70"]
    assert _queued(tmp_path / "state.db") == 70
    assert [bytes(d) for (d,) in storage.db.execute("SELECT data FROM raft_snapshot")] == [b""]
    storage.db.close()
    state, applied = _reopen(tmp_path).load()
    assert applied == 70 and state.snapshot.meta == SnapshotMeta(70, 1)
    assert isinstance(state.snapshot.data, ImageFile) and state.snapshot.data.read() == data
    # At start, whatever a transfer left behind goes; the recorded image stays.
    assert sorted(p.name for p in tmp_path.glob("state.db.snap*")) == ["state.db.snapshot-70"]


def test_an_image_sent_whole_by_an_older_master_is_stored_as_a_file_too(storage: RaftStorage,
                                                                      tmp_path: Path) -> None:
    data = _leader_image(tmp_path, 30)
    storage.write_ready(Ready(hard_state=HardState(1, None, 30), snapshot=Snapshot(SnapshotMeta(30, 1), data)))
    assert (tmp_path / "state.db.snapshot-30").read_bytes() == data
    assert [bytes(d) for (d,) in storage.db.execute("SELECT data FROM raft_snapshot")] == [b""]
    assert _queued(tmp_path / "state.db") == 30


def test_an_image_an_older_master_kept_in_its_row_still_loads(storage: RaftStorage, tmp_path: Path) -> None:
    data = _leader_image(tmp_path, 20)
    storage.write_ready(Ready(hard_state=HardState(1, None, 20), snapshot=Snapshot(SnapshotMeta(20, 1), data)))
    with storage.db:  # as a master from before image files left it
        storage.db.execute("UPDATE raft_snapshot SET data = ?", (data,))
    (tmp_path / "state.db.snapshot-20").unlink()
    storage.db.close()
    state, applied = _reopen(tmp_path).load()
    assert applied == 20 and state.snapshot.meta == SnapshotMeta(20, 1) and state.snapshot.data == data


def test_a_log_much_smaller_than_the_state_is_not_compacted_until_the_entry_cap(tmp_path: Path) -> None:
    # Every 40 entries at most, but only once the log since the last snapshot holds as many bytes as
    # its image (a few hundred KB here, ~300 bytes an entry) — or at 10 x 40 entries whatever the sizes.
    ha = HaCluster(tmp_path, env={"DCOSD_RAFT_SNAPSHOT_EVERY": "40"})
    try:
        ha.start_all()
        leader = ha.wait_leader()
        for k in range(60):
            assert ha.submit(leader, f"a{k}") == 201
        first = wait_for(lambda: ha.status(leader)["snapshot_index"], timeout=20, what="the first snapshot")
        assert 40 <= first <= 62
        for k in range(150):
            assert ha.submit(leader, f"b{k}") == 201
        assert ha.status(leader)["snapshot_index"] == first  # 150 small entries: far less than the image
        for k in range(250):
            assert ha.submit(leader, f"c{k}") == 201
        wait_for(lambda: ha.status(leader)["snapshot_index"] >= first + 400, timeout=20,
                 what="a snapshot at 10 x 40 entries after the first")
        ha.wait_caught_up(ha.ids)
        ha.assert_same_state()
    finally:
        ha.stop_all()
