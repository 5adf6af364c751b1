"""`dcosd run` and `dcosd task list|show|kill|logs`."""

from __future__ import annotations

import re
import sys
import threading
import time
import urllib.parse
from typing import Any

import click

from dcosd.cli.output import emit_json, kv, short_state, table, when
from dcosd.errors import DcosdError, ValidationError

_SHELL_CHARS = re.compile(r"[\s;&|<>()$`\\\"'*?~#]")
TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED", "TASK_GONE",
            "TASK_GONE_BY_OPERATOR"}


def _q(task_id: str) -> str:
    return urllib.parse.quote(task_id, safe="")


def task_exit_code(task: dict[str, Any]) -> int:
    """What `run --wait` exits with: the command's code, else a fixed code per outcome."""
    state = task["state"]
    if state == "TASK_FINISHED":
        return 0
    if task.get("exit_code") is not None:
        return int(task["exit_code"])
    if state == "TASK_KILLED":
        return 137
    if state == "TASK_FAILED" and "not found" in (task.get("message") or ""):
        return 127
    return 125 if state != "TASK_FAILED" else 1


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise ValidationError(f"--env {p!r} is not KEY=VALUE")
        env[k] = v
    return env


def _vip_label(vips: tuple[str, ...], nports: int) -> str:
    from dcosd.vips.table import VipError, label_value

    if len(vips) > nports:
        raise ValidationError(f"--vip needs a host port for each VIP: {len(vips)} --vip, {nports} --port")
    try:
        return label_value(enumerate(vips))
    except VipError as exc:
        raise ValidationError(f"--vip: {exc}") from None


@click.command(context_settings={"ignore_unknown_options": False})
@click.option("--cpus", type=float, default=0.1, show_default=True, help="CPU shares (a CFS quota).")
@click.option("--mem", type=float, default=32, show_default=True, help="Memory limit in MB.")
@click.option("--disk", type=float, default=0, show_default=True, help="Disk in MB.")
@click.option("--name", help="Task name (default: the command's name).")
@click.option("--env", "-e", multiple=True, metavar="K=V", help="Environment variable (repeatable).")
@click.option("--user", help="Run as this user (default: the agent's default, nobody as root).")
@click.option("--grace", type=float, default=3.0, show_default=True, help="Seconds between SIGTERM and SIGKILL.")
@click.option("--port", "ports", type=click.IntRange(1, 65535), multiple=True, metavar="PORT",
              help="Host port the task needs (repeatable; the task sees them, lowest first, as $PORT0, $PORT1, …).")
@click.option("--vip", "vips", multiple=True, metavar="/NAME:PORT",
              help="Balance NAME.marathon.l4lb.<domain>:PORT onto this task's host port (the i-th --vip "
                   "onto the i-th lowest --port; repeatable).")
