"""`dcosd app add|list|show|scale|restart|remove|versions|rollback` and `dcosd deployment list|watch|cancel`.

A thin client of the master's Marathon API (/v2) plus /dcosd/v1/services for
progress and why instances wait. Commands that start a deployment follow it
(instances ready / target) until it ends, unless --no-wait; the exit code says
how it ended.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import click

from dcosd.cli.output import emit_json, kv, table
from dcosd.errors import DcosdError, NotFound, ValidationError

WATCH_INTERVAL = 0.5


def _path(app_id: str) -> str:
    return urllib.parse.quote("/" + app_id.strip("/"), safe="/")


def _call(client: Any, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
    with client._request(method, path, body=body, params=params) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def _force(force: bool) -> dict[str, str]:
    return {"force": "true"} if force else {}


def _deployments(client: Any) -> list[dict[str, Any]]:
    return client.get("/dcosd/v1/services/deployments")["deployments"]


def _progress_line(d: dict[str, Any]) -> str:
    parts = []
    for app_id, p in sorted(d.get("apps", {}).items()):
        s = f"{app_id} {p['ready']}/{p['target']} ready"
        if p.get("waiting"):
            s += f" — {p['waiting']}"
        parts.append(s)
    actions = ", ".join(f"{a['action']} {a['app']}" for a in d["currentActions"])
    return f"step {d['currentStep']}/{d['totalSteps']} ({actions}): " + "; ".join(parts)


def watch(client: Any, deployment_id: str, timeout: float | None, as_json: bool) -> int:
    """Follow a deployment until it leaves the list (done) or the timeout; print progress as it changes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    while True:
        current = [d for d in _deployments(client) if d["id"] == deployment_id]
        if not current:
            if as_json:
                emit_json({"id": deployment_id, "outcome": "success"})
            else:
                click.echo(f"deployment {deployment_id} finished")
            return 0
        line = _progress_line(current[0])
        if line != last and not as_json:
            click.echo(line)
            last = line
        if deadline is not None and time.monotonic() > deadline:
            if as_json:
                emit_json({"id": deployment_id, "outcome": "timeout", "deployment": current[0]})
            else:
                sys.stderr.write(f"dcosd: deployment {deployment_id} still running after {timeout:g}s: {line}\n")
            return 1
        time.sleep(WATCH_INTERVAL)


def _after_change(client: Any, out: dict[str, Any], wait: bool, timeout: float | None, as_json: bool) -> int:
    if not wait:
        if as_json:
            emit_json(out)
        else:
            click.echo(f"deployment {out['deploymentId']} (version {out['version']})")
        return 0
    if not as_json:
        click.echo(f"deployment {out['deploymentId']} started (version {out['version']})")
    return watch(client, out["deploymentId"], timeout, as_json)


