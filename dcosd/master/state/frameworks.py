"""Commands of two-level scheduling: frameworks, their launches and updates, roles, reservations.

Registered in machine.py's one dispatch table (machine imports this module), so
every master that applies the log applies these the same way. Like the rest of
the state machine they read no clock and no random source: times and ids come
in the command.

Status updates owed to a framework are rows of ``framework_updates``: a trigger
(migration 2) adds one for every status of its tasks in the transaction that
records the status; ``framework_ack`` removes it. Updates the master makes
without a task row (TASK_DROPPED of an invalid ACCEPT, TASK_ERROR) carry their
whole status in the row.
"""

from __future__ import annotations

import json
from typing import Any

import apsw

from dcosd.errors import Conflict, NotFound, ValidationError
from dcosd.master.state.machine import AGENT_ACTIVE, Command, _one, handler
from dcosd.model.states import ACTIVE_STATES, Source, TaskState

_LIVE = tuple(s.value for s in ACTIVE_STATES)
_LIVE_SQL = ",".join("?" * len(_LIVE))


@handler("framework_subscribe")
def apply_framework_subscribe(db: apsw.Connection, c: Command) -> dict[str, Any]:
    f = c["framework"]
    row = _one(db, "SELECT removed_at FROM frameworks WHERE id = ?", (f["id"],))
    values = (f["name"], f.get("user", ""), json.dumps(f["roles"]), json.dumps(f.get("info", {})),
              float(f.get("failover_timeout", 0.0)))
    if row is None:
        db.execute("INSERT INTO frameworks (name, user, roles, info, failover_timeout, id, active, registered_at)"
                   " VALUES (?,?,?,?,?,?,1,?)", values + (f["id"], c["time"]))
        return {"framework_id": f["id"], "new": True}
    if row[0] is not None:
        raise Conflict(f"framework {f['id']} has been removed")
    db.execute("UPDATE frameworks SET name=?, user=?, roles=?, info=?, failover_timeout=?, active=1,"
               " reregistered_at=?, disconnected_at=NULL WHERE id=?", values + (c["time"], f["id"]))
    return {"framework_id": f["id"], "new": False}


@handler("framework_disconnect")
def apply_framework_disconnect(db: apsw.Connection, c: Command) -> bool:
    db.execute("UPDATE frameworks SET active=0, disconnected_at=? WHERE id=? AND removed_at IS NULL",
               (c["time"], c["framework_id"]))
    return db.changes() > 0


@handler("framework_remove")
def apply_framework_remove(db: apsw.Connection, c: Command) -> list[dict[str, Any]]:
    """Teardown: the framework is gone for good; its live tasks are to be killed (returned)."""
    fid = c["framework_id"]
    row = _one(db, "SELECT removed_at FROM frameworks WHERE id = ?", (fid,))
    if row is None:
        raise NotFound(f"no framework {fid}")
    if row[0] is not None:
        return []
    db.execute("UPDATE frameworks SET active=0, removed_at=? WHERE id=?", (c["time"], fid))
    db.execute("DELETE FROM framework_updates WHERE framework_id = ?", (fid,))
    kills = []
    for task_id, agent_id, spec in list(db.execute(
            f"SELECT id, agent_id, spec FROM tasks WHERE framework_id = ? AND state IN ({_LIVE_SQL})", (fid, *_LIVE))):
        db.execute("UPDATE tasks SET kill_requested = 1, updated_at = ? WHERE id = ?", (c["time"], task_id))
        kills.append({"task_id": task_id, "agent_id": agent_id,
                      "grace": json.loads(spec).get("kill_grace_seconds", 3.0)})
    return kills


