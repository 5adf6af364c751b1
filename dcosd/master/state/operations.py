"""Commands of machine operations: node maintenance (drain/undrain) and the record of `node exec` runs.

Registered in machine.py's one dispatch table. Drain state is desired state the
operator set: it survives agent re-registration and master failover, and the
allocator reads it whenever it (re)builds.
"""

from __future__ import annotations

import json
from typing import Any

import apsw

from dcosd.errors import NotFound, ValidationError
from dcosd.master.state.machine import Command, _one, handler

MAX_OUTPUT_TAIL = 2000  # characters of each node's output kept in the record


@handler("node_drain")
def apply_node_drain(db: apsw.Connection, c: Command) -> dict[str, Any]:
    agent_id = c["agent_id"]
    if _one(db, "SELECT 1 FROM agents WHERE id = ?", (agent_id,)) is None:
        raise NotFound(f"no node {agent_id}")
    was = _one(db, "SELECT since FROM node_maintenance WHERE agent_id = ?", (agent_id,))
    if was is not None:
        return {"agent_id": agent_id, "draining": True, "since": was[0], "changed": False}
    db.execute("INSERT INTO node_maintenance (agent_id, since, who, reason) VALUES (?,?,?,?)",
               (agent_id, c["time"], c.get("who", ""), c.get("reason", "")))
    return {"agent_id": agent_id, "draining": True, "since": c["time"], "changed": True}


@handler("node_undrain")
def apply_node_undrain(db: apsw.Connection, c: Command) -> dict[str, Any]:
    agent_id = c["agent_id"]
    if _one(db, "SELECT 1 FROM agents WHERE id = ?", (agent_id,)) is None:
        raise NotFound(f"no node {agent_id}")
    changed = _one(db, "SELECT 1 FROM node_maintenance WHERE agent_id = ?", (agent_id,)) is not None
    db.execute("DELETE FROM node_maintenance WHERE agent_id = ?", (agent_id,))
    return {"agent_id": agent_id, "draining": False, "changed": changed}


@handler("exec_start")
def apply_exec_start(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """A `node exec` run began: who asked, what, where (recorded before any agent is dialled)."""
    if not isinstance(c.get("command"), list) or not c["command"]:
        raise ValidationError("exec_start needs a non-empty command")
    db.execute("INSERT INTO exec_runs (id, who, command, targets, started_at) VALUES (?,?,?,?,?)",
               (c["id"], c.get("who", ""), json.dumps(c["command"]), json.dumps(c.get("targets", [])), c["time"]))
    return {"id": c["id"]}


@handler("exec_finish")
def apply_exec_finish(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """The run ended: each node's exit code (None: did not run/timed out) and the tail of its output."""
    if _one(db, "SELECT 1 FROM exec_runs WHERE id = ?", (c["id"],)) is None:
        raise NotFound(f"no exec run {c['id']}")
    results = c.get("results", {})
    for r in results.values():
        if isinstance(r.get("output"), str):
            r["output"] = r["output"][-MAX_OUTPUT_TAIL:]
    failed = sum(1 for r in results.values() if r.get("exit_code") != 0)
    db.execute("UPDATE exec_runs SET finished_at = ?, results = ?, failed = ? WHERE id = ?",
               (c["time"], json.dumps(results), failed, c["id"]))
    return {"id": c["id"], "failed": failed}
