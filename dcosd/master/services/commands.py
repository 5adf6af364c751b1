"""Commands of the service framework's desired state: apps, their versions, groups, deployments.

Registered in the state machine's one dispatch table (machine.py imports this
module). Deterministic like every handler: versions, ids and times come in the
command; what a change means (start, restart, scale, stop; the steps in
dependency order; what to roll back to) is decided here, inside the
transaction, from the committed state — so two concurrent PUTs can never both
pass the deployment lock, and nothing is ever half-applied.

Observed state (the instances) stays in the ``tasks`` table; the framework
drives it toward what these tables say.
"""

from __future__ import annotations

import json
from typing import Any

import apsw

from dcosd.errors import Conflict, NotFound, ValidationError
from dcosd.master.services.appdef import config_key
from dcosd.master.services.planner import deployment_steps
from dcosd.master.state.machine import Command, _one, handler


def _app_row(db: apsw.Connection, app_id: str) -> dict[str, Any] | None:
    row = _one(db, "SELECT spec, version, config_version FROM apps WHERE id = ?", (app_id,))
    if row is None:
        return None
    return {"spec": json.loads(row[0]), "version": row[1], "config_version": row[2]}


def locked_by(db: apsw.Connection, app_ids: set[str]) -> list[str]:
    out = []
    for did, plan in db.execute("SELECT id, plan FROM deployments ORDER BY created_at, id"):
        if set(json.loads(plan)["affectedApps"]) & app_ids:
            out.append(did)
    return out


@handler("app_deploy")
def apply_app_deploy(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """Set the target definition of some apps (None: remove) as one deployment.

    ``apps``: {app_id: spec | None}; ``restart``: app ids to restart even when unchanged;
    ``groups``: {group_id: dependencies | None}; ``force``: cancel deployments holding these apps;
    ``create_only``: app ids that must not exist yet (409 otherwise — a create never replaces).
    """
    version, did, now = c["version"], c["deployment_id"], c["time"]
    targets: dict[str, Any] = c["apps"]
    restart = set(c.get("restart", []))
    if not targets and not c.get("groups"):
        raise ValidationError("nothing to deploy")
    holding = locked_by(db, set(targets))
    if holding and not c.get("force"):
        raise Conflict(f"App is locked by one or more deployments: {', '.join(holding)}. "
                       "Override with force=true.")
    for old in holding:
        db.execute("DELETE FROM deployments WHERE id = ?", (old,))
    actions: dict[str, str] = {}
    original: dict[str, Any] = {}
    for app_id, spec in sorted(targets.items()):
        cur = _app_row(db, app_id)
        original[app_id] = cur["spec"] if cur else None
        if spec is None:
            if cur is None:
                raise NotFound(f"App '{app_id}' does not exist")
            actions[app_id] = "StopApplication"
            db.execute("DELETE FROM apps WHERE id = ?", (app_id,))
            db.execute("DELETE FROM app_versions WHERE app_id = ?", (app_id,))
            continue
        if cur is not None and app_id in c.get("create_only", ()):
            raise Conflict(f"An app with id [{app_id}] already exists.")
        if cur is None:
            actions[app_id] = "StartApplication"
            config_version = version
        elif app_id in restart or config_key(cur["spec"]) != config_key(spec):
            actions[app_id] = "RestartApplication"
            config_version = version
        else:
            actions[app_id] = "ScaleApplication"
            config_version = cur["config_version"]
        db.execute("INSERT OR REPLACE INTO apps (id, spec, version, config_version, created_at) VALUES (?,?,?,?,"
                   " COALESCE((SELECT created_at FROM apps WHERE id = ?), ?))",
                   (app_id, json.dumps(spec), version, config_version, app_id, now))
        db.execute("INSERT OR REPLACE INTO app_versions (app_id, version, spec, created_at) VALUES (?,?,?,?)",
                   (app_id, version, json.dumps(spec), now))
    for gid, deps in sorted(c.get("groups", {}).items()):
        if deps is None:
            db.execute("DELETE FROM app_groups WHERE id = ?", (gid,))
        else:
            db.execute("INSERT OR REPLACE INTO app_groups (id, dependencies, version) VALUES (?,?,?)",
                       (gid, json.dumps(deps), version))
    try:
        steps = deployment_steps({a: (targets[a] or {}).get("dependencies", []) for a in actions})
    except ValueError as exc:
        raise ValidationError(f"dependencies: {exc}") from None
    plan = {"id": did, "version": version, "affectedApps": sorted(actions), "original": original,
            "steps": [[{"action": actions[a], "app": a} for a in step] for step in steps]}
    if actions:
        db.execute("INSERT INTO deployments (id, version, plan, current_step, created_at) VALUES (?,?,?,0,?)",
                   (did, version, json.dumps(plan), now))
    return {"deploymentId": did, "version": version, "actions": actions}


@handler("deployment_step")
def apply_deployment_step(db: apsw.Connection, c: Command) -> bool:
    """The deployment's current step is done: move on (only forward; a stale proposal changes nothing)."""
    db.execute("UPDATE deployments SET current_step = ? WHERE id = ? AND current_step = ?",
               (c["step"] + 1, c["deployment_id"], c["step"]))
    return db.changes() > 0


@handler("deployment_finish")
def apply_deployment_finish(db: apsw.Connection, c: Command) -> dict[str, Any] | None:
    """A deployment ended (all steps done, or cancelled with force): it no longer locks its apps."""
    row = _one(db, "SELECT plan FROM deployments WHERE id = ?", (c["deployment_id"],))
    if row is None:
        if c.get("outcome") == "cancelled":
            raise NotFound(f"DeploymentPlan {c['deployment_id']} does not exist")
        return None
    db.execute("DELETE FROM deployments WHERE id = ?", (c["deployment_id"],))
    return json.loads(row[0])
