"""apply(command): the whole state machine of the master in one dispatch table.

Every change of the master's state is a command — a JSON object with a
``type`` — appended to the log and applied here, inside the transaction that
records it. The same command applied to the same state always gives the same
result: commands carry their own timestamps and ids, nothing here reads a clock
or a random source. That is the seam the replicated log plugs into.

An ``apply_*`` function may raise DcosdError to refuse a command; the caller
rolls back that command alone.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import apsw

from dcosd import codec
from dcosd.errors import Conflict, NotFound, ValidationError
from dcosd.model.states import ACTIVE_STATES, Reason, Source, TaskState, can_transition

Command = dict[str, Any]
Handler = Callable[[apsw.Connection, Command], Any]

AGENT_ACTIVE = "ACTIVE"
AGENT_UNREACHABLE = "UNREACHABLE"

_HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _HANDLERS[name] = fn
        return fn

    return register


def command_types() -> list[str]:
    return sorted(_HANDLERS)


def apply(db: apsw.Connection, command: Command) -> Any:
    kind = command.get("type")
    fn = _HANDLERS.get(kind)  # type: ignore[arg-type]
    if fn is None:
        raise ValidationError(f"unknown command type {kind!r}")
    return fn(db, command)


def _one(db: apsw.Connection, sql: str, args: tuple = ()) -> tuple | None:
    for row in db.execute(sql, args):
        return row
    return None


def _record_status(
    db: apsw.Connection,
    task_id: str,
    state: TaskState,
    *,
    uuid: str,
    timestamp: float,
    source: str,
    reason: str | None = None,
    message: str = "",
    exit_code: int | None = None,
    healthy: bool | None = None,
) -> bool:
    """Append a status to a task's history and make it current, if the transition is allowed."""
    row = _one(db, "SELECT state FROM tasks WHERE id = ?", (task_id,))
    if row is None:
        return False
    old = TaskState(row[0])
    if not can_transition(old, state):
        return False
    if _one(db, "SELECT 1 FROM task_statuses WHERE uuid = ?", (uuid,)):
        return False  # a re-sent update already recorded
    seq_row = _one(db, "SELECT COALESCE(MAX(seq), 0) + 1 FROM task_statuses WHERE task_id = ?", (task_id,))
    assert seq_row is not None
    hv = None if healthy is None else int(healthy)
    db.execute(
        "INSERT INTO task_statuses (task_id, seq, state, reason, message, source, uuid, timestamp, exit_code, healthy)"
        " VALUES (?,?,?,?,?,?,?,?,?,?)",
        (task_id, seq_row[0], state.value, reason, message, source, uuid, timestamp, exit_code, hv),
    )
    db.execute(
        "UPDATE tasks SET state = ?, reason = ?, message = ?, exit_code = COALESCE(?, exit_code),"
        " healthy = COALESCE(?, healthy), updated_at = ? WHERE id = ?",
        (state.value, reason, message, exit_code, hv, timestamp, task_id),
    )
    return True


# -- agents ----------------------------------------------------------------------


@handler("agent_register")
def apply_agent_register(db: apsw.Connection, c: Command) -> dict[str, Any]:
    a = c["agent"]
    existing = _one(db, "SELECT registered_at FROM agents WHERE id = ?", (a["id"],))
    values = (
        a["hostname"], a["ip"], a["address"], json.dumps(a["resources"]), json.dumps(a.get("attributes", {})),
        json.dumps(a.get("backend", {})), a.get("version", ""),
    )
    if existing is None:
        db.execute(
            "INSERT INTO agents (hostname, ip, address, resources, attributes, backend, version, id, state,"
            " registered_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            values + (a["id"], AGENT_ACTIVE, c["time"]),
        )
        return {"agent_id": a["id"], "new": True}
    db.execute(
        "UPDATE agents SET hostname=?, ip=?, address=?, resources=?, attributes=?, backend=?, version=?,"
        " state=?, reregistered_at=?, unreachable_since=NULL WHERE id=?",
        values + (AGENT_ACTIVE, c["time"], a["id"]),
    )
    return {"agent_id": a["id"], "new": False}


