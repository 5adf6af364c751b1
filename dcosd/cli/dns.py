"""`dcosd dns lookup|list`: what the masters' Mesos-DNS answers, through its HTTP API."""

from __future__ import annotations

import urllib.parse
from typing import Any

import click

from dcosd.cli.output import emit_json, table


@click.group()
def dns() -> None:
    """Service discovery: the names Mesos-DNS gives tasks, agents and masters."""


@dns.command("lookup")
@click.argument("name")
@click.option("--type", "rtype", type=click.Choice(["A", "SRV"], case_sensitive=False), default="A",
              show_default=True, help="Record type.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def lookup(obj: Any, name: str, rtype: str, as_json: bool) -> int:
    """Resolve NAME as the masters' DNS would (e.g. leader.mesos, _web._tcp.dcosd.mesos)."""
    q = urllib.parse.quote(name.rstrip("."), safe="")
    if rtype.upper() == "SRV":
        rows = obj.client.get(f"/v1/services/{q}")
        rows = [r for r in rows if r.get("host")]
        if as_json:
            emit_json(rows)
        elif rows:
            table(["SERVICE", "HOST", "IP", "PORT"], [[r["service"], r["host"], r["ip"], r["port"]] for r in rows])
    else:
        rows = [r for r in obj.client.get(f"/v1/hosts/{q}") if r.get("ip")]
        if as_json:
            emit_json(rows)
        elif rows:
            table(["HOST", "IP"], [[r["host"], r["ip"]] for r in rows])
    if not rows:
        click.echo(f"dcosd: {name}: no {rtype.upper()} records", err=True)
        return 3
    return 0


@dns.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_names(obj: Any, as_json: bool) -> None:
    """Every name in the zone, per framework and task (Mesos-DNS's /v1/enumerate)."""
    data = obj.client.get("/v1/enumerate")
    if as_json:
        emit_json(data)
        return
    rows = []
    for fw in data.get("frameworks", []):
        for task in fw.get("tasks", []):
            for rec in task.get("records", []):
                rows.append([fw.get("name"), task.get("name"), rec.get("rtype"), rec.get("name"), rec.get("host")])
    table(["FRAMEWORK", "TASK", "TYPE", "NAME", "ANSWER"], rows)


COMMANDS = [dns]