_wait_opts = [
    click.option("--no-wait", "no_wait", is_flag=True, help="Return once the deployment has started."),
    click.option("--timeout", type=float, default=None, help="Stop following after this many seconds (exit 1)."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON."),
]


def wait_options(fn: Any) -> Any:
    for opt in reversed(_wait_opts):
        fn = opt(fn)
    return fn


@click.group("app")
def app() -> None:
    """Long-running services (Marathon apps): add, scale, restart, roll back."""


@app.command("add")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--force", is_flag=True, help="Take over apps locked by a running deployment.")
@wait_options
@click.pass_obj
def app_add(obj: Any, file: str, force: bool, no_wait: bool, timeout: float | None, as_json: bool) -> int:
    """Add an app from a Marathon JSON definition (FILE, or - for stdin); an existing app is updated."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
        body = json.loads(text)
    except OSError as exc:
        raise ValidationError(f"cannot read {file}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{file} is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise ValidationError(f"{file}: an app definition with an id was expected")
    client = obj.client
    out = _call(client, "PUT", "/v2/apps" + _path(body["id"]), body, _force(force))
    return _after_change(client, out, not no_wait, timeout, as_json)


@app.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def app_list(obj: Any, as_json: bool) -> None:
    """Apps with their instances (running, healthy / target) and deployments."""
    apps = obj.client.get("/v2/apps")["apps"]
    if as_json:
        emit_json(apps)
        return
    table(["ID", "INSTANCES", "RUNNING", "HEALTHY", "CPUS", "MEM", "DEPLOYING", "CMD"],
          [[a["id"], a["instances"], a["tasksRunning"], a["tasksHealthy"] if a["healthChecks"] else "-",
            f"{a['cpus']:g}", f"{a['mem']:g}", "yes" if a["deployments"] else "",
            (a["cmd"] or " ".join(a["args"] or []))[:40]] for a in apps])


@app.command("show")
@click.argument("app_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def app_show(obj: Any, app_id: str, as_json: bool) -> None:
    """An app's definition, instances, progress and why instances wait."""
    out = obj.client.get("/dcosd/v1/services/apps" + _path(app_id))
    if as_json:
        emit_json(out)
        return
    a, p = out["app"], out["progress"]
    kv([("id", a["id"]), ("version", a["version"]), ("command", a["cmd"] or json.dumps(a["args"])),
        ("resources", f"cpus={a['cpus']:g} mem={a['mem']:g} disk={a['disk']:g}"),
        ("instances", f"{a['tasksRunning']} running, {a['tasksHealthy']} healthy, {a['instances']} wanted"),
        ("constraints", ", ".join(":".join(c) for c in a["constraints"]) or "-"),
        ("health checks", ", ".join(h["protocol"] for h in a["healthChecks"]) or "-"),
        ("deployments", ", ".join(d["id"] for d in a["deployments"]) or "-"),
        ("waiting", p["waiting"] or "-"), ("launch delay", f"{out['queueDelaySeconds']:g}s"),
        ("last failure", (a.get("lastTaskFailure") or {}).get("message", "-") or "-")])
    if a.get("tasks"):
        click.echo("")
        table(["TASK", "HOST", "STATE", "HEALTHY", "PORTS", "VERSION"],
              [[t["id"], t["host"], t["state"].removeprefix("TASK_"),
                ("yes" if t["healthCheckResults"][0]["alive"] else "no") if t["healthCheckResults"] else "-",
                ",".join(map(str, t["ports"])), t["version"]] for t in a["tasks"]])


@app.command("scale")
@click.argument("app_id")
@click.argument("instances", type=click.IntRange(0, 100000))
@click.option("--force", is_flag=True, help="Take over an app locked by a running deployment.")
@wait_options
@click.pass_obj
def app_scale(obj: Any, app_id: str, instances: int, force: bool, no_wait: bool, timeout: float | None,
              as_json: bool) -> int:
    """Set how many instances of an app run."""
    out = _call(obj.client, "PUT", "/v2/apps" + _path(app_id), {"instances": instances}, _force(force))
    return _after_change(obj.client, out, not no_wait, timeout, as_json)


@app.command("restart")
@click.argument("app_id")
@click.option("--force", is_flag=True, help="Take over an app locked by a running deployment.")
@wait_options
@click.pass_obj
def app_restart(obj: Any, app_id: str, force: bool, no_wait: bool, timeout: float | None, as_json: bool) -> int:
    """Replace every instance, following the app's upgradeStrategy."""
    out = _call(obj.client, "POST", "/v2/apps" + _path(app_id) + "/restart", {}, _force(force))
    return _after_change(obj.client, out, not no_wait, timeout, as_json)


@app.command("remove")
@click.argument("app_id")
@click.option("--force", is_flag=True, help="Take over an app locked by a running deployment.")
@wait_options
@click.pass_obj
def app_remove(obj: Any, app_id: str, force: bool, no_wait: bool, timeout: float | None, as_json: bool) -> int:
    """Remove an app and stop its instances."""
    out = _call(obj.client, "DELETE", "/v2/apps" + _path(app_id), None, _force(force))
    return _after_change(obj.client, out, not no_wait, timeout, as_json)


@app.command("versions")
@click.argument("app_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def app_versions(obj: Any, app_id: str, as_json: bool) -> None:
    """The versions of an app, newest first (for rollback)."""
    versions = obj.client.get("/v2/apps" + _path(app_id) + "/versions")["versions"]
    if as_json:
        emit_json(versions)
    else:
        for v in versions:
            click.echo(v)


@app.command("rollback")
@click.argument("app_id")
@click.argument("version", required=False)
@click.option("--force", is_flag=True, help="Take over an app locked by a running deployment.")
@wait_options
@click.pass_obj
def app_rollback(obj: Any, app_id: str, version: str | None, force: bool, no_wait: bool, timeout: float | None,
                 as_json: bool) -> int:
    """Go back to VERSION of an app (default: the one before the current)."""
    client = obj.client
    if version is None:
        versions = client.get("/v2/apps" + _path(app_id) + "/versions")["versions"]
        if len(versions) < 2:
            raise NotFound(f"app {app_id} has no earlier version")
        version = versions[1]
    out = _call(client, "PUT", "/v2/apps" + _path(app_id), {"version": version}, _force(force))
    return _after_change(client, out, not no_wait, timeout, as_json)


@click.group("deployment")
def deployment() -> None:
    """Running deployments of apps: list, follow, cancel (which rolls back)."""


@deployment.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def deployment_list(obj: Any, as_json: bool) -> None:
    """Running deployments with their progress and why instances wait."""
    deps = _deployments(obj.client)
    if as_json:
        emit_json(deps)
        return
    table(["ID", "APPS", "STEP", "PROGRESS"],
          [[d["id"], ",".join(d["affectedApps"]), f"{d['currentStep']}/{d['totalSteps']}",
            _progress_line(d).split(": ", 1)[1]] for d in deps])


@deployment.command("watch")
@click.argument("deployment_id")
@click.option("--timeout", type=float, default=None, help="Stop following after this many seconds (exit 1).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def deployment_watch(obj: Any, deployment_id: str, timeout: float | None, as_json: bool) -> int:
    """Follow a deployment until it ends."""
    if not any(d["id"] == deployment_id for d in _deployments(obj.client)):
        raise NotFound(f"no running deployment {deployment_id}")
    return watch(obj.client, deployment_id, timeout, as_json)


@deployment.command("cancel")
@click.argument("deployment_id")
@click.option("--force", is_flag=True, help="Stop it where it is instead of rolling back.")
@wait_options
@click.pass_obj
def deployment_cancel(obj: Any, deployment_id: str, force: bool, no_wait: bool, timeout: float | None,
                      as_json: bool) -> int:
    """Cancel a deployment: its apps roll back to what they were before it (a new deployment)."""
    client = obj.client
    out = _call(client, "DELETE", f"/v2/deployments/{urllib.parse.quote(deployment_id, safe='')}", None,
                _force(force))
    if force or not out or "deploymentId" not in out:
        if as_json:
            emit_json({"id": deployment_id, "outcome": "cancelled"})
        else:
            click.echo(f"deployment {deployment_id} cancelled")
        return 0
    return _after_change(client, out, not no_wait, timeout, as_json)


COMMANDS = [app, deployment]
__all__ = ["COMMANDS", "DcosdError"]
