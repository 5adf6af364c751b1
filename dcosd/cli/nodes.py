"""`dcosd node list|show` and `dcosd cluster status`."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import click

from dcosd.cli.output import emit_json, kv, short_state, table, when


def _res(r: dict[str, Any]) -> str:
    return f"cpus={r.get('cpus', 0):g} mem={r.get('mem', 0):g}"


def _allocation(a: dict[str, Any] | None) -> list[tuple[str, str]]:
    """What the allocator holds on the node: offered to frameworks, allocated to tasks, reserved by role."""
    if not a:
        return [("allocation", "- (the allocator runs on the leading master)")]
    reserved = "; ".join(f"{role}: {_res(r)}" for role, r in a["reserved"].items()) or "-"
    return [("offered", _res(a["offered"])), ("allocated", _res(a["allocated"])), ("reserved", reserved)]


@click.group()
def node() -> None:
    """Inspect the agents (nodes) of the cluster."""


@node.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def node_list(obj: Any, as_json: bool) -> None:
    """List nodes with their state and used/total resources."""
    nodes = obj.client.get("/dcosd/v1/nodes")["nodes"]
    if as_json:
        emit_json(nodes)
        return
    table(["ID", "HOSTNAME", "IP", "STATE", "BACKEND", "CPUS (USED/TOTAL)", "MEM (USED/TOTAL)"],
          [[n["id"], n["hostname"], n["ip"], n["state"], n["backend"].get("backend", "?"),
            f"{n['used'].get('cpus', 0):g}/{n['resources'].get('cpus', 0):g}",
            f"{n['used'].get('mem', 0):g}/{n['resources'].get('mem', 0):g}"] for n in nodes])


@node.command("show")
@click.argument("node_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def node_show(obj: Any, node_id: str, as_json: bool) -> None:
    """Show one node (by id or hostname): resources, attributes, backend, tasks."""
    n = obj.client.get(f"/dcosd/v1/nodes/{urllib.parse.quote(node_id, safe='')}")
    if as_json:
        emit_json(n)
        return
    b = n["backend"]
    kv([("id", n["id"]), ("hostname", n["hostname"]), ("ip", n["ip"]), ("address", n["address"]),
        ("state", n["state"]), ("connected", n["connected"]),
        ("backend", f"{b.get('backend', '?')} (cgroup {b.get('cgroup_version', '?')},"
                    f" host layout {b.get('cgroup_layout', '?')})"),
        ("total", _res(n["resources"])), ("used", _res(n["used"])), ("free", _res(n["free"])),
        *_allocation(n.get("allocation")),
        ("ports", ",".join(f"{a}-{z}" for a, z in n["resources"].get("ports", []))),
        ("attributes", ";".join(f"{k}:{v}" for k, v in n["attributes"].items()) or "-"),
        ("registered", when(n["registered_at"])), ("version", n.get("version"))])
    if n["tasks"]:
        click.echo("")
        table(["TASK", "STATE", "CPUS", "MEM"],
              [[t["id"], short_state(t["state"]), t["resources"].get("cpus"), t["resources"].get("mem")]
               for t in n["tasks"]])


@click.group()
def cluster() -> None:
    """The cluster as a whole."""


@cluster.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def cluster_status(obj: Any, as_json: bool) -> None:
    """Masters, leader, agents, tasks and resources at a glance."""
    c = obj.client.get("/dcosd/v1/cluster")
    if as_json:
        emit_json(c)
        return
    total, used = c["resources"]["total"], c["resources"]["used"]
    kv([("leader", c["leader"]), ("version", c["version"]),
        *([("cluster id", c["cluster_id"])] if c.get("cluster_id") else []),
        ("auth", "on" if c["auth"] else "off (loopback only)"),
        ("agents", f"{c['agents']['active']} active of {c['agents']['total']}"),
        ("cpus", f"{used.get('cpus', 0):g} used of {total.get('cpus', 0):g}"),
        ("mem", f"{used.get('mem', 0):g} MB used of {total.get('mem', 0):g} MB"),
        ("tasks", ", ".join(f"{short_state(k).lower()} {v}" for k, v in sorted(c["tasks"].items()) if v) or "none")])
    click.echo("")
    def _opt(v: Any) -> Any:
        return "-" if v is None else v

    # The leader's view when there is a leader: match index and lag of every follower.
    table(["MASTER", "ID", "ROLE", "LEADER", "TERM", "COMMIT INDEX", "MATCH INDEX", "LAG"],
          [[m["url"], m.get("id", "-"), m.get("role") or ("leader" if m["leader"] else
                                                           "unreachable" if m.get("reachable") is False else "follower"),
            "yes" if m["leader"] else "no", m["term"], _opt(m.get("commit_index")), _opt(m.get("match_index")),
            _opt(m.get("lag"))] for m in c["masters"]])


@cluster.command("backup")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def cluster_backup(obj: Any, file: Path) -> None:
    """Save the replicated state to FILE: every write acknowledged before this call, nothing of any
    master's own (Raft log, votes). To restore, start every master of a new cluster with an empty data
    directory and `dcosd master --restore-from FILE`."""
    size, headers = obj.client.download_to("/dcosd/v1/cluster/backup", file)
    click.echo(f"saved the state at index {headers.get('X-Dcosd-Backup-Index')} (term "
               f"{headers.get('X-Dcosd-Backup-Term')}) to {file}: {size} bytes")


@cluster.command("transfer-leader")
@click.option("--to", "to", metavar="ID", help="The master to lead (default: the follower with the longest log).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def cluster_transfer_leader(obj: Any, to: str | None, as_json: bool) -> None:
    """Hand leadership to another master, e.g. before maintenance of the leader's machine: writes pause
    for a round trip and an election, not for an election timeout. (A leader stopped with SIGTERM,
    `systemctl stop`, does this by itself.)"""
    r = obj.client.post("/dcosd/v1/cluster/leader", {"to": to} if to else {})
    if as_json:
        emit_json(r)
    elif r["leader"] == r["previous"]:
        click.echo(f"master {r['leader']} leads already (term {r['term']})")
    else:
        click.echo(f"leadership moved from master {r['previous']} to master {r['leader']} at {r['leader_url']} "
                   f"(term {r['term']})")


COMMANDS = [node, cluster]