@click.option("--wait", is_flag=True, help="Follow the task's output and exit with its exit code.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.argument("command", nargs=-1, required=True)
@click.pass_obj
def run(obj: Any, cpus: float, mem: float, disk: float, name: str | None, env: tuple[str, ...], user: str | None,
        grace: float, ports: tuple[int, ...], vips: tuple[str, ...], wait: bool, as_json: bool,
        command: tuple[str, ...]) -> int:
    """Run a command as a task somewhere in the cluster: dcosd run [OPTIONS] -- CMD [ARGS...]

    A single argument with spaces or shell syntax runs under /bin/sh -c.
    """
    spec: dict[str, Any] = {"resources": {"cpus": cpus, "mem": mem, "disk": disk}, "env": _parse_env(env),
                            "kill_grace_seconds": grace}
    if len(command) == 1 and _SHELL_CHARS.search(command[0]):
        spec["cmd"] = command[0]
    else:
        spec["argv"] = list(command)
    if name:
        spec["name"] = name
    if user:
        spec["user"] = user
    if ports:
        if len(set(ports)) != len(ports):
            raise ValidationError("--port: each port once")
        spec["resources"]["ports"] = [[p, p] for p in ports]
    if vips:
        spec["labels"] = {"DCOSD_VIPS": _vip_label(vips, len(ports))}
    client = obj.client
    task_id = client.post("/dcosd/v1/tasks", spec)["task_id"]
    if not wait:
        if as_json:
            emit_json({"task_id": task_id})
        else:
            click.echo(task_id)
        return 0
    task = _follow_until_done(client, task_id, quiet=as_json)
    if as_json:
        emit_json(task)
    elif task["state"] != "TASK_FINISHED":
        click.echo(f"dcosd: task {task_id} {short_state(task['state'])}: {task.get('message', '')}", err=True)
    return task_exit_code(task)


def _follow_until_done(client: Any, task_id: str, quiet: bool) -> dict[str, Any]:
    """Stream stdout and stderr while the task runs; return the final task record."""
    task = client.get(f"/dcosd/v1/tasks/{_q(task_id)}")
    while task["state"] in ("QUEUED", "TASK_STAGING"):
        task = client.get(f"/dcosd/v1/tasks/{_q(task_id)}", params={"wait": "1"})
        if task["state"] == "QUEUED" and task.get("pending_reason") and not quiet:
            click.echo(f"dcosd: waiting: {task['pending_reason']}", err=True)
            time.sleep(1)
    if task["state"] not in TERMINAL or task.get("agent_id"):
        if not quiet and task.get("agent_id"):
            errs: list[BaseException] = []
            t = threading.Thread(target=_copy_stream, args=(client, task_id, "stderr", sys.stderr.buffer, errs),
                                 daemon=True)
            t.start()
            _copy_stream(client, task_id, "stdout", sys.stdout.buffer, errs)
            t.join()
    while task["state"] not in TERMINAL:
        task = client.get(f"/dcosd/v1/tasks/{_q(task_id)}", params={"wait": "30"}, timeout=60)
    return task


def _copy_stream(client: Any, task_id: str, stream: str, out: Any, errs: list[BaseException]) -> None:
    try:
        for chunk in client.stream(f"/dcosd/v1/tasks/{_q(task_id)}/logs/{stream}", {"follow": "1"}):
            out.write(chunk)
            out.flush()
    except DcosdError as exc:
        errs.append(exc)


@click.group()
def task() -> None:
    """Inspect and control tasks."""


@task.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include finished tasks.")
@click.option("--state", help="Only tasks in this state (e.g. TASK_RUNNING, QUEUED).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def task_list(obj: Any, show_all: bool, state: str | None, as_json: bool) -> None:
    """List queued and live tasks (--all: finished ones too)."""
    params = {"all": "1"} if show_all else {}
    if state:
        params["state"] = state if state == "QUEUED" or state.startswith("TASK_") else "TASK_" + state.upper()
    tasks = obj.client.get("/dcosd/v1/tasks", params=params)["tasks"]
    if as_json:
        emit_json(tasks)
        return
    nodes = {n["id"]: n["hostname"] for n in obj.client.get("/dcosd/v1/nodes")["nodes"]}
    table(["ID", "NAME", "STATE", "NODE", "CPUS", "MEM", "UPDATED"],
          [[t["id"], t.get("name") or t["spec"]["name"], short_state(t["state"]), nodes.get(t.get("agent_id"), "-"),
            t["spec"]["resources"].get("cpus"), t["spec"]["resources"].get("mem"),
            when(t.get("updated_at") or t.get("submitted_at"))] for t in tasks])


@task.command("show")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def task_show(obj: Any, task_id: str, as_json: bool) -> None:
    """Show a task, its status history and why it waits (if it does)."""
    t = obj.client.resolve_task(task_id)
    if as_json:
        emit_json(t)
        return
    spec = t["spec"]
    pairs = [("id", t["id"]), ("name", spec["name"]), ("state", short_state(t["state"])),
             ("command", spec.get("cmd") or " ".join(spec.get("argv", []))),
             ("resources", " ".join(f"{k}={v}" for k, v in spec["resources"].items())),
             ("agent", t.get("agent_id") or "-")]
    if t["state"] == "QUEUED":
        pairs.append(("waiting", t.get("pending_reason") or "for the next placement cycle"))
    else:
        pairs += [("exit code", t.get("exit_code")), ("reason", t.get("reason") or "-"),
                  ("message", t.get("message") or "-")]
    kv(pairs)
    if t.get("statuses"):
        click.echo("")
        table(["TIME", "STATE", "SOURCE", "REASON", "MESSAGE"],
              [[when(s["timestamp"]), short_state(s["state"]), s["source"].removeprefix("SOURCE_"),
                (s["reason"] or "").removeprefix("REASON_"), s["message"]] for s in t["statuses"]])


@task.command("kill")
@click.argument("task_ids", nargs=-1, required=True)
@click.pass_obj
def task_kill(obj: Any, task_ids: tuple[str, ...]) -> None:
    """Kill tasks (SIGTERM, then SIGKILL after their grace period)."""
    for task_id in task_ids:
        t = obj.client.resolve_task(task_id)
        obj.client.post(f"/dcosd/v1/tasks/{_q(t['id'])}/kill")
        click.echo(f"kill requested: {t['id']}")


@task.command("logs")
@click.argument("task_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the task ends.")
@click.option("--stderr", "use_stderr", is_flag=True, help="Show stderr instead of stdout.")
@click.pass_obj
def task_logs(obj: Any, task_id: str, follow: bool, use_stderr: bool) -> None:
    """Print a task's stdout (or stderr)."""
    t = obj.client.resolve_task(task_id)
    stream = "stderr" if use_stderr else "stdout"
    out = sys.stdout.buffer
    for chunk in obj.client.stream(f"/dcosd/v1/tasks/{_q(t['id'])}/logs/{stream}", {"follow": "1" if follow else "0"}):
        out.write(chunk)
        out.flush()


COMMANDS = [run, task]
