"""Marathon JSON of apps, tasks, deployments, groups and queue items — only the keys marathon-python knows.

marathon-python 0.13 builds every model with ``cls(**fields)``: one key it does
not know is a TypeError in the user's program. So every shape here is spelled
out with exactly the keys listed in COMPAT.md §3, and nothing else.
"""

from __future__ import annotations

from typing import Any

from dcosd.master.services import reads
from dcosd.master.services.appdef import fmt_time
from dcosd.model.resources import Resources

APP_KEYS = ("id", "cmd", "args", "cpus", "mem", "disk", "gpus", "instances", "env", "labels", "user", "uris", "fetch",
            "portDefinitions", "ports", "requirePorts", "constraints", "healthChecks", "backoffSeconds",
            "backoffFactor", "maxLaunchDelaySeconds", "upgradeStrategy", "dependencies", "killSelection",
            "taskKillGracePeriodSeconds", "acceptedResourceRoles", "role", "container", "executor", "storeUrls",
            "taskRateLimit", "unreachableStrategy", "ipAddress", "readinessChecks", "secrets", "residency",
            "networks")


def task_json(t: reads.TaskRow, agents: dict[str, dict[str, Any]], started: dict[str, float],
              checked: bool) -> dict[str, Any]:
    agent = agents.get(t.agent_id or "", {})
    ports = [p for lo, hi in Resources.from_dict(t.resources).ports for p in range(lo, hi + 1)]
    out: dict[str, Any] = {
        "appId": t.app_id, "host": agent.get("hostname", ""), "id": t.id, "ports": ports, "servicePorts": [],
        "slaveId": t.agent_id, "stagedAt": fmt_time(t.created_at),
        "startedAt": fmt_time(started[t.id]) if t.id in started else None, "version": t.config_version,
        "ipAddresses": [{"ipAddress": agent["ip"], "protocol": "IPv4"}] if agent.get("ip") else [],
        "state": t.state, "localVolumes": [], "role": "*", "healthCheckResults": [],
    }
    if checked and t.healthy is not None:
        out["healthCheckResults"] = [{"alive": t.healthy, "consecutiveFailures": 0 if t.healthy else 1,
                                      "firstSuccess": None, "lastFailure": None, "lastSuccess": None,
                                      "lastFailureCause": None, "taskId": t.id, "instanceId": t.id}]
    return out


def counts(a: reads.AppRow, tasks: list[reads.TaskRow]) -> dict[str, int]:
    checked = bool(a.spec["healthChecks"])
    running = [t for t in tasks if t.state == "TASK_RUNNING"]
    return {
        "tasksRunning": len(running),
        "tasksStaged": sum(t.state in ("TASK_STAGING", "TASK_STARTING") for t in tasks),
        "tasksHealthy": sum(t.healthy is True for t in running) if checked else 0,
        "tasksUnhealthy": sum(t.healthy is False for t in running) if checked else 0,
    }


def app_json(a: reads.AppRow, tasks: list[reads.TaskRow], deployments: list[dict[str, Any]],
             last_failure: dict[str, Any] | None = None, *, embed_tasks: bool = False,
             agents: dict[str, dict[str, Any]] | None = None, started: dict[str, float] | None = None,
             version_only: bool = False) -> dict[str, Any]:
    out = {k: a.spec.get(k) for k in APP_KEYS}
    out["version"] = a.version
    if version_only:
        return out
    out["versionInfo"] = {"lastScalingAt": a.version, "lastConfigChangeAt": a.config_version}
    out.update(counts(a, tasks))
    out["deployments"] = [{"id": d["id"]} for d in deployments if a.id in d["affectedApps"]]
    if last_failure is not None:
        out["lastTaskFailure"] = last_failure
    if embed_tasks:
        checked = bool(a.spec["healthChecks"])
        out["tasks"] = [task_json(t, agents or {}, started or {}, checked) for t in tasks]
    return out


def deployment_json(d: dict[str, Any]) -> dict[str, Any]:
    steps = [{"actions": [{"action": x["action"], "app": x["app"]} for x in step]} for step in d["steps"]]
    cur = d["current_step"]
    current = d["steps"][cur] if cur < len(d["steps"]) else []
    return {"id": d["id"], "version": d["version"], "affectedApps": d["affectedApps"], "affectedPods": [],
            "steps": steps, "currentActions": [{"action": x["action"], "app": x["app"], "readinessCheckResults": []}
                                               for x in current],
            "currentStep": min(cur + 1, len(steps)), "totalSteps": len(steps)}


def group_tree(apps: list[dict[str, Any]], groups: dict[str, dict[str, Any]], root: str,
               version: str) -> dict[str, Any]:
    """The group ``root`` with its apps and sub-groups (implicit from app paths, or explicit)."""
    prefix = root.rstrip("/") + "/"
    children: set[str] = set()
    mine = []
    for a in apps:
        rest = a["id"][len(prefix):] if a["id"].startswith(prefix) else None
        if rest is None:
            continue
        if "/" in rest:
            children.add(prefix + rest.split("/", 1)[0])
        else:
            mine.append(a)
    for g in groups:
        rest = g[len(prefix):] if g.startswith(prefix) else None
        if rest:
            children.add(prefix + rest.split("/", 1)[0])
    return {"id": root, "apps": mine, "dependencies": groups.get(root, {}).get("dependencies", []),
            "groups": [group_tree(apps, groups, c, version) for c in sorted(children)], "pods": [],
            "version": groups.get(root, {}).get("version", version)}
