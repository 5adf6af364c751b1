"""What one Ready writes to the master's SQLite file (replog/storage.py), on real files.

The commit index is not durable by itself (Raft never needs it to be): it rides along with a change
of term, vote or rejoining, and a restart takes it as at least the applied index — so nothing that
was applied is applied again, and a Ready that only moves it opens no transaction at all.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import apsw
import pytest

from dcosd.master.replog.core import RaftNode
from dcosd.master.replog.messages import Entry, HardState, Message, MsgType, Ready
from dcosd.errors import StorageError
from dcosd.master.replog.storage import RaftStorage
from dcosd.master.state.store import migrate, open_db


def _submit(i: int, term: int = 1) -> Entry:
    spec = {"task_id": f"t{i}", "name": "t", "argv": ["true"], "resources": {"cpus": 0.1, "mem": 32}}
    return Entry(term, i, json.dumps({"type": "task_submit", "time": 1.0, "spec": spec}).encode())


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def _open(path: Path) -> RaftStorage:
    db = open_db(path)
    migrate(db)
    s = RaftStorage(db, path)
    s.load()
    return s


def _data_version(watcher: apsw.Connection) -> int:
    """Changes whenever another connection commits to the file."""
    return next(iter(watcher.execute("PRAGMA data_version")))[0]


def _stored_hard_state(path: Path) -> tuple | None:
    db = apsw.Connection(str(path))
    try:
        for row in db.execute("SELECT term, vote, commit_index FROM raft_hard_state WHERE id = 1"):
            return row
        return None
    finally:
        db.close()


def test_a_ready_that_only_moves_the_commit_index_writes_nothing(path: Path) -> None:
    s = _open(path)
    entries = [_submit(i) for i in range(1, 4)]
    s.write_ready(Ready(hard_state=HardState(1, "m1", 0), entries=entries))
    watcher = apsw.Connection(str(path))
    before = _data_version(watcher)
    assert s.write_ready(Ready(hard_state=HardState(1, "m1", 2))) == []
    msg = Message(MsgType.APPEND_RESP, "m1", "m2", 1, index=3)
    assert s.write_ready(Ready(messages=[msg])) == []
    assert _data_version(watcher) == before
    outcomes = s.write_ready(Ready(hard_state=HardState(1, "m1", 3), committed_entries=entries))
    assert [ok for _, ok, _, _ in outcomes] == [True, True, True]
    assert _data_version(watcher) != before
    assert _stored_hard_state(path) == (1, "m1", 0)  # the apply did not rewrite the hard-state row
    watcher.close()
    s.db.close()


def test_a_restart_takes_the_commit_index_as_at_least_what_was_applied(path: Path) -> None:
    s = _open(path)
    entries = [_submit(i) for i in range(1, 6)]
    s.write_ready(Ready(hard_state=HardState(1, "m1", 0), entries=entries))
    s.write_ready(Ready(hard_state=HardState(1, "m1", 3), committed_entries=entries[:3]))
    s.db.close()

    s = _open(path)
    state, applied = s.load()
    assert applied == 3 and state.hard_state.commit == 3 and len(state.entries) == 5
    # The core built from it applies 4 and 5 once they are committed again, never 1-3 a second time.
    node = RaftNode("m1", ["m1"], rng=random.Random(1), state=state, applied=applied)
    applied_now: list[int] = []
    for _ in range(200):
        node.tick()
        while node.has_ready():
            rd = node.ready()
            applied_now += [e.index for e in rd.committed_entries]
            node.advance(rd)
        if applied_now:
            break
    assert applied_now[:2] == [4, 5]
    s.db.close()


def test_a_new_term_or_vote_carries_the_commit_index_along(path: Path) -> None:
    s = _open(path)
    entries = [_submit(i) for i in range(1, 4)]
    s.write_ready(Ready(hard_state=HardState(1, "m1", 0), entries=entries))
    s.write_ready(Ready(hard_state=HardState(1, "m1", 3), committed_entries=entries))
    assert _stored_hard_state(path) == (1, "m1", 0)
    s.write_ready(Ready(hard_state=HardState(2, None, 3)))
    assert _stored_hard_state(path) == (2, None, 3)
    s.db.close()
    state, applied = _open(path).load()
    assert (state.hard_state.term, state.hard_state.vote, state.hard_state.commit, applied) == (2, None, 3, 3)


def test_a_data_directory_belongs_to_the_master_that_first_started_on_it(path: Path) -> None:
    s = _open(path)
    s.claim("m1")
    s.write_ready(Ready(hard_state=HardState(3, "m1", 0), entries=[_submit(1, term=3)]))
    s.db.close()
    again = _open(path)
    again.claim("m1")  # the same master, restarted
    with pytest.raises(StorageError) as refused:
        again.claim("m2")  # m1's term and vote as m2's: m2 could vote twice in term 3
    assert "holds the state of master 'm1', not 'm2'" in str(refused.value)
    assert "--rejoin" in str(refused.value)
    assert _stored_hard_state(path) == (3, "m1", 0)  # nothing was changed


def test_a_file_that_is_not_a_backup_is_refused_and_leaves_the_directory_empty(path: Path, tmp_path: Path) -> None:
    s = _open(path)
    with pytest.raises(StorageError, match="not a dcosd state image"):
        s.restore_backup(b"this is not SQLite" * 100)
    other = apsw.Connection(str(tmp_path / "other.db"))
    other.execute("CREATE TABLE t (x)")
    other.close()
    with pytest.raises(StorageError):
        s.restore_backup((tmp_path / "other.db").read_bytes())
    with pytest.raises(StorageError, match="not a dcosd state image"):
        s.restore_backup(tmp_path / "other.db")
    assert s.is_empty() and list(tmp_path.glob("state.db.restore-*")) == []


def test_a_backup_restores_as_the_first_snapshot_of_a_new_cluster(path: Path, tmp_path: Path) -> None:
    s = _open(path)
    s.write_ready(Ready(hard_state=HardState(4, "m1", 0), entries=[_submit(i, term=4) for i in (1, 2)]))
    s.write_ready(Ready(committed_entries=[_submit(i, term=4) for i in (1, 2)]))
    s.db.execute("INSERT INTO cluster (id, cluster_id) VALUES (1, 'old')")
    path, index, term = s.backup_file()
    image = path.read_bytes()
    path.unlink()
    assert (index, term) == (2, 4)
    (tmp_path / "fresh").mkdir()
    fresh = _open(tmp_path / "fresh" / "state.db")
    assert fresh.restore_backup(image) == (2, 4)
    state, applied = fresh.load()
    assert applied == 2 and state.snapshot.meta.index == 2 and state.entries == () and state.hard_state.term == 4
    assert {r[0] for r in fresh.db.execute("SELECT task_id FROM queue")} == {"t1", "t2"}
    (cid,) = next(iter(fresh.db.execute("SELECT cluster_id FROM cluster")))
    assert cid != "old" and len(cid) == 32
    # From the file (as `dcosd master --restore-from` reads it, a piece at a time): the same state, the
    # same new cluster id, as every master restored from that backup must have.
    (tmp_path / "backup").write_bytes(image)
    (tmp_path / "from-file").mkdir()
    other = _open(tmp_path / "from-file" / "state.db")
    assert other.restore_backup(tmp_path / "backup") == (2, 4)
    assert {r[0] for r in other.db.execute("SELECT task_id FROM queue")} == {"t1", "t2"}
    assert next(iter(other.db.execute("SELECT cluster_id FROM cluster")))[0] == cid


def _queued(path: Path) -> list[str]:
    db = apsw.Connection(str(path))
    try:
        return [r[0] for r in db.execute("SELECT task_id FROM queue ORDER BY task_id")]
    finally:
        db.close()


def test_a_held_apply_is_seen_by_no_reader_until_it_commits(path: Path) -> None:
    """write_ready(hold=True) of a Ready that only applies: outcomes now, the commit later (shell.py
    answers outcome-only proposers in between)."""
    s = _open(path)
    entries = [_submit(i) for i in range(1, 3)]
    s.write_ready(Ready(hard_state=HardState(1, "m1", 0), entries=entries))
    outcomes = s.write_ready(Ready(committed_entries=entries), hold=True)
    assert [(e.index, ok, value) for e, ok, value, _ in outcomes] == [(1, True, {"task_id": "t1"}),
                                                                      (2, True, {"task_id": "t2"})]
    assert s.holding
    assert _queued(path) == []  # another connection: nothing committed yet
    with pytest.raises(StorageError, match="held transaction"):
        s.write_ready(Ready(entries=[_submit(3)]))
    s.commit_held()
    assert not s.holding and _queued(path) == ["t1", "t2"]
    s.db.close()
    state, applied = _open(path).load()
    assert applied == 2


def test_a_held_apply_rolled_back_leaves_its_entries_to_be_applied_again(path: Path) -> None:
    """As a crash between the answer and the commit would: the entries stay in the durable log, the
    applied index where it was, and applying them again gives the same outcomes."""
    s = _open(path)
    entries = [_submit(1)]
    s.write_ready(Ready(hard_state=HardState(1, "m1", 0), entries=entries))
    first = s.write_ready(Ready(committed_entries=entries), hold=True)
    s.rollback_held()
    assert not s.holding and _queued(path) == []
    s.db.close()
    s = _open(path)
    state, applied = s.load()
    assert applied == 0 and [e.index for e in state.entries] == [1]
    again = s.write_ready(Ready(committed_entries=state.entries))
    assert [(ok, value) for _, ok, value, _ in again] == [(ok, value) for _, ok, value, _ in first]
    assert _queued(path) == ["t1"]
    s.db.close()


def test_a_ready_that_must_be_durable_is_never_held(path: Path) -> None:
    s = _open(path)
    entries = [_submit(1)]
    s.write_ready(Ready(hard_state=HardState(1, "m1", 0), entries=entries, committed_entries=[]), hold=True)
    assert not s.holding  # new entries: fsynced and committed at once
    s.write_ready(Ready(hard_state=HardState(2, "m2", 0), committed_entries=entries), hold=True)
    assert not s.holding and _queued(path) == ["t1"]  # a new term rides along: durable too
    s.db.close()


def test_entries_that_conflict_replace_the_stored_suffix_and_new_ones_replace_nothing(path: Path) -> None:
    """A write of entries past the log's end skips the DELETE of a conflicting suffix (there is none);
    one that starts inside the log replaces everything from its first index — also after a restart."""
    s = _open(path)
    statements: list[str] = []
    s.db.exec_trace = lambda cursor, sql, bindings: statements.append(sql) or True
    s.write_ready(Ready(hard_state=HardState(1, "m1", 0), entries=[_submit(i) for i in range(1, 4)]))
    s.write_ready(Ready(entries=[_submit(i) for i in range(4, 6)]))
    assert not [q for q in statements if q.startswith("DELETE FROM raft_log")]
    s.write_ready(Ready(hard_state=HardState(2, "m2", 0), entries=[_submit(3, term=2), _submit(4, term=2)]))
    assert [q for q in statements if q.startswith("DELETE FROM raft_log WHERE idx >=")]
    assert [(e.index, e.term) for e in s.load()[0].entries] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    s.db.close()
    s = _open(path)  # the log's end as loaded: index 4, so a write at 4 replaces and one at 5 adds
    s.write_ready(Ready(hard_state=HardState(3, "m3", 0), entries=[_submit(4, term=3)]))
    s.write_ready(Ready(entries=[_submit(5, term=3)]))
    assert [(e.index, e.term) for e in s.load()[0].entries] == [(1, 1), (2, 1), (3, 2), (4, 3), (5, 3)]
    s.db.close()
