"""`dcosd job add FILE|run ID|list|show ID|history ID|remove ID`: the job framework's /v1/jobs API."""

from __future__ import annotations

import json

import time
import urllib.parse
from typing import Any

import click

from dcosd.cli.output import emit_json, kv, table
from dcosd.errors import ValidationError

_DONE = ("SUCCESS", "FAILED")


def _q(job_id: str) -> str:
    return urllib.parse.quote(job_id, safe="")


def _send(obj: Any, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
    with obj.client._request(method, path, body=body, params=params) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def _short(ts: str | None) -> str:
    return "-" if not ts else ts.replace("T", " ")[:19]


@click.group()
def job() -> None:
    """Jobs: one-off and cron-scheduled batch work (Metronome's /v1/jobs)."""


@job.command("add")
@click.argument("file", type=click.File("r"))
@click.option("--replace", is_flag=True, help="Replace the job if it exists (PUT) instead of failing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def add(obj: Any, file: Any, replace: bool, as_json: bool) -> None:
    """Add a job from a JSON definition (FILE, or - for stdin); schedules may be inline."""
    try:
        definition = json.load(file)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{file.name}: not valid JSON: {exc}") from None
    if replace and isinstance(definition, dict) and isinstance(definition.get("id"), str):
        exists = definition["id"] in [j["id"] for j in obj.client.get("/v1/jobs")]
        if exists:
            result = _send(obj, "PUT", f"/v1/jobs/{_q(definition['id'])}", definition)
        else:
            result = obj.client.post("/v1/jobs", definition)
    else:
        result = obj.client.post("/v1/jobs", definition)
    if as_json:
        emit_json(result)
        return
    nxt = [f"{s['id']} next {_short(s.get('nextRunAt'))}" for s in result.get("schedules", [])]
    click.echo(f"job {result['id']} added" + (f" ({'; '.join(nxt)})" if nxt else ""))


@job.command("run")
@click.argument("job_id")
@click.option("--wait", is_flag=True, help="Wait for the run to end; exit 0 on SUCCESS, 1 on FAILED.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="With --wait: give up after this long.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def run_now(obj: Any, job_id: str, wait: bool, timeout: float, as_json: bool) -> int:
    """Start a run of JOB_ID now."""
    run = obj.client.post(f"/v1/jobs/{_q(job_id)}/runs", {})
    if wait:
        deadline = time.monotonic() + timeout
        while run["status"] not in _DONE and time.monotonic() < deadline:
            time.sleep(0.5)
            run = obj.client.get(f"/v1/jobs/{_q(job_id)}/runs/{_q(run['id'])}")
    if as_json:
        emit_json(run)
    elif wait:
        click.echo(f"run {run['id']} of {job_id}: {run['status']}"
                   + (f" (exit code {run['exitCode']})" if run.get("exitCode") is not None else "")
                   + (f" — {run['message']}" if run.get("message") else ""))
    else:
        click.echo(f"run {run['id']} of {job_id} started")
    if wait and run["status"] not in _DONE:
        click.echo(f"dcosd: error: run {run['id']} still {run['status']} after {timeout:g}s", err=True)
        return 1
    return 1 if wait and run["status"] == "FAILED" else 0


@job.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_jobs(obj: Any, as_json: bool) -> None:
    """Every job with its schedules, active runs and last outcome."""
    jobs = obj.client.get("/v1/jobs", params={"embed": "activeRuns,schedules,historySummary"})
    if as_json:
        emit_json(jobs)
        return
    rows = []
    for j in jobs:
        h = j.get("history", {})
        scheds = ", ".join(f"{s['cron']} {s['timezone']}" + ("" if s.get("enabled", True) else " (off)")
                           for s in j.get("schedules", []))
        nxt = min((s["nextRunAt"] for s in j.get("schedules", []) if s.get("nextRunAt")), default=None)
        rows.append([j["id"], scheds or "-", _short(nxt), len(j.get("activeRuns", [])),
                     h.get("successCount", 0), h.get("failureCount", 0)])
    table(["ID", "SCHEDULE", "NEXT RUN", "ACTIVE", "SUCCESS", "FAILED"], rows)


@job.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj: Any, job_id: str, as_json: bool) -> None:
    """A job's definition, schedules and active runs."""
    j = obj.client.get(f"/v1/jobs/{_q(job_id)}", params={"embed": "activeRuns,schedules,historySummary"})
    if as_json:
        emit_json(j)
        return
    r = j["run"]
    kv([("id", j["id"]), ("description", j.get("description") or "-"),
        ("command", r.get("cmd") or " ".join(r.get("args", []))),
        ("resources", f"cpus {r['cpus']:g}, mem {r['mem']:g} MB, disk {r['disk']:g} MB"),
        ("restart", f"{r['restart']['policy']}, at most {r['restart']['maxAttempts']} attempt(s)"),
        ("active deadline", f"{r['activeDeadlineSeconds']:g}s" if r.get("activeDeadlineSeconds") else "-"),
        ("runs", f"{j['history']['successCount']} succeeded, {j['history']['failureCount']} failed")])
    for s in j.get("schedules", []):
        click.echo(f"schedule {s['id']}: {s['cron']} ({s['timezone']}), {s['concurrencyPolicy']},"
                   f" starting deadline {s['startingDeadlineSeconds']:g}s,"
                   f" next {_short(s.get('nextRunAt')) if s.get('enabled', True) else 'disabled'}")
    for run in j.get("activeRuns", []):
        click.echo(f"active run {run['id']}: {run['status']} (attempt {run['attempts']}) — {run['message']}")


@job.command("history")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def history(obj: Any, job_id: str, as_json: bool) -> None:
    """Finished runs of a job, newest first, with exit codes and times; and skipped schedule fires."""
    j = obj.client.get(f"/v1/jobs/{_q(job_id)}", params={"embed": "history,activeRuns"})
    h = j["history"]
    if as_json:
        emit_json({"activeRuns": j.get("activeRuns", []), **h})
        return
    rows = [[r["id"], r["status"], r["trigger"], _short(r.get("startedAt")), _short(r.get("finishedAt")),
             r["attempts"], "-" if r.get("exitCode") is None else r["exitCode"]]
            for r in [*j.get("activeRuns", []), *h["runs"]]]
    table(["RUN", "STATUS", "TRIGGER", "STARTED", "FINISHED", "ATTEMPTS", "EXIT"], rows)
    skipped = h.get("skippedFires", [])
    if skipped:
        click.echo(f"\n{len(skipped)} schedule fire(s) skipped; latest: "
                   + ", ".join(f"{s['dueAt'][:19]} {s['action']}" for s in skipped[:5]))


@job.command("remove")
@click.argument("job_id")
@click.option("--stop-runs", is_flag=True, help="Stop the job's active runs (kill their tasks) and remove it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def remove(obj: Any, job_id: str, stop_runs: bool, as_json: bool) -> None:
    """Remove a job, its schedules and its history."""
    result = _send(obj, "DELETE", f"/v1/jobs/{_q(job_id)}",
                   params={"stopCurrentJobRuns": "true"} if stop_runs else None)
    if as_json:
        emit_json(result)
    else:
        killed = result.get("killedTasks", [])
        click.echo(f"job {job_id} removed" + (f"; killing {len(killed)} task(s)" if killed else ""))


@job.command("stop")
@click.argument("job_id")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def stop(obj: Any, job_id: str, run_id: str, as_json: bool) -> None:
    """Stop a run (its task is killed; the run ends FAILED)."""
    run = obj.client.post(f"/v1/jobs/{_q(job_id)}/runs/{_q(run_id)}/actions/stop", {})
    if as_json:
        emit_json(run)
    else:
        click.echo(f"run {run_id} of {job_id}: stopping ({run['status']})")


COMMANDS = [job]