@handler("agent_unreachable")
def apply_agent_unreachable(db: apsw.Connection, c: Command) -> list[str]:
    """The agent stopped heartbeating: its live tasks become TASK_UNREACHABLE."""
    agent_id = c["agent_id"]
    row = _one(db, "SELECT state FROM agents WHERE id = ?", (agent_id,))
    if row is None or row[0] != AGENT_ACTIVE:
        return []
    db.execute("UPDATE agents SET state = ?, unreachable_since = ? WHERE id = ?", (AGENT_UNREACHABLE, c["time"], agent_id))
    changed = []
    live = [s.value for s in ACTIVE_STATES if s is not TaskState.UNREACHABLE]
    rows = list(db.execute(
        f"SELECT id FROM tasks WHERE agent_id = ? AND state IN ({','.join('?' * len(live))})", (agent_id, *live)))
    for i, (task_id,) in enumerate(rows):
        if _record_status(db, task_id, TaskState.UNREACHABLE, uuid=f"{c['uuid']}:{i}", timestamp=c["time"],
                          source=Source.MASTER.value, reason=Reason.AGENT_DISCONNECTED.value,
                          message="agent stopped heartbeating"):
            changed.append(task_id)
    return changed


@handler("agent_lost")
def apply_agent_lost(db: apsw.Connection, c: Command) -> list[str]:
    """The agent stayed unreachable past the grace: its unreachable tasks are TASK_LOST."""
    agent_id = c["agent_id"]
    row = _one(db, "SELECT state FROM agents WHERE id = ?", (agent_id,))
    if row is None or row[0] != AGENT_UNREACHABLE:
        return []
    changed = []
    rows = list(db.execute("SELECT id FROM tasks WHERE agent_id = ? AND state = ?",
                           (agent_id, TaskState.UNREACHABLE.value)))
    for i, (task_id,) in enumerate(rows):
        if _record_status(db, task_id, TaskState.LOST, uuid=f"{c['uuid']}:{i}", timestamp=c["time"],
                          source=Source.MASTER.value, reason=Reason.AGENT_REMOVED.value,
                          message="agent unreachable for longer than the grace period"):
            changed.append(task_id)
    return changed


# -- tasks -----------------------------------------------------------------------


@handler("cluster_init")
def apply_cluster_init(db: apsw.Connection, c: Command) -> str:
    """The cluster's id, proposed by a leader that finds none: the first one committed stays."""
    cid = c.get("cluster_id")
    if not (isinstance(cid, str) and cid):
        raise ValidationError("cluster_init needs a cluster_id")
    db.execute("INSERT OR IGNORE INTO cluster (id, cluster_id) VALUES (1, ?)", (cid,))
    row = _one(db, "SELECT cluster_id FROM cluster WHERE id = 1")
    assert row is not None
    return row[0]


@handler("task_submit")
def apply_task_submit(db: apsw.Connection, c: Command) -> dict[str, Any]:
    spec = c["spec"]
    task_id = spec["task_id"]
    if _one(db, "SELECT 1 FROM tasks WHERE id = ? UNION ALL SELECT 1 FROM queue WHERE task_id = ?", (task_id, task_id)):
        raise Conflict(f"task {task_id} already exists")
    db.execute("INSERT INTO queue (task_id, spec, submitted_at) VALUES (?,?,?)",
               (task_id, codec.dumps(spec).decode(), c["time"]))
    return {"task_id": task_id}


@handler("task_pending_reason")
def apply_task_pending_reason(db: apsw.Connection, c: Command) -> None:
    # No longer proposed (reasons are computed on read, views.waiting_reasons); kept so that logs and
    # snapshots written by earlier versions still apply.
    for task_id, reason in c["reasons"].items():
        db.execute("UPDATE queue SET pending_reason = ? WHERE task_id = ?", (reason, task_id))


