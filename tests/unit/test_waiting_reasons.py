"""Why a queued task waits: computed on read from the replicated state (views.waiting_reasons),
against a real SQLite state built by committed commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcosd.master.state import views
from dcosd.master.state.store import StateStore


@pytest.fixture
async def store(tmp_path: Path):
    s = StateStore(tmp_path / "state.db")
    yield s
    s.close()


def _spec(task_id: str, cpus: float, mem: float) -> dict:
    return {"task_id": task_id, "name": task_id, "argv": ["true"], "resources": {"cpus": cpus, "mem": mem},
            "env": {}, "labels": {}, "kill_grace_seconds": 3, "framework_id": "dcosd-tasks"}


async def _agent(store: StateStore, agent_id: str, cpus: float, mem: float) -> None:
    await store.propose({"type": "agent_register", "time": 1.0, "agent": {
        "id": agent_id, "hostname": f"host-{agent_id}", "ip": "127.0.0.1", "address": "http://127.0.0.1:1",
        "resources": {"cpus": cpus, "mem": mem}, "attributes": {}, "backend": {}}})


async def _submit(store: StateStore, task_id: str, cpus: float, mem: float) -> None:
    await store.propose({"type": "task_submit", "time": 1.0, "spec": _spec(task_id, cpus, mem)})


def _reasons(store: StateStore) -> dict[str, str]:
    return {q["id"]: q["pending_reason"] for q in views.queued_tasks(store)}


async def test_no_active_agent(store: StateStore) -> None:
    await _submit(store, "t1", 1, 128)
    assert _reasons(store) == {"t1": "no active agent"}
    await _agent(store, "a1", 4, 4096)
    await store.propose({"type": "agent_unreachable", "agent_id": "a1", "time": 2.0})
    assert views.task(store, "t1", waiting_reason=True)["pending_reason"] == "no active agent"


async def test_larger_than_any_agent_names_the_shortfall(store: StateStore) -> None:
    await _agent(store, "a1", 2, 1024)
    await _agent(store, "a2", 4, 2048)
    await _submit(store, "big", 8, 512)
    await _submit(store, "fits", 1, 128)
    reasons = _reasons(store)
    assert reasons["big"].startswith("larger than any agent") and "host-a2" in reasons["big"]
    assert reasons["fits"] == ""  # an agent has room: the next placement cycle takes it


async def test_room_left_by_live_tasks(store: StateStore) -> None:
    await _agent(store, "a1", 2, 1024)
    await _submit(store, "running", 1.5, 512)
    await store.propose({"type": "task_place", "task_id": "running", "agent_id": "a1",
                         "resources": {"cpus": 1.5, "mem": 512}, "time": 1.0, "uuid": "u1"})
    await _submit(store, "small", 0.5, 256)
    await _submit(store, "medium", 1, 256)
    reasons = _reasons(store)
    assert reasons == {"small": "", "medium": reasons["medium"]}
    assert reasons["medium"].startswith("waiting for resources")


async def test_internal_reads_of_the_queue_skip_the_reasons(store: StateStore) -> None:
    await _submit(store, "t1", 1, 128)
    assert "pending_reason" not in views.queued_tasks(store, reasons=False)[0]
    assert "pending_reason" not in views.task(store, "t1", history=False)
