"""Read-only views of the master's state, as plain dicts for the APIs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from dcosd import codec
from dcosd.master.placement import AgentView, PendingTask, _why_waiting
from dcosd.master.state.store import StateStore
from dcosd.model.resources import Resources
from dcosd.model.states import ACTIVE_STATES, TaskState

_TASK_COLS = ("id, name, framework_id, agent_id, state, spec, resources, reason, message, exit_code, healthy,"
              " kill_requested, created_at, updated_at")
_AGENT_COLS = ("id, hostname, ip, address, resources, attributes, backend, state, registered_at, reregistered_at,"
               " unreachable_since, version")
_ACTIVE = tuple(s.value for s in ACTIVE_STATES)
_ACTIVE_SQL = ",".join("?" * len(_ACTIVE))


def _task_row(row: tuple) -> dict[str, Any]:
    (tid, name, fw, agent, state, spec, res, reason, message, code, healthy, kill, created, updated) = row
    return {
        "id": tid, "name": name, "framework_id": fw, "agent_id": agent, "state": state,
        "spec": json.loads(spec), "resources": json.loads(res), "reason": reason, "message": message,
        "exit_code": code, "healthy": None if healthy is None else bool(healthy), "kill_requested": bool(kill),
        "created_at": created, "updated_at": updated,
    }


def _agent_row(row: tuple) -> dict[str, Any]:
    (aid, host, ip, addr, res, attrs, backend, state, reg, rereg, unreach, version) = row
    return {
        "id": aid, "hostname": host, "ip": ip, "address": addr, "resources": json.loads(res),
        "attributes": json.loads(attrs), "backend": json.loads(backend), "state": state, "registered_at": reg,
        "reregistered_at": rereg, "unreachable_since": unreach, "version": version,
    }


def queued_tasks(store: StateStore, *, reasons: bool = True) -> list[dict[str, Any]]:
    rows = store.query("SELECT task_id, spec, submitted_at FROM queue ORDER BY submitted_at, task_id")
    out = [{"id": tid, "spec": codec.loads(spec), "state": "QUEUED", "submitted_at": at} for tid, spec, at in rows]
    if reasons and out:
        why = waiting_reasons(store)
        for q in out:
            q["pending_reason"] = why(q["spec"])
    return out


def waiting_reasons(store: StateStore) -> Callable[[dict[str, Any]], str]:
    """Why a queued task (its spec) waits, from the replicated state alone: the active agents' totals
    and what their live tasks hold. "" when some agent has room for it (the next placement cycle takes
    it). Computed on read: replicating a reason for every submitted task cost each write another."""
    active = [a for a in agents(store) if a["state"] == "ACTIVE"]
    held = allocated_by_agent(store) if active else {}
    sized: list[tuple[AgentView, Resources]] = []
    for a in active:
        total = Resources.from_dict(a["resources"])
        # _why_waiting() reads totals only; what is free is judged here, from what live tasks hold.
        sized.append((AgentView(a["id"], a["hostname"], total, total), held.get(a["id"], Resources())))

    def why(spec: dict[str, Any]) -> str:
        try:
            need = Resources.from_dict(spec.get("resources", {}))
        except ValueError:
            return ""
        if any(view.total.contains(used + need) for view, used in sized):
            return ""
        return _why_waiting(PendingTask(spec.get("task_id", ""), need), [view for view, _ in sized])

    return why


def queue_is_empty(store: StateStore) -> bool:
    return store.query_one("SELECT 1 FROM queue LIMIT 1") is None


def task(store: StateStore, task_id: str, *, history: bool = True,
         waiting_reason: bool = False) -> dict[str, Any] | None:
    """A task, queued or placed. ``waiting_reason``: a queued task's ``pending_reason`` (reads every
    active agent and live task, so only for views an operator looks at)."""
    # The queue is read first: a task only ever moves from the queue to the tasks table, so a task
    # that left the queue between the two reads is found in the second one, never missed by both.
    q = store.query_one("SELECT task_id, spec, submitted_at FROM queue WHERE task_id = ?", (task_id,))
    if q is not None:
        spec = json.loads(q[1])
        t = {"id": q[0], "name": spec["name"], "state": "QUEUED", "spec": spec, "submitted_at": q[2],
             "agent_id": None, "statuses": []}
        if waiting_reason:
            t["pending_reason"] = waiting_reasons(store)(spec)
        return t
    row = store.query_one(f"SELECT {_TASK_COLS} FROM tasks WHERE id = ?", (task_id,))
    if row is None:
        return None
    t = _task_row(row)
    if history:
        t["statuses"] = [
            {"state": s, "reason": r, "message": m, "source": src, "uuid": u, "timestamp": ts, "exit_code": c,
             "healthy": None if h is None else bool(h)}
            for s, r, m, src, u, ts, c, h in store.query(
                "SELECT state, reason, message, source, uuid, timestamp, exit_code, healthy FROM task_statuses"
                " WHERE task_id = ? ORDER BY seq", (task_id,))
        ]
    return t


def tasks(store: StateStore, *, state: str | None = None, agent_id: str | None = None, active_only: bool = False,
          limit: int = 1000) -> list[dict[str, Any]]:
    where, args = [], []
    if state:
        where.append("state = ?")
        args.append(state)
    if agent_id:
        where.append("agent_id = ?")
        args.append(agent_id)
    if active_only:
        where.append(f"state IN ({_ACTIVE_SQL})")
        args.extend(_ACTIVE)
    sql = f"SELECT {_TASK_COLS} FROM tasks"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, id LIMIT ?"
    args.append(limit)
    return [_task_row(r) for r in store.query(sql, tuple(args))]


def agent(store: StateStore, agent_id: str) -> dict[str, Any] | None:
    row = store.query_one(f"SELECT {_AGENT_COLS} FROM agents WHERE id = ?", (agent_id,))
    return None if row is None else _agent_row(row)


def agents(store: StateStore) -> list[dict[str, Any]]:
    return [_agent_row(r) for r in store.query(f"SELECT {_AGENT_COLS} FROM agents ORDER BY hostname, id")]


def allocated_by_agent(store: StateStore) -> dict[str, Resources]:
    """Resources held by live tasks, per agent."""
    out: dict[str, Resources] = {}
    for agent_id, res in store.query(
            f"SELECT agent_id, resources FROM tasks WHERE agent_id IS NOT NULL AND state IN ({_ACTIVE_SQL})", _ACTIVE):
        out[agent_id] = out.get(agent_id, Resources()) + Resources.from_dict(json.loads(res))
    return out


def task_counts(store: StateStore) -> dict[str, int]:
    counts = {s: n for s, n in store.query("SELECT state, COUNT(*) FROM tasks GROUP BY state")}
    counts["QUEUED"] = store.query_one("SELECT COUNT(*) FROM queue")[0]  # type: ignore[index]
    return counts


def live_tasks_on_agent(store: StateStore, agent_id: str) -> list[dict[str, Any]]:
    return tasks(store, agent_id=agent_id, active_only=True, limit=1_000_000)


def is_active(state: str) -> bool:
    return TaskState(state) in ACTIVE_STATES
