"""`dcosd vip list`: the cluster's virtual IPs, their addresses, DNS names and backends."""

from __future__ import annotations

from typing import Any

import click

from dcosd.cli.output import emit_json, table


@click.group()
def vip() -> None:
    """Virtual IPs: NAME.marathon.l4lb.<domain>:PORT balanced onto an app's healthy instances."""


@vip.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def vip_list(obj: Any, as_json: bool) -> None:
    """List every VIP with its address, DNS name and backends (and declarations left out)."""
    body = obj.client.get("/dcosd/v1/vips")
    if as_json:
        emit_json(body)
        return
    table(["VIP", "ADDRESS", "DNS NAME", "BACKENDS"],
          [[v["vip"], f"{v['ip']}:{v['port']}", v["dns"], ", ".join(f"{h}:{p}" for h, p in v["backends"]) or "-"]
           for v in body["vips"]])
    for p in body.get("problems", []):
        click.echo(f"left out: {p}", err=True)


COMMANDS = [vip]