@handler("framework_launch")
def apply_framework_launch(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """The operations of one accepted ACCEPT: tasks in TASK_STAGING, new executors, reservation changes."""
    fid, agent_id, now = c["framework_id"], c["agent_id"], c["time"]
    agent = _one(db, "SELECT state FROM agents WHERE id = ?", (agent_id,))
    if agent is None or agent[0] != AGENT_ACTIVE:
        raise Conflict(f"agent {agent_id} is not active")
    for t in c["tasks"]:
        if _one(db, "SELECT 1 FROM tasks WHERE id = ? UNION ALL SELECT 1 FROM queue WHERE task_id = ?",
                (t["spec"]["task_id"],) * 2):
            raise Conflict(f"task {t['spec']['task_id']} already exists")
    for e in c.get("executors", []):
        db.execute("INSERT OR REPLACE INTO executors (framework_id, executor_id, agent_id, role, alloc, info,"
                   " created_at) VALUES (?,?,?,?,?,?,?)",
                   (fid, e["executor_id"], agent_id, e["role"], json.dumps(e["alloc"]), json.dumps(e["info"]), now))
    for i, t in enumerate(c["tasks"]):
        spec = t["spec"]
        db.execute(
            "INSERT INTO tasks (id, name, framework_id, agent_id, state, spec, resources, role, alloc, executor_id,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (spec["task_id"], spec["name"], fid, agent_id, TaskState.STAGING.value, json.dumps(spec),
             json.dumps(t["resources"]), t["role"], json.dumps(t["alloc"]), spec.get("executor_id"), now, now))
        db.execute(
            "INSERT INTO task_statuses (task_id, seq, state, message, source, uuid, timestamp) VALUES (?,?,?,?,?,?,?)",
            (spec["task_id"], 1, TaskState.STAGING.value, f"launched on agent {agent_id}", Source.MASTER.value,
             f"{c['uuid']}:{i}", now))
    for r in c.get("reserved", []):
        _reservation_change(db, agent_id, r["role"], r["resources"], +1)
    for r in c.get("unreserved", []):
        _reservation_change(db, agent_id, r["role"], r["resources"], -1)
    return {"tasks": [t["spec"]["task_id"] for t in c["tasks"]], "agent_id": agent_id}


def _reservation_change(db: apsw.Connection, agent_id: str, role: str, res: dict[str, Any], sign: int) -> None:
    from dcosd.model.resources import Resources

    row = _one(db, "SELECT resources FROM reservations WHERE agent_id = ? AND role = ?", (agent_id, role))
    have = Resources.from_dict(json.loads(row[0])) if row else Resources()
    delta = Resources.from_dict(res)
    if sign < 0 and not have.contains(delta):
        raise ValidationError(f"agent {agent_id}: {delta} is not reserved for {role}")
    new = have + delta if sign > 0 else have - delta
    if new.is_empty():
        db.execute("DELETE FROM reservations WHERE agent_id = ? AND role = ?", (agent_id, role))
    else:
        db.execute("INSERT OR REPLACE INTO reservations (agent_id, role, resources) VALUES (?,?,?)",
                   (agent_id, role, json.dumps(new.to_dict())))


@handler("framework_updates_add")
def apply_framework_updates_add(db: apsw.Connection, c: Command) -> int:
    """Updates the master makes for tasks it never recorded (TASK_DROPPED, TASK_ERROR): owed until acknowledged."""
    n = 0
    for u in c["updates"]:
        db.execute("INSERT OR IGNORE INTO framework_updates (uuid, framework_id, task_id, status) VALUES (?,?,?,?)",
                   (u["uuid"], c["framework_id"], u["task_id"], json.dumps(u["status"])))
        n += 1
    return n


@handler("framework_ack")
def apply_framework_ack(db: apsw.Connection, c: Command) -> bool:
    db.execute("DELETE FROM framework_updates WHERE framework_id = ? AND uuid = ?", (c["framework_id"], c["uuid"]))
    return db.changes() > 0


@handler("executor_remove")
def apply_executor_remove(db: apsw.Connection, c: Command) -> bool:
    db.execute("DELETE FROM executors WHERE framework_id = ? AND executor_id = ? AND agent_id = ?",
               (c["framework_id"], c["executor_id"], c["agent_id"]))
    return db.changes() > 0


@handler("role_weights")
def apply_role_weights(db: apsw.Connection, c: Command) -> None:
    for role, w in c["weights"].items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not w > 0:
            raise ValidationError(f"weight of {role} must be a positive number")
        db.execute("INSERT OR REPLACE INTO role_weights (role, weight) VALUES (?, ?)", (role, float(w)))


@handler("role_quota")
def apply_role_quota(db: apsw.Connection, c: Command) -> None:
    if not c.get("limits"):
        db.execute("DELETE FROM role_quotas WHERE role = ?", (c["role"],))
    else:
        db.execute("INSERT OR REPLACE INTO role_quotas (role, limits) VALUES (?, ?)",
                   (c["role"], json.dumps(c["limits"])))
