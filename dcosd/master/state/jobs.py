"""Commands of the built-in job framework (master/jobs): definitions, schedules, runs.

Registered in machine.py's one dispatch table. Deterministic like every
handler: times, run ids and next-fire times come in the command (the leader
computed them with the pure cron module from its job clock); decisions about a
run's next status are made here with the pure rules of master/jobs/runs.py over
committed state only (the task's recorded state and exit code), so every master
replaying the log agrees.

Tables (migration 5): ``jobs``, ``job_schedules`` (with ``next_fire_at``),
``job_runs`` (one row per run: status, attempts, the current task, times,
exit code), ``job_run_tasks`` (one row per attempt), ``job_schedule_skips``
(fire times that did not start a run, and why).
"""

from __future__ import annotations

import json
from typing import Any

import apsw

from dcosd.errors import Conflict, NotFound
from dcosd.master.jobs.runs import FireAction, RunStatus, StopReason, on_task_end, stop_text
from dcosd.master.state.machine import AGENT_ACTIVE, Command, _one, handler
from dcosd.model.states import Source, TaskState

_NOT_DONE = (RunStatus.INITIAL.value, RunStatus.ACTIVE.value)


def _job_exists(db: apsw.Connection, job_id: str) -> bool:
    return _one(db, "SELECT 1 FROM jobs WHERE id = ?", (job_id,)) is not None


def _active_runs(db: apsw.Connection, job_id: str) -> int:
    row = _one(db, "SELECT COUNT(*) FROM job_runs WHERE job_id = ? AND status IN (?, ?)", (job_id, *_NOT_DONE))
    return row[0] if row else 0


def _put_schedule(db: apsw.Connection, job_id: str, s: dict[str, Any]) -> None:
    sched = s["schedule"]
    db.execute("INSERT INTO job_schedules (job_id, id, spec, next_fire_at) VALUES (?,?,?,?)"
               " ON CONFLICT (job_id, id) DO UPDATE SET spec = excluded.spec, next_fire_at = excluded.next_fire_at",
               (job_id, sched["id"], json.dumps(sched), s.get("next_fire_at")))


