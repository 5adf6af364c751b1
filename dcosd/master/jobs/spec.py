"""Job definitions and schedules as operators write them (Metronome's JSON), parsed strictly.

Pure: no I/O. Every refusal is an ``InvalidJob`` (HTTP 422) whose message names
the field, so bad input never reaches a command. A parsed definition is kept
as a plain dict with every default filled in — that is what is committed and
what the API returns.

    {"id": "nightly.backup", "description": "...", "labels": {"team": "ops"},
     "run": {"cmd": "backup.sh" | "args": ["backup", "--all"],
             "cpus": 0.5, "mem": 128, "disk": 0, "env": {"K": "V"}, "user": "nobody",
             "maxLaunchDelay": 3600,              # a run not launched within this fails
             "activeDeadlineSeconds": 600,        # a run going longer than this is killed (FAILED)
             "taskKillGracePeriodSeconds": 3,
             "restart": {"policy": "NEVER" | "ON_FAILURE",
                         "maxAttempts": 3,        # launches per run in all (ON_FAILURE only)
                         "activeDeadlineSeconds": 3600}},   # no new attempt after this (Metronome)
     "schedules": [{"id": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
                    "startingDeadlineSeconds": 900, "concurrencyPolicy": "ALLOW" | "FORBID",
                    "enabled": true}]}
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from dcosd.errors import ValidationError
from dcosd.master.jobs.cron import CronError, normalise, zone
from dcosd.model.resources import ResourceError, Resources
from dcosd.model.task import MAX_KILL_GRACE, TaskSpec

# The built-in job framework: its framework id and name, and the role its tasks run in.
FRAMEWORK_ID = "metronome"

# Metronome's id rule: dot-separated lowercase segments of letters, digits and inner dashes.
_ID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_SCHEDULE_ID = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_ID = 100

DEFAULT_CPUS, DEFAULT_MEM, DEFAULT_DISK = 1.0, 128.0, 0.0
DEFAULT_MAX_LAUNCH_DELAY = 3600.0
DEFAULT_STARTING_DEADLINE = 900.0
DEFAULT_ON_FAILURE_ATTEMPTS = 3
MAX_SECONDS = 10 * 365 * 86400.0
MAX_ATTEMPTS = 1000

JOB_FIELDS = {"id", "description", "labels", "run", "schedules"}
RUN_FIELDS = {"cmd", "args", "cpus", "mem", "disk", "gpus", "env", "user", "maxLaunchDelay",
              "activeDeadlineSeconds", "taskKillGracePeriodSeconds", "restart", "labels"}
RESTART_FIELDS = {"policy", "maxAttempts", "activeDeadlineSeconds"}
SCHEDULE_FIELDS = {"id", "cron", "timezone", "startingDeadlineSeconds", "concurrencyPolicy", "enabled", "nextRunAt"}
POLICIES = ("NEVER", "ON_FAILURE")
CONCURRENCY = ("ALLOW", "FORBID")


class InvalidJob(ValidationError):
    http_status = 422


def _req(cond: bool, message: str) -> None:
    if not cond:
        raise InvalidJob(message)


def _obj(value: Any, where: str, allowed: set[str]) -> Mapping[str, Any]:
    _req(isinstance(value, Mapping), f"{where} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    _req(not unknown, f"unknown field(s) in {where}: {', '.join(f'{where}.{u}' if where != 'job' else u for u in unknown)}")
    return value


def _number(value: Any, where: str, lo: float, hi: float) -> float:
    _req(isinstance(value, (int, float)) and not isinstance(value, bool) and value == value,
         f"{where} must be a number")
    _req(lo <= value <= hi, f"{where} must be between {lo:g} and {hi:g} (got {value:g})")
    return float(value)


def _seconds(value: Any, where: str, *, positive: bool = False) -> float:
    _req(isinstance(value, (int, float)) and not isinstance(value, bool) and value == value,
         f"{where} must be a number of seconds")
    _req(value > 0 if positive else value >= 0, f"{where} must be {'positive' if positive else 'non-negative'}"
                                                 f" (got {value:g})")
    _req(value <= MAX_SECONDS, f"{where} must be at most {MAX_SECONDS:g}")
    return float(value)


def _strings(value: Any, where: str) -> dict[str, str]:
    _req(isinstance(value, Mapping), f"{where} must be an object of strings")
    for k, v in value.items():
        _req(isinstance(v, str), f"{where}.{k} must be a string")
        _req(isinstance(k, str) and k != "" and "=" not in k and "\0" not in k + v, f"{where}.{k} is not a valid name")
    return dict(value)


def valid_job_id(job_id: Any) -> bool:
    return isinstance(job_id, str) and 0 < len(job_id) <= MAX_ID and bool(_ID.fullmatch(job_id))


def parse_job(data: Any, *, job_id: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """A job definition → (the job with defaults, its schedules or None when the field was absent)."""
    d = _obj(data, "job", JOB_FIELDS)
    jid = d.get("id", job_id)
    _req(jid is not None, "id is required")
    _req(valid_job_id(jid), f"id {jid!r} is not a valid job id (lowercase letters, digits and dashes, "
                            f"dot-separated, at most {MAX_ID} characters)")
    _req(job_id is None or jid == job_id, f"id {jid!r} does not match the job id {job_id!r} of the URL")
    desc = d.get("description", "")
    _req(isinstance(desc, str) and len(desc) <= 4096, "description must be a string")
    job = {"id": jid, "description": desc, "labels": _strings(d.get("labels", {}), "labels"),
           "run": parse_run(d.get("run"))}
    schedules = None
    if "schedules" in d:
        raw = d["schedules"]
        _req(isinstance(raw, list), "schedules must be a list")
        schedules = [parse_schedule(s, f"schedules[{i}]") for i, s in enumerate(raw)]
        ids = [s["id"] for s in schedules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        _req(not dup, f"schedules: duplicate id(s) {', '.join(dup)}")
    return job, schedules


def parse_run(data: Any) -> dict[str, Any]:
    _req(data is not None, "run is required")
    r = _obj(data, "run", RUN_FIELDS)
    cmd, args = r.get("cmd"), r.get("args")
    _req((cmd is None) != (args is None), "run needs exactly one of run.cmd or run.args")
    if cmd is not None:
        _req(isinstance(cmd, str) and cmd.strip() != "" and "\0" not in cmd, "run.cmd must be a non-empty string")
    if args is not None:
        _req(isinstance(args, list) and args and all(isinstance(a, str) and "\0" not in a for a in args)
             and args[0] != "", "run.args must be a non-empty list of strings")
    out: dict[str, Any] = {
        "cpus": _number(r.get("cpus", DEFAULT_CPUS), "run.cpus", 0.001, 100_000),
        "mem": _number(r.get("mem", DEFAULT_MEM), "run.mem", 4, float(1 << 40)),
        "disk": _number(r.get("disk", DEFAULT_DISK), "run.disk", 0, float(1 << 50)),
        "gpus": _number(r.get("gpus", 0), "run.gpus", 0, 1024),
        "env": _strings(r.get("env", {}), "run.env"),
        "labels": _strings(r.get("labels", {}), "run.labels"),
        "maxLaunchDelay": _seconds(r.get("maxLaunchDelay", DEFAULT_MAX_LAUNCH_DELAY), "run.maxLaunchDelay",
                                   positive=True),
        "taskKillGracePeriodSeconds": _number(r.get("taskKillGracePeriodSeconds", 3.0),
                                              "run.taskKillGracePeriodSeconds", 0, MAX_KILL_GRACE),
    }
    if cmd is not None:
        out["cmd"] = cmd
    else:
        out["args"] = list(args)  # type: ignore[arg-type]
    user = r.get("user")
    if user is not None:
        _req(isinstance(user, str) and user.isprintable() and 0 < len(user) <= 64, "run.user must be a user name")
        out["user"] = user
    deadline = r.get("activeDeadlineSeconds")
    out["activeDeadlineSeconds"] = None if deadline is None else _seconds(deadline, "run.activeDeadlineSeconds",
                                                                          positive=True)
    out["restart"] = parse_restart(r.get("restart", {}))
    return out


def parse_restart(data: Any) -> dict[str, Any]:
    r = _obj(data, "run.restart", RESTART_FIELDS)
    policy = r.get("policy", "NEVER")
    _req(policy in POLICIES, f"run.restart.policy must be one of {', '.join(POLICIES)} (got {policy!r})")
    default = DEFAULT_ON_FAILURE_ATTEMPTS if policy == "ON_FAILURE" else 1
    attempts = r.get("maxAttempts", default)
    _req(isinstance(attempts, int) and not isinstance(attempts, bool) and 1 <= attempts <= MAX_ATTEMPTS,
         f"run.restart.maxAttempts must be an integer between 1 and {MAX_ATTEMPTS}")
    _req(policy == "ON_FAILURE" or attempts == 1, "run.restart.maxAttempts above 1 needs run.restart.policy ON_FAILURE")
    deadline = r.get("activeDeadlineSeconds")
    return {"policy": policy, "maxAttempts": attempts,
            "activeDeadlineSeconds": None if deadline is None else _seconds(
                deadline, "run.restart.activeDeadlineSeconds", positive=True)}


def parse_schedule(data: Any, where: str = "schedule", *, schedule_id: str | None = None) -> dict[str, Any]:
    s = _obj(data, where, SCHEDULE_FIELDS)
    sid = s.get("id", schedule_id)
    _req(sid is not None, f"{where}.id is required")
    _req(isinstance(sid, str) and len(sid) <= MAX_ID and bool(_SCHEDULE_ID.fullmatch(sid)),
         f"{where}.id {sid!r} is not a valid schedule id (lowercase letters, digits and dashes)")
    _req(schedule_id is None or sid == schedule_id, f"{where}.id {sid!r} does not match {schedule_id!r} of the URL")
    _req("cron" in s, f"{where}.cron is required")
    try:
        cron = normalise(s["cron"])
    except CronError as exc:
        raise InvalidJob(f"{where}.cron: {exc}") from None
    tz = s.get("timezone", "UTC")
    try:
        zone(tz)
    except CronError as exc:
        raise InvalidJob(f"{where}.timezone: {exc}") from None
    policy = s.get("concurrencyPolicy", "ALLOW")
    _req(policy in CONCURRENCY, f"{where}.concurrencyPolicy must be one of {', '.join(CONCURRENCY)} (got {policy!r})")
    enabled = s.get("enabled", True)
    _req(isinstance(enabled, bool), f"{where}.enabled must be true or false")
    return {"id": sid, "cron": cron, "timezone": tz, "concurrencyPolicy": policy, "enabled": enabled,
            "startingDeadlineSeconds": _seconds(s.get("startingDeadlineSeconds", DEFAULT_STARTING_DEADLINE),
                                                f"{where}.startingDeadlineSeconds")}


def task_spec(job_id: str, run_id: str, attempt: int, run: Mapping[str, Any]) -> TaskSpec:
    """The task of one attempt of a run: id ``<job>_<run>.<attempt>``, in the job framework."""
    res: dict[str, float] = {"cpus": run["cpus"], "mem": run["mem"]}
    if run.get("disk"):
        res["disk"] = run["disk"]
    if run.get("gpus"):
        res["gpus"] = run["gpus"]
    data: dict[str, Any] = {
        "task_id": task_id(job_id, run_id, attempt), "name": job_id, "resources": res,
        "env": {**run.get("env", {}), "DCOSD_JOB_ID": job_id, "DCOSD_JOB_RUN_ID": run_id,
                "DCOSD_JOB_ATTEMPT": str(attempt)},
        "labels": {**run.get("labels", {}), "job_id": job_id, "job_run_id": run_id},
        "kill_grace_seconds": run.get("taskKillGracePeriodSeconds", 3.0), "framework_id": FRAMEWORK_ID,
    }
    if "cmd" in run:
        data["cmd"] = run["cmd"]
    else:
        data["argv"] = list(run["args"])
    if run.get("user"):
        data["user"] = run["user"]
    try:
        return TaskSpec.from_dict(data)
    except (ValidationError, ResourceError) as exc:
        raise InvalidJob(f"run: {exc}") from None


def task_id(job_id: str, run_id: str, attempt: int) -> str:
    return f"{job_id}_{run_id}.{attempt}"


def resources_of(run: Mapping[str, Any]) -> Resources:
    return Resources.from_dict({k: run[k] for k in ("cpus", "mem", "disk", "gpus") if run.get(k)})
