"""Reads of the service framework's committed state: apps, versions, deployments, their instances."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dcosd.model.states import ACTIVE_STATES

FRAMEWORK_ID = "marathon"
LABEL_APP = "DCOSD_APP_ID"
LABEL_VERSION = "DCOSD_APP_VERSION"
_LIVE = tuple(s.value for s in ACTIVE_STATES)
_LIVE_SQL = ",".join("?" * len(_LIVE))


@dataclass
class AppRow:
    id: str
    spec: dict[str, Any]
    version: str
    config_version: str


@dataclass
class TaskRow:
    id: str
    app_id: str
    config_version: str
    agent_id: str | None
    state: str
    healthy: bool | None
    kill_requested: bool
    created_at: float
    updated_at: float
    resources: dict[str, Any]
    exit_code: int | None
    message: str


def apps(store: Any) -> dict[str, AppRow]:
    return {r[0]: AppRow(r[0], json.loads(r[1]), r[2], r[3])
            for r in store.query("SELECT id, spec, version, config_version FROM apps ORDER BY id")}


def app(store: Any, app_id: str) -> AppRow | None:
    r = store.query_one("SELECT id, spec, version, config_version FROM apps WHERE id = ?", (app_id,))
    return None if r is None else AppRow(r[0], json.loads(r[1]), r[2], r[3])


def versions(store: Any, app_id: str) -> list[str]:
    return [r[0] for r in store.query("SELECT version FROM app_versions WHERE app_id = ? ORDER BY version DESC",
                                      (app_id,))]


def version_spec(store: Any, app_id: str, version: str) -> dict[str, Any] | None:
    r = store.query_one("SELECT spec FROM app_versions WHERE app_id = ? AND version = ?", (app_id, version))
    return None if r is None else json.loads(r[0])


def groups(store: Any) -> dict[str, dict[str, Any]]:
    return {r[0]: {"dependencies": json.loads(r[1]), "version": r[2]}
            for r in store.query("SELECT id, dependencies, version FROM app_groups")}


def deployments(store: Any) -> list[dict[str, Any]]:
    out = []
    for did, version, plan, step, created in store.query(
            "SELECT id, version, plan, current_step, created_at FROM deployments ORDER BY created_at, id"):
        d = json.loads(plan)
        d["current_step"] = step
        d["created_at"] = created
        out.append(d)
    return out


def _task(r: tuple) -> TaskRow:
    tid, app_id, version, agent, state, healthy, kill, created, updated, res, code, msg = r
    return TaskRow(tid, app_id or "", version or "", agent, state,
                   None if healthy is None else bool(healthy), bool(kill), created, updated, json.loads(res), code,
                   msg or "")


# The app and version labels straight out of the spec's JSON: no full decode of every spec per read.
_COLS = (f"id, json_extract(spec, '$.labels.{LABEL_APP}'), json_extract(spec, '$.labels.{LABEL_VERSION}'), agent_id,"
         " state, healthy, kill_requested, created_at, updated_at, resources, exit_code, message")


def live_tasks(store: Any) -> list[TaskRow]:
    return [_task(r) for r in store.query(
        f"SELECT {_COLS} FROM tasks WHERE framework_id = ? AND state IN ({_LIVE_SQL}) ORDER BY created_at, id",
        (FRAMEWORK_ID, *_LIVE))]


def tasks_by_id(store: Any, ids: list[str]) -> list[TaskRow]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    return [_task(r) for r in store.query(
        f"SELECT {_COLS} FROM tasks WHERE framework_id = ? AND id IN ({marks})", (FRAMEWORK_ID, *ids))]


def started_at(store: Any, ids: list[str]) -> dict[str, float]:
    """When each task first reached TASK_RUNNING."""
    out: dict[str, float] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        for tid, ts in store.query(f"SELECT task_id, MIN(timestamp) FROM task_statuses WHERE state = 'TASK_RUNNING'"
                                   f" AND task_id IN ({marks}) GROUP BY task_id", tuple(chunk)):
            out[tid] = ts
    return out


def agents(store: Any) -> dict[str, dict[str, Any]]:
    return {r[0]: {"hostname": r[1], "ip": r[2], "attributes": json.loads(r[3]), "state": r[4]}
            for r in store.query("SELECT id, hostname, ip, attributes, state FROM agents")}


def draining_agents(store: Any) -> set[str]:
    """Agents in maintenance (``dcosd node drain``): their service instances move elsewhere."""
    return {r[0] for r in store.query("SELECT agent_id FROM node_maintenance")}
