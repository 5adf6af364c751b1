"""Operating the machines: `dcosd node exec|drain|undrain` and `dcosd task exec`.

These join the `node` and `task` groups of nodes.py and tasks.py (registered
there on import), so COMMANDS adds nothing at the top level.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from typing import Any, Iterator

import click

from dcosd.cli.nodes import node
from dcosd.cli.output import emit_json, table, when
from dcosd.cli.tasks import task
from dcosd.errors import ValidationError


def _ndjson(client: Any, path: str, body: dict[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
    resp = client._request("POST", path, body=body, timeout=timeout)
    with resp:
        for line in resp:
            if line.strip():
                yield json.loads(line)


class _Lines:
    """Output chunks → whole lines, each prefixed with its node's name."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.partial: dict[tuple[str, str], str] = {}

    def feed(self, node_name: str, stream: str, data: str) -> None:
        text = self.partial.pop((node_name, stream), "") + data
        *lines, rest = text.split("\n")
        for line in lines:
            self._emit(node_name, stream, line)
        if rest:
            self.partial[(node_name, stream)] = rest

    def flush(self, node_name: str) -> None:
        for key in [k for k in self.partial if k[0] == node_name]:
            self._emit(node_name, key[1], self.partial.pop(key))

    def _emit(self, node_name: str, stream: str, line: str) -> None:
        out = sys.stderr if stream == "stderr" else sys.stdout
        out.write(f"{node_name.ljust(self.width)} | {line}\n")
        out.flush()


@node.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("--all", "all_nodes", is_flag=True, help="Every active node.")
@click.option("--node", "nodes", multiple=True, metavar="ID", help="This node (id or hostname; repeatable).")
@click.option("--attribute", "attributes", multiple=True, metavar="K:V", help="Nodes with this attribute (repeatable: all must match).")
@click.option("--parallel", type=int, default=16, show_default=True, help="Nodes running the command at once.")
@click.option("--timeout", type=float, default=60, show_default=True, help="Seconds before a node's command is killed.")
@click.option("--history", is_flag=True, help="Show past runs (who, what, where, result) instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the event stream, or the history).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def node_exec(obj: Any, all_nodes: bool, nodes: tuple[str, ...], attributes: tuple[str, ...], parallel: int,
              timeout: float, history: bool, as_json: bool, command: tuple[str, ...]) -> int:
    """Run COMMAND on every matching node, as root (needs the operator token).

    Each line of output is labelled with its node; a summary of exit codes ends the run, and the
    exit code is 1 if any node failed. One argument runs through /bin/sh -c:

        dcosd node exec --all -- 'uptime; df -h /'
    """
    client = obj.client
    if history:
        runs = client.get("/dcosd/v1/exec/history", params={"limit": "50"})["runs"]
        if as_json:
            emit_json(runs)
            return 0
        table(["ID", "STARTED", "WHO", "COMMAND", "WHERE", "RESULT"],
              [[r["id"][:8], when(r["started_at"]), r["who"], " ".join(r["command"])[:40],
                ",".join(t.get("task_id", t["hostname"]) for t in r["targets"])[:40],
                "running" if r["finished_at"] is None else
                ("ok" if not r["failed"] else f"{r['failed']} failed: " + ",".join(
                    f"{x['node']}={x['exit_code'] if x['exit_code'] is not None else x.get('error') or 'timeout'}"
                    for x in (r["results"] or {}).values() if x["exit_code"] != 0))[:60]] for r in runs])
        return 0
    if not command:
        raise ValidationError("give a command after --, e.g. dcosd node exec --all -- uptime")
    attrs = {}
    for a in attributes:
        k, sep, v = a.partition(":")
        if not sep or not k:
            raise ValidationError(f"--attribute wants K:V, not {a!r}")
        attrs[k] = v
    body = {"command": list(command), "all": all_nodes, "nodes": list(nodes), "attributes": attrs,
            "parallel": parallel, "timeout": timeout}
    lines = _Lines(0)
    summary: dict[str, Any] = {}
    for ev in _ndjson(client, "/dcosd/v1/exec", body, timeout + 60):
        if as_json:
            click.echo(json.dumps(ev))
        if ev["type"] == "start":
            lines.width = max((len(n["node"]) for n in ev["nodes"]), default=0)
        elif ev["type"] == "output" and not as_json:
            lines.feed(ev["node"], ev["stream"], ev["data"])
        elif ev["type"] == "exit" and not as_json:
            lines.flush(ev["node"])
        elif ev["type"] == "summary":
            summary = ev
    if not summary:
        sys.stderr.write("dcosd: error: the master ended the run without a summary\n")
        return 1
    if not as_json:
        click.echo("")
        table(["NODE", "EXIT", "NOTE"],
              [[r["node"], "-" if r["exit_code"] is None else r["exit_code"],
                r.get("error") or ("timed out" if r.get("timed_out") else "")]
               for r in sorted(summary["results"].values(), key=lambda r: r["node"])])
    return 1 if summary["failed"] else 0


@node.command("drain")
@click.argument("node_id")
@click.option("--reason", default="", help="Why (kept with the maintenance record).")
@click.pass_obj
def node_drain(obj: Any, node_id: str, reason: str) -> None:
    """Stop new placements on a node (committed: survives restarts). Running tasks stay until moved."""
    r = obj.client.post(f"/dcosd/v1/nodes/{urllib.parse.quote(node_id, safe='')}/drain", {"reason": reason})
    click.echo(f"node {r['hostname']} ({r['agent_id']}) is draining" + ("" if r["changed"] else " (already)"))


@node.command("undrain")
@click.argument("node_id")
@click.pass_obj
def node_undrain(obj: Any, node_id: str) -> None:
    """Let a drained node take new work again."""
    r = obj.client.post(f"/dcosd/v1/nodes/{urllib.parse.quote(node_id, safe='')}/undrain")
    click.echo(f"node {r['hostname']} ({r['agent_id']}) takes work again" + ("" if r["changed"] else " (was not draining)"))


@task.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("task_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", type=float, default=60, show_default=True, help="Seconds before the command is killed.")
@click.pass_obj
def task_exec(obj: Any, task_id: str, command: tuple[str, ...], timeout: float) -> int:
    """Run COMMAND inside a running task: its sandbox, cgroup, user and environment.

        dcosd task exec web-1 -- cat /proc/self/cgroup
    """
    client = obj.client
    t = client.resolve_task(task_id)
    code: int | None = None
    error = None
    for msg in _ndjson(client, f"/dcosd/v1/tasks/{urllib.parse.quote(t['id'], safe='')}/exec",
                       {"command": list(command), "timeout": timeout}, timeout + 60):
        if "stream" in msg:
            out = sys.stderr if msg["stream"] == "stderr" else sys.stdout
            out.write(msg["data"])
            out.flush()
        elif "error" in msg:
            error = msg["error"]
        elif "exit_code" in msg:
            code = msg["exit_code"]
            if msg.get("timed_out"):
                error = f"timed out after {timeout:g}s"
    if error:
        sys.stderr.write(f"dcosd: error: {error}\n")
    return 1 if code is None else code


COMMANDS: list[click.Command] = []  # the commands above joined the `node` and `task` groups