@handler("job_put")
def apply_job_put(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """Create (``create``) or replace a job definition; ``schedules`` (when given) replace the job's set."""
    job = c["job"]
    jid = job["id"]
    exists = _job_exists(db, jid)
    if c["create"] and exists:
        raise Conflict(f"job {jid} already exists")
    if not c["create"] and not exists:
        raise NotFound(f"no job {jid}")
    if exists:
        db.execute("UPDATE jobs SET spec = ?, updated_at = ? WHERE id = ?", (json.dumps(job), c["time"], jid))
    else:
        db.execute("INSERT INTO jobs (id, spec, created_at, updated_at) VALUES (?,?,?,?)",
                   (jid, json.dumps(job), c["time"], c["time"]))
    if c.get("schedules") is not None:
        keep = [s["schedule"]["id"] for s in c["schedules"]]
        marks = ",".join("?" * len(keep))
        db.execute("DELETE FROM job_schedules WHERE job_id = ?" + (f" AND id NOT IN ({marks})" if keep else ""),
                   (jid, *keep))
        for s in c["schedules"]:
            _put_schedule(db, jid, s)
    return {"job_id": jid, "created": not exists}


@handler("job_remove")
def apply_job_remove(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """Remove a job with its schedules and history. Refused while runs are active unless ``stop_runs``;
    then their launched tasks are returned, to be killed."""
    jid = c["job_id"]
    if not _job_exists(db, jid):
        raise NotFound(f"no job {jid}")
    if _active_runs(db, jid) and not c.get("stop_runs"):
        raise Conflict(f"job {jid} has active runs; stop them first or remove with stopCurrentJobRuns=true")
    kills = [{"task_id": t, "grace": g} for t, g in db.execute(
        "SELECT r.task_id, json_extract(r.run_spec, '$.taskKillGracePeriodSeconds') FROM job_runs r"
        " WHERE r.job_id = ? AND r.status = ? AND r.task_id IS NOT NULL", (jid, RunStatus.ACTIVE.value))]
    db.execute("DELETE FROM job_run_tasks WHERE run_id IN (SELECT id FROM job_runs WHERE job_id = ?)", (jid,))
    for table, col in (("job_runs", "job_id"), ("job_schedule_skips", "job_id"), ("job_schedules", "job_id"),
                       ("jobs", "id")):
        db.execute(f"DELETE FROM {table} WHERE {col} = ?", (jid,))
    return {"job_id": jid, "kill": kills}


@handler("job_schedule_put")
def apply_job_schedule_put(db: apsw.Connection, c: Command) -> dict[str, Any]:
    jid, sid = c["job_id"], c["schedule"]["id"]
    if not _job_exists(db, jid):
        raise NotFound(f"no job {jid}")
    exists = _one(db, "SELECT 1 FROM job_schedules WHERE job_id = ? AND id = ?", (jid, sid)) is not None
    if c["create"] and exists:
        raise Conflict(f"job {jid} already has a schedule {sid}")
    if not c["create"] and not exists:
        raise NotFound(f"job {jid} has no schedule {sid}")
    _put_schedule(db, jid, c)
    return {"job_id": jid, "schedule_id": sid}


@handler("job_schedule_remove")
def apply_job_schedule_remove(db: apsw.Connection, c: Command) -> None:
    db.execute("DELETE FROM job_schedules WHERE job_id = ? AND id = ?", (c["job_id"], c["schedule_id"]))
    if db.changes() == 0:
        raise NotFound(f"job {c['job_id']} has no schedule {c['schedule_id']}")


def _insert_run(db: apsw.Connection, jid: str, run_id: str, now: float, trigger: str,
                schedule_id: str | None, scheduled_for: float | None) -> dict[str, Any]:
    row = _one(db, "SELECT spec FROM jobs WHERE id = ?", (jid,))
    if row is None:
        raise NotFound(f"no job {jid}")
    if _one(db, "SELECT 1 FROM job_runs WHERE id = ?", (run_id,)):
        raise Conflict(f"run {run_id} already exists")
    run_spec = json.loads(row[0])["run"]
    db.execute("INSERT INTO job_runs (id, job_id, status, run_spec, trigger, schedule_id, scheduled_for, created_at,"
               " waiting_since, attempts, message) VALUES (?,?,?,?,?,?,?,?,?,0,?)",
               (run_id, jid, RunStatus.INITIAL.value, json.dumps(run_spec), trigger, schedule_id, scheduled_for,
                now, now, "waiting for resources"))
    return {"job_id": jid, "run_id": run_id}


@handler("job_run_start")
def apply_job_run_start(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """A run now ("run now" / POST /v1/jobs/{id}/runs)."""
    return _insert_run(db, c["job_id"], c["run_id"], c["time"], "manual", None, None)


@handler("job_schedule_fire")
def apply_job_schedule_fire(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """Due fire times of one schedule: START one run or record why not; the next fire time advances.

    ``expected_next`` guards against firing twice (a stale leader, a retried proposal): the schedule's
    committed next_fire_at must still be it. FORBID is re-checked here against committed runs.
    """
    jid, sid, now = c["job_id"], c["schedule_id"], c["time"]
    row = _one(db, "SELECT spec, next_fire_at FROM job_schedules WHERE job_id = ? AND id = ?", (jid, sid))
    if row is None:
        raise NotFound(f"job {jid} has no schedule {sid}")
    if row[1] != c["expected_next"]:
        raise Conflict(f"schedule {jid}/{sid} already advanced past {c['expected_next']}")
    sched = json.loads(row[0])
    started = None
    for f in c["fires"]:
        action = f["action"]
        if action == FireAction.START.value and sched["concurrencyPolicy"] == "FORBID" and _active_runs(db, jid):
            action = FireAction.SKIP_FORBID.value
        if action == FireAction.START.value:
            started = _insert_run(db, jid, c["run_id"], now, f"schedule:{sid}", sid, f["due_at"])["run_id"]
        else:
            db.execute("INSERT INTO job_schedule_skips (job_id, schedule_id, due_at, action, at) VALUES (?,?,?,?,?)",
                       (jid, sid, f["due_at"], action, now))
        last_action = action
    db.execute("UPDATE job_schedules SET next_fire_at = ?, last_fire_at = ?, last_action = ? WHERE job_id = ? AND id = ?",
               (c["next_fire_at"], c["fires"][-1]["due_at"] if c["fires"] else None,
                last_action if c["fires"] else None, jid, sid))
    return {"job_id": jid, "schedule_id": sid, "run_id": started}


@handler("job_run_launch")
def apply_job_run_launch(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """One attempt of a waiting run goes to an agent: its task in TASK_STAGING, the run ACTIVE."""
    run_id, attempt, agent_id, now = c["run_id"], c["attempt"], c["agent_id"], c["time"]
    run = _one(db, "SELECT status, attempts FROM job_runs WHERE id = ?", (run_id,))
    if run is None:
        raise NotFound(f"no run {run_id}")
    if run[0] != RunStatus.INITIAL.value or run[1] + 1 != attempt:
        raise Conflict(f"run {run_id} is {run[0]} after {run[1]} attempt(s); attempt {attempt} not launched")
    agent = _one(db, "SELECT state FROM agents WHERE id = ?", (agent_id,))
    if agent is None or agent[0] != AGENT_ACTIVE:
        raise Conflict(f"agent {agent_id} is not active")
    t = c["task"]
    spec = t["spec"]
    task_time = c.get("task_time", now)  # the task's own times are real time even under a test job clock
    if _one(db, "SELECT 1 FROM tasks WHERE id = ?", (spec["task_id"],)):
        raise Conflict(f"task {spec['task_id']} already exists")
    db.execute(
        "INSERT INTO tasks (id, name, framework_id, agent_id, state, spec, resources, role, alloc, created_at,"
        " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (spec["task_id"], spec["name"], spec["framework_id"], agent_id, TaskState.STAGING.value, json.dumps(spec),
         json.dumps(t["resources"]), t["role"], json.dumps(t["alloc"]), task_time, task_time))
    db.execute(
        "INSERT INTO task_statuses (task_id, seq, state, message, source, uuid, timestamp) VALUES (?,?,?,?,?,?,?)",
        (spec["task_id"], 1, TaskState.STAGING.value, f"job run {run_id} attempt {attempt} on agent {agent_id}",
         Source.MASTER.value, c["uuid"], task_time))
    db.execute("INSERT INTO job_run_tasks (run_id, attempt, task_id, agent_id, launched_at) VALUES (?,?,?,?,?)",
               (run_id, attempt, spec["task_id"], agent_id, now))
    db.execute("UPDATE job_runs SET status = ?, attempts = ?, task_id = ?, started_at = COALESCE(started_at, ?),"
               " message = ? WHERE id = ?",
               (RunStatus.ACTIVE.value, attempt, spec["task_id"], now, f"attempt {attempt} launched", run_id))
    return {"run_id": run_id, "task_id": spec["task_id"], "agent_id": agent_id}


@handler("job_run_task_ended")
def apply_job_run_task_ended(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """The current task of an ACTIVE run is terminal (as committed): the run retries, succeeds or fails."""
    run_id, now = c["run_id"], c["time"]
    run = _one(db, "SELECT status, attempts, task_id, stop_reason, run_spec, started_at FROM job_runs WHERE id = ?",
               (run_id,))
    if run is None:
        raise NotFound(f"no run {run_id}")
    status, attempt, task_id, stop_reason, run_spec, started_at = run
    if status != RunStatus.ACTIVE.value or task_id != c["task_id"]:
        raise Conflict(f"run {run_id} is not waiting for task {c['task_id']}")
    t = _one(db, "SELECT state, exit_code, message FROM tasks WHERE id = ?", (task_id,))
    if t is None or not TaskState(t[0]).terminal:
        raise Conflict(f"task {task_id} has not ended")
    state, exit_code = TaskState(t[0]), t[1]
    spec = json.loads(run_spec)
    restart = spec.get("restart", {})
    end = on_task_end(state, exit_code, attempt, restart.get("maxAttempts", 1), stop_reason,
                      restart.get("policy", "NEVER"), started_at or now, now, restart.get("activeDeadlineSeconds"))
    db.execute("UPDATE job_run_tasks SET ended_at = ?, state = ?, exit_code = ?, message = ? WHERE task_id = ?",
               (now, state.value, exit_code, t[2] or "", task_id))
    if end.status is RunStatus.INITIAL:
        db.execute("UPDATE job_runs SET status = ?, task_id = NULL, waiting_since = ?, exit_code = ?, message = ?"
                   " WHERE id = ?", (end.status.value, now, exit_code, end.message, run_id))
    else:
        db.execute("UPDATE job_runs SET status = ?, finished_at = ?, exit_code = ?, message = ? WHERE id = ?",
                   (end.status.value, now, exit_code, end.message, run_id))
    return {"run_id": run_id, "status": end.status.value}


@handler("job_run_stop")
def apply_job_run_stop(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """Stop a run (operator, active deadline, launch deadline). A waiting run fails at once; a launched
    one is marked (no retry) and its task returned, to be killed — it fails when the task ends."""
    run_id, reason, now = c["run_id"], c["reason"], c["time"]
    StopReason(reason)
    run = _one(db, "SELECT status, task_id, stop_reason, json_extract(run_spec, '$.taskKillGracePeriodSeconds')"
                   " FROM job_runs WHERE id = ?", (run_id,))
    if run is None:
        raise NotFound(f"no run {run_id}")
    status, task_id, old_reason, grace = run
    if RunStatus(status).terminal:
        return {"run_id": run_id, "status": status, "kill": None}
    if status == RunStatus.INITIAL.value:
        db.execute("UPDATE job_runs SET status = ?, stop_reason = ?, finished_at = ?, message = ? WHERE id = ?",
                   (RunStatus.FAILED.value, reason, now, stop_text(reason), run_id))
        return {"run_id": run_id, "status": RunStatus.FAILED.value, "kill": None}
    db.execute("UPDATE job_runs SET stop_reason = COALESCE(stop_reason, ?), message = ? WHERE id = ?",
               (reason, stop_text(old_reason or reason), run_id))
    return {"run_id": run_id, "status": status, "kill": {"task_id": task_id, "grace": grace}}