@handler("task_place")
def apply_task_place(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """A queued task goes to an agent: it becomes a task in TASK_STAGING holding its resources there."""
    task_id, agent_id = c["task_id"], c["agent_id"]
    row = _one(db, "SELECT spec FROM queue WHERE task_id = ?", (task_id,))
    if row is None:
        raise NotFound(f"task {task_id} is not queued")
    agent = _one(db, "SELECT state FROM agents WHERE id = ?", (agent_id,))
    if agent is None or agent[0] != AGENT_ACTIVE:
        raise Conflict(f"agent {agent_id} is not active")
    spec = json.loads(row[0])
    db.execute("DELETE FROM queue WHERE task_id = ?", (task_id,))
    db.execute(
        "INSERT INTO tasks (id, name, framework_id, agent_id, state, spec, resources, created_at, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?,?)",
        (task_id, spec["name"], spec.get("framework_id", ""), agent_id, TaskState.STAGING.value, json.dumps(spec),
         json.dumps(c["resources"]), c["time"], c["time"]),
    )
    db.execute(
        "INSERT INTO task_statuses (task_id, seq, state, message, source, uuid, timestamp) VALUES (?,?,?,?,?,?,?)",
        (task_id, 1, TaskState.STAGING.value, f"placed on agent {agent_id}", Source.MASTER.value, c["uuid"], c["time"]),
    )
    return {"task_id": task_id, "agent_id": agent_id}


@handler("task_kill")
def apply_task_kill(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """Kill a task. A queued task never launched is KILLED at once; a launched one is marked for the agent."""
    task_id = c["task_id"]
    queued = _one(db, "SELECT spec, submitted_at FROM queue WHERE task_id = ?", (task_id,))
    if queued is not None:
        spec = json.loads(queued[0])
        db.execute("DELETE FROM queue WHERE task_id = ?", (task_id,))
        db.execute(
            "INSERT INTO tasks (id, name, framework_id, agent_id, state, spec, resources, message, created_at,"
            " updated_at) VALUES (?,?,?,NULL,?,?,?,?,?,?)",
            (task_id, spec["name"], spec.get("framework_id", ""), TaskState.KILLED.value, queued[0],
             json.dumps(spec.get("resources", {})), "killed before launch", queued[1], c["time"]),
        )
        db.execute(
            "INSERT INTO task_statuses (task_id, seq, state, reason, message, source, uuid, timestamp)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (task_id, 1, TaskState.KILLED.value, Reason.TASK_KILLED_DURING_LAUNCH.value, "killed before launch",
             Source.MASTER.value, c["uuid"], c["time"]),
        )
        return {"task_id": task_id, "state": TaskState.KILLED.value, "agent_id": None}
    row = _one(db, "SELECT state, agent_id FROM tasks WHERE id = ?", (task_id,))
    if row is None:
        raise NotFound(f"no task {task_id}")
    if TaskState(row[0]).terminal:
        return {"task_id": task_id, "state": row[0], "agent_id": row[1]}
    db.execute("UPDATE tasks SET kill_requested = 1, updated_at = ? WHERE id = ?", (c["time"], task_id))
    return {"task_id": task_id, "state": row[0], "agent_id": row[1]}


@handler("task_status")
def apply_task_status(db: apsw.Connection, c: Command) -> dict[str, list[str]]:
    """Status updates from one agent, in the order it sent them.

    Every update is acknowledged once recorded — or once known to be stale
    (duplicate uuid, task on another agent, transition out of a terminal
    state) — so the agent can drop it; only ``applied`` changed the state.
    """
    agent_id = c["agent_id"]
    applied, acked = [], []
    for u in c["updates"]:
        acked.append(u["uuid"])
        owner = _one(db, "SELECT agent_id FROM tasks WHERE id = ?", (u["task_id"],))
        if owner is None or owner[0] != agent_id:
            continue
        if _record_status(
            db, u["task_id"], TaskState(u["state"]), uuid=u["uuid"], timestamp=u["timestamp"],
            source=u.get("source", Source.AGENT.value), reason=u.get("reason"), message=u.get("message", ""),
            exit_code=u.get("exit_code"), healthy=u.get("healthy"),
        ):
            applied.append(u["task_id"])
    return {"applied": applied, "acked": acked}


@handler("task_master_status")
def apply_task_master_status(db: apsw.Connection, c: Command) -> list[str]:
    """States the master itself decides for tasks, e.g. TASK_LOST when an agent no longer knows a task."""
    changed = []
    for i, u in enumerate(c["updates"]):
        if _record_status(db, u["task_id"], TaskState(u["state"]), uuid=f"{c['uuid']}:{i}", timestamp=c["time"],
                          source=Source.MASTER.value, reason=u.get("reason"), message=u.get("message", "")):
            changed.append(u["task_id"])
    return changed


# Two-level scheduling registers its commands (frameworks, launches, roles) in this same table.
from dcosd.master.state import frameworks as _frameworks  # noqa: E402,F401
# Machine operations (drain/undrain, the record of node exec runs).
from dcosd.master.state import operations as _operations  # noqa: E402,F401
# The built-in job framework (definitions, schedules, runs).
from dcosd.master.state import jobs as _jobs  # noqa: E402,F401
# The built-in service framework (apps, versions, groups, deployments).
from dcosd.master.services import commands as _services  # noqa: E402,F401
# Package repositories (master/packages): add, remove, in priority order.
from dcosd.master.packages import state as _packages  # noqa: E402,F401
