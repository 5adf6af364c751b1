"""The master's state machine against a real SQLite file: apply(command) rules, refusals, durability."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import apsw
import pytest

from dcosd.errors import Conflict, NotFound, StorageError
from dcosd.master.state import views
from dcosd.master.state.machine import command_types
from dcosd.master.state.store import StateStore


def spec(task_id: str, cpus: float = 0.1) -> dict:
    return {"task_id": task_id, "name": task_id, "argv": ["true"], "resources": {"cpus": cpus, "mem": 32},
            "env": {}, "labels": {}, "kill_grace_seconds": 3, "framework_id": "dcosd-tasks"}


AGENT = {"id": "A1", "hostname": "h1", "ip": "127.0.0.1", "address": "http://127.0.0.1:1",
         "resources": {"cpus": 2, "mem": 1024}, "attributes": {}, "backend": {}}


@pytest.fixture
async def store(tmp_path: Path):
    s = StateStore(tmp_path / "state.db")
    yield s
    s.close()


def status(task_id, state, uuid, **kw):
    return {"task_id": task_id, "state": state, "uuid": uuid, "timestamp": 2.0, **kw}


async def test_task_life_with_history(store: StateStore):
    await store.propose({"type": "agent_register", "time": 1.0, "agent": AGENT})
    await store.propose({"type": "task_submit", "time": 1.0, "spec": spec("t1")})
    assert [q["id"] for q in views.queued_tasks(store)] == ["t1"]
    await store.propose({"type": "task_place", "task_id": "t1", "agent_id": "A1", "resources": {"cpus": 0.1},
                         "time": 1.5, "uuid": "p1"})
    assert views.queued_tasks(store) == []
    r = await store.propose({"type": "task_status", "agent_id": "A1", "time": 2.0,
                             "updates": [status("t1", "TASK_RUNNING", "u1"), status("t1", "TASK_RUNNING", "u1"),
                                         status("t1", "TASK_FINISHED", "u2", exit_code=0)]})
    assert r["acked"] == ["u1", "u1", "u2"] and r["applied"] == ["t1", "t1"]
    t = views.task(store, "t1")
    assert t["state"] == "TASK_FINISHED" and t["exit_code"] == 0
    assert [s["state"] for s in t["statuses"]] == ["TASK_STAGING", "TASK_RUNNING", "TASK_FINISHED"]
    # out of a terminal state: acknowledged, not applied
    r = await store.propose({"type": "task_status", "agent_id": "A1", "time": 3.0,
                             "updates": [status("t1", "TASK_RUNNING", "u3")]})
    assert r == {"acked": ["u3"], "applied": []}
    # an update from an agent that does not hold the task changes nothing
    r = await store.propose({"type": "task_status", "agent_id": "OTHER", "time": 3.0,
                             "updates": [status("t1", "TASK_FAILED", "u4")]})
    assert r["applied"] == [] and views.task(store, "t1")["state"] == "TASK_FINISHED"


async def test_refused_commands_roll_back_alone(store: StateStore):
    await store.propose({"type": "task_submit", "time": 1.0, "spec": spec("t1")})
    results = await asyncio.gather(
        store.propose({"type": "task_submit", "time": 1.0, "spec": spec("t1")}),
        store.propose({"type": "task_submit", "time": 1.0, "spec": spec("t2")}),
        store.propose({"type": "task_place", "task_id": "t2", "agent_id": "nope", "resources": {}, "time": 1,
                       "uuid": "x"}),
        store.propose({"type": "task_kill", "task_id": "missing", "time": 1, "uuid": "y"}),
        store.propose({"type": "no_such_command"}),
        return_exceptions=True)
    assert isinstance(results[0], Conflict)
    assert results[1] == {"task_id": "t2"}
    assert isinstance(results[2], (Conflict, NotFound))
    assert isinstance(results[3], NotFound)
    assert "unknown command" in str(results[4])
    assert sorted(q["id"] for q in views.queued_tasks(store)) == ["t1", "t2"]


async def test_unreachable_then_lost_then_back(store: StateStore):
    await store.propose({"type": "agent_register", "time": 1.0, "agent": AGENT})
    for t in ("t1", "t2"):
        await store.propose({"type": "task_submit", "time": 1.0, "spec": spec(t)})
        await store.propose({"type": "task_place", "task_id": t, "agent_id": "A1", "resources": {}, "time": 1,
                             "uuid": f"p-{t}"})
    await store.propose({"type": "task_status", "agent_id": "A1", "time": 2.0,
                         "updates": [status("t1", "TASK_RUNNING", "a"), status("t2", "TASK_FINISHED", "b")]})
    changed = await store.propose({"type": "agent_unreachable", "agent_id": "A1", "time": 3.0, "uuid": "un"})
    assert changed == ["t1"]
    assert views.task(store, "t1")["state"] == "TASK_UNREACHABLE"
    assert views.agent(store, "A1")["state"] == "UNREACHABLE"
    assert await store.propose({"type": "agent_unreachable", "agent_id": "A1", "time": 3.5, "uuid": "un2"}) == []
    assert await store.propose({"type": "agent_lost", "agent_id": "A1", "time": 4.0, "uuid": "lo"}) == ["t1"]
    t1 = views.task(store, "t1")
    assert t1["state"] == "TASK_LOST" and t1["reason"] == "REASON_SLAVE_REMOVED"
    await store.propose({"type": "agent_register", "time": 5.0, "agent": AGENT})
    assert views.agent(store, "A1")["state"] == "ACTIVE"


async def test_kill_queued_task_is_killed_at_once(store: StateStore):
    await store.propose({"type": "task_submit", "time": 1.0, "spec": spec("t1")})
    r = await store.propose({"type": "task_kill", "task_id": "t1", "time": 2.0, "uuid": "k"})
    assert r["state"] == "TASK_KILLED"
    t = views.task(store, "t1")
    assert t["statuses"][-1]["reason"] == "REASON_TASK_KILLED_DURING_LAUNCH"


async def test_state_survives_reopen_and_log_records_commands(tmp_path: Path):
    s = StateStore(tmp_path / "state.db")
    await s.propose({"type": "task_submit", "time": 1.0, "spec": spec("t1")})
    s.close()
    s2 = StateStore(tmp_path / "state.db")
    try:
        assert [q["id"] for q in views.queued_tasks(s2)] == ["t1"]
        (cmd,) = [json.loads(c) for (c,) in s2.query("SELECT command FROM log")]
        assert cmd["type"] == "task_submit"
    finally:
        s2.close()


def test_newer_schema_is_refused(tmp_path: Path):
    db = apsw.Connection(str(tmp_path / "state.db"))
    db.execute("PRAGMA user_version = 999")
    db.close()
    with pytest.raises(StorageError, match="newer than this dcosd"):
        StateStore(tmp_path / "state.db")


def test_every_command_type_has_a_handler():
    assert {"task_submit", "task_place", "task_status", "task_kill", "agent_register", "agent_unreachable",
            "agent_lost", "task_master_status", "task_pending_reason"} <= set(command_types())


def test_an_older_schema_is_upgraded_with_its_queue(tmp_path: Path):
    from dcosd.master.state.migrations import LATEST, MIGRATIONS
    from dcosd.master.state.store import migrate

    db = apsw.Connection(str(tmp_path / "state.db"))
    for sql in MIGRATIONS[:9]:  # the schema of dcosd before the queue was keyed by task_id
        db.execute(sql)
    db.execute("PRAGMA user_version = 9")
    rows = [(f"t{i}", json.dumps(spec(f"t{i}")), float(10 - i), "") for i in range(5)]
    db.executemany("INSERT INTO queue (task_id, spec, submitted_at, pending_reason) VALUES (?,?,?,?)", rows)
    assert migrate(db) == LATEST
    assert sorted(db.execute("SELECT task_id, spec, submitted_at, pending_reason FROM queue")) == sorted(rows)
    (sql,) = next(iter(db.execute("SELECT sql FROM sqlite_master WHERE name = 'queue'")))
    assert "WITHOUT ROWID" in sql
    db.close()
    s = StateStore(tmp_path / "state.db")
    try:
        assert [q["id"] for q in views.queued_tasks(s)] == ["t4", "t3", "t2", "t1", "t0"]  # submission order
    finally:
        s.close()
