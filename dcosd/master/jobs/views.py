"""Read-only views of jobs, schedules and runs, shaped like Metronome's JSON (plus exit codes)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from dcosd.master.jobs.runs import RunStatus

_RUN_COLS = ("id, job_id, status, trigger, schedule_id, scheduled_for, created_at, waiting_since, started_at,"
             " finished_at, attempts, task_id, exit_code, stop_reason, message")
_NOT_DONE = (RunStatus.INITIAL.value, RunStatus.ACTIVE.value)


def iso(ts: float | None) -> str | None:
    """Metronome's timestamp form: 2016-07-15T13:10:36.585+00:00."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds")


def job_ids(store: Any) -> list[str]:
    return [r[0] for r in store.query("SELECT id FROM jobs ORDER BY id")]


def job(store: Any, job_id: str, embed: set[str] = frozenset()) -> dict[str, Any] | None:  # type: ignore[assignment]
    row = store.query_one("SELECT spec, created_at, updated_at FROM jobs WHERE id = ?", (job_id,))
    if row is None:
        return None
    out = json.loads(row[0])
    out["createdAt"], out["updatedAt"] = iso(row[1]), iso(row[2])
    if "schedules" in embed:
        out["schedules"] = schedules(store, job_id)
    if "activeRuns" in embed:
        out["activeRuns"] = runs(store, job_id, active_only=True)
    if "history" in embed or "historySummary" in embed:
        out["history"] = history(store, job_id, full="history" in embed)
    return out


def schedules(store: Any, job_id: str) -> list[dict[str, Any]]:
    out = []
    for spec, nxt, last, action in store.query(
            "SELECT spec, next_fire_at, last_fire_at, last_action FROM job_schedules WHERE job_id = ? ORDER BY id",
            (job_id,)):
        s = json.loads(spec)
        s["nextRunAt"] = iso(nxt) if s.get("enabled", True) else None
        s["lastFireAt"], s["lastFireAction"] = iso(last), action
        out.append(s)
    return out


def schedule(store: Any, job_id: str, schedule_id: str) -> dict[str, Any] | None:
    for s in schedules(store, job_id):
        if s["id"] == schedule_id:
            return s
    return None


def _run_row(store: Any, row: tuple, tasks: bool = True) -> dict[str, Any]:
    (rid, jid, status, trigger, sid, sched_for, created, waiting, started, finished, attempts, task_id, code,
     stop, message) = row
    out: dict[str, Any] = {
        "id": rid, "jobId": jid, "status": status, "trigger": trigger, "scheduleId": sid,
        "scheduledAt": iso(sched_for), "createdAt": iso(created), "startedAt": iso(started),
        "completedAt": iso(finished), "finishedAt": iso(finished), "attempts": attempts, "taskId": task_id,
        "exitCode": code, "stopReason": stop, "message": message,
        "times": {"created": created, "waitingSince": waiting, "started": started, "finished": finished,
                  "scheduled": sched_for},
    }
    if tasks:
        out["tasks"] = [
            {"id": t, "attempt": a, "agentId": ag, "status": st or "TASK_STAGING", "startedAt": iso(la),
             "completedAt": iso(ea), "exitCode": c, "message": m or ""}
            for a, t, ag, la, ea, st, c, m in store.query(
                "SELECT attempt, task_id, agent_id, launched_at, ended_at, state, exit_code, message"
                " FROM job_run_tasks WHERE run_id = ? ORDER BY attempt", (rid,))]
        if task_id and status == RunStatus.ACTIVE.value and out["tasks"]:
            live = store.query_one("SELECT state FROM tasks WHERE id = ?", (task_id,))
            if live is not None:
                out["tasks"][-1]["status"] = live[0]
    return out


def runs(store: Any, job_id: str, *, active_only: bool = False, limit: int = 1000) -> list[dict[str, Any]]:
    where = "job_id = ?" + (f" AND status IN ({','.join('?' * len(_NOT_DONE))})" if active_only else "")
    args: tuple = (job_id, *_NOT_DONE) if active_only else (job_id,)
    return [_run_row(store, r) for r in store.query(
        f"SELECT {_RUN_COLS} FROM job_runs WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit))]


def run(store: Any, job_id: str, run_id: str) -> dict[str, Any] | None:
    row = store.query_one(f"SELECT {_RUN_COLS} FROM job_runs WHERE id = ? AND job_id = ?", (run_id, job_id))
    return None if row is None else _run_row(store, row)


def history(store: Any, job_id: str, *, full: bool) -> dict[str, Any]:
    """Metronome's history block, plus every finished run with its exit code and the skipped fires."""
    done = [r for r in runs(store, job_id, limit=100_000) if RunStatus(r["status"]).terminal]
    ok = [r for r in done if r["status"] == RunStatus.SUCCESS.value]
    bad = [r for r in done if r["status"] == RunStatus.FAILED.value]
    out: dict[str, Any] = {
        "successCount": len(ok), "failureCount": len(bad),
        "lastSuccessAt": ok[0]["completedAt"] if ok else None, "lastFailureAt": bad[0]["completedAt"] if bad else None,
    }
    if full:
        brief = ("id", "createdAt", "finishedAt", "exitCode", "attempts", "trigger", "message")
        out["successfulFinishedRuns"] = [{k: r[k] for k in brief} for r in ok]
        out["failedFinishedRuns"] = [{k: r[k] for k in brief} for r in bad]
        out["runs"] = done
        out["skippedFires"] = [
            {"scheduleId": sid, "dueAt": iso(due), "action": action, "at": iso(at)}
            for sid, due, action, at in store.query(
                "SELECT schedule_id, due_at, action, at FROM job_schedule_skips WHERE job_id = ?"
                " ORDER BY seq DESC LIMIT 1000", (job_id,))]
    return out


# -- what the leader loop needs ----------------------------------------------------------------


def due_schedules(store: Any, now: float) -> list[tuple[str, str, dict[str, Any], float]]:
    out = []
    for jid, sid, spec, nxt in store.query(
            "SELECT job_id, id, spec, next_fire_at FROM job_schedules WHERE next_fire_at IS NOT NULL"
            " AND next_fire_at <= ? ORDER BY next_fire_at", (now,)):
        s = json.loads(spec)
        if s.get("enabled", True):
            out.append((jid, sid, s, nxt))
    return out


def unfinished_runs(store: Any) -> list[dict[str, Any]]:
    """Runs not yet SUCCESS/FAILED with what the loop decides on: spec, times, the current task's state."""
    out = []
    for rid, jid, status, spec, waiting, started, attempts, task_id, stop, tstate, kill in store.query(
            "SELECT r.id, r.job_id, r.status, r.run_spec, r.waiting_since, r.started_at, r.attempts, r.task_id,"
            " r.stop_reason, t.state, t.kill_requested FROM job_runs r LEFT JOIN tasks t ON t.id = r.task_id"
            f" WHERE r.status IN ({','.join('?' * len(_NOT_DONE))}) ORDER BY r.created_at, r.id", _NOT_DONE):
        out.append({"id": rid, "job_id": jid, "status": status, "spec": json.loads(spec), "waiting_since": waiting,
                    "started_at": started, "attempts": attempts, "task_id": task_id, "stop_reason": stop,
                    "task_state": tstate, "kill_requested": bool(kill)})
    return out


def active_run_count(store: Any, job_id: str) -> int:
    row = store.query_one(f"SELECT COUNT(*) FROM job_runs WHERE job_id = ? AND status IN"
                          f" ({','.join('?' * len(_NOT_DONE))})", (job_id, *_NOT_DONE))
    return row[0] if row else 0
