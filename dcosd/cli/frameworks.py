"""`dcosd framework list|show|teardown`, `dcosd role list`, `dcosd quota set|list`, `dcosd weight set`."""

from __future__ import annotations

import urllib.parse
from typing import Any

import click

from dcosd.cli.output import emit_json, kv, short_state, table, when
from dcosd.errors import ValidationError


def _q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def _res(r: dict[str, Any]) -> str:
    parts = [f"{k}={r[k]:g}" for k in ("cpus", "mem", "disk", "gpus") if r.get(k)]
    return " ".join(parts) or "-"


@click.group()
def framework() -> None:
    """Frameworks: the built-in task queue and Mesos schedulers subscribed to the master."""


@framework.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include torn-down frameworks.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def framework_list(obj: Any, show_all: bool, as_json: bool) -> None:
    """List frameworks with their roles, state, tasks and resources in use."""
    rows = obj.client.get("/dcosd/v1/frameworks", params={"all": "1"} if show_all else None)["frameworks"]
    if as_json:
        emit_json(rows)
        return
    table(["ID", "NAME", "ROLES", "STATE", "TASKS", "USED"],
          [[f["id"], f["name"], ",".join(f["roles"]), f["state"], f["tasks"], _res(f["used"])] for f in rows])


@framework.command("show")
@click.argument("framework_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def framework_show(obj: Any, framework_id: str, as_json: bool) -> None:
    """Show one framework (by id, unique id prefix or name): info, tasks, outstanding offers."""
    f = obj.client.get(f"/dcosd/v1/frameworks/{_q(framework_id)}")
    if as_json:
        emit_json(f)
        return
    kv([("id", f["id"]), ("name", f["name"]), ("user", f["user"] or "-"), ("roles", ",".join(f["roles"])),
        ("state", f["state"]), ("failover timeout", f"{f['failover_timeout']:g}s"),
        ("registered", when(f["registered_at"])), ("disconnected", when(f["disconnected_at"])),
        ("removed", when(f["removed_at"])), ("tasks", f["tasks"]), ("used", _res(f["used"])),
        ("offers", len(f["offers"])), ("unacknowledged updates", f["unacknowledged_updates"])])
    if f["task_list"]:
        click.echo("")
        table(["TASK", "STATE", "AGENT", "CPUS", "MEM"],
              [[t["id"], short_state(t["state"]), t["agent_id"], t["resources"].get("cpus"),
                t["resources"].get("mem")] for t in f["task_list"]])


@framework.command("teardown")
@click.argument("framework_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def framework_teardown(obj: Any, framework_id: str, as_json: bool) -> None:
    """Remove a framework for good: its offers are rescinded and its tasks killed."""
    r = obj.client.post(f"/dcosd/v1/frameworks/{_q(framework_id)}/teardown")
    if as_json:
        emit_json(r)
    else:
        click.echo(f"framework {r['framework_id']} torn down; its tasks are being killed")


@click.group()
def role() -> None:
    """Roles: weights, quotas and what each holds."""


@role.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def role_list(obj: Any, as_json: bool) -> None:
    """List roles with weight, quota limits, allocated resources and dominant share."""
    rows = obj.client.get("/dcosd/v1/roles")["roles"]
    if as_json:
        emit_json(rows)
        return
    table(["ROLE", "WEIGHT", "QUOTA", "ALLOCATED", "SHARE", "FRAMEWORKS"],
          [[r["name"], f"{r['weight']:g}", _res(r["quota"]), _res(r["allocated"]), f"{r['share']:.3f}",
            len(r["frameworks"])] for r in rows])


def _limits(pairs: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep:
            raise ValidationError(f"{p!r} is not NAME=VALUE (e.g. cpus=4 mem=8192)")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise ValidationError(f"{k}: {v!r} is not a number") from None
    return out


@click.group()
def quota() -> None:
    """Quota: per-role limits on scalar resources (cpus, mem, disk, gpus)."""


@quota.command("set")
@click.argument("role_name")
@click.argument("limits", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def quota_set(obj: Any, role_name: str, limits: tuple[str, ...], as_json: bool) -> None:
    """Limit ROLE: dcosd quota set ROLE cpus=4 mem=8192 (no limits removes the quota)."""
    parsed = _limits(limits)
    client = obj.client
    if parsed:
        with client._request("PUT", f"/dcosd/v1/roles/{_q(role_name)}/quota", body={"limits": parsed}) as resp:
            import json

            r = json.loads(resp.read())
    else:
        with client._request("DELETE", f"/dcosd/v1/roles/{_q(role_name)}/quota") as resp:
            import json

            r = json.loads(resp.read())
    if as_json:
        emit_json(r)
    else:
        click.echo(f"quota of {r['role']}: {_res(r['limits']) if r['limits'] else 'none'}")


@quota.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def quota_list(obj: Any, as_json: bool) -> None:
    """List roles that have a quota, with what they consume of it."""
    rows = [r for r in obj.client.get("/dcosd/v1/roles")["roles"] if r["quota"]]
    if as_json:
        emit_json([{"role": r["name"], "limits": r["quota"], "consumed": r["consumed_quota"]} for r in rows])
        return
    table(["ROLE", "LIMITS", "CONSUMED"], [[r["name"], _res(r["quota"]), _res(r["consumed_quota"])] for r in rows])


@click.group()
def weight() -> None:
    """Weights: a role's weight in weighted DRF (default 1)."""


@weight.command("set")
@click.argument("role_name")
@click.argument("value", type=float)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def weight_set(obj: Any, role_name: str, value: float, as_json: bool) -> None:
    """Set ROLE's weight: dcosd weight set ROLE 3."""
    import json

    with obj.client._request("PUT", f"/dcosd/v1/roles/{_q(role_name)}/weight", body={"weight": value}) as resp:
        r = json.loads(resp.read())
    if as_json:
        emit_json(r)
    else:
        click.echo(f"weight of {r['role']}: {r['weight']:g}")


COMMANDS = [framework, role, quota, weight]
