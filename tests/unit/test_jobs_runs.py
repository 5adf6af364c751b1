"""Job runs and schedule firing: the pure rules (runs.py), parsing (spec.py) and the commands on real SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcosd.errors import Conflict, NotFound
from dcosd.master.jobs import spec as jobspec
from dcosd.master.jobs import views
from dcosd.master.jobs.runs import (
    TRANSITIONS, Fire, FireAction, RunStatus, StopReason, can_transition, decide_fires, on_task_end,
    past_active_deadline, past_launch_deadline,
)
from dcosd.master.state.store import StateStore
from dcosd.model.states import TERMINAL_STATES, TaskState

# -- transitions ------------------------------------------------------------------------------


def test_terminal_run_states_go_nowhere_and_every_state_is_listed():
    assert set(TRANSITIONS) == set(RunStatus)
    for s in RunStatus:
        assert (not TRANSITIONS[s]) == s.terminal
    assert can_transition(RunStatus.ACTIVE, RunStatus.INITIAL)  # a retry
    assert not can_transition(RunStatus.INITIAL, RunStatus.SUCCESS)  # success needs a launched task
    assert not can_transition(RunStatus.SUCCESS, RunStatus.INITIAL)


def end(state, code=None, attempt=1, attempts=1, stop=None, policy="NEVER", started=0.0, now=10.0, restart_deadline=None):
    return on_task_end(state, code, attempt, attempts, stop, policy, started, now, restart_deadline)


def test_task_end_outcomes():
    assert end(TaskState.FINISHED, 0).status is RunStatus.SUCCESS
    assert end(TaskState.FAILED, 1).status is RunStatus.FAILED
    retry = end(TaskState.FAILED, 1, attempt=1, attempts=3, policy="ON_FAILURE")
    assert retry.status is RunStatus.INITIAL and "attempt 2 of 3" in retry.message
    assert end(TaskState.FAILED, 1, attempt=3, attempts=3, policy="ON_FAILURE").status is RunStatus.FAILED
    # a stopped or deadline-killed run is never retried, even if its task happened to finish
    for reason in StopReason:
        assert end(TaskState.KILLED, attempt=1, attempts=3, stop=reason.value, policy="ON_FAILURE").status is \
            RunStatus.FAILED
        assert end(TaskState.FINISHED, 0, stop=reason.value).status is RunStatus.FAILED
    # Metronome's restart.activeDeadlineSeconds: no new attempt once the run is that old
    assert end(TaskState.FAILED, 1, attempts=3, policy="ON_FAILURE", started=0, now=100, restart_deadline=50).status \
        is RunStatus.FAILED
    assert end(TaskState.FAILED, 1, attempts=3, policy="ON_FAILURE", started=0, now=10, restart_deadline=50).status \
        is RunStatus.INITIAL


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES - {TaskState.FINISHED}, key=lambda s: s.value))
def test_every_unsuccessful_terminal_state_is_a_failed_attempt(state):
    assert end(state).status is RunStatus.FAILED
    assert end(state, attempts=2, policy="ON_FAILURE").status is RunStatus.INITIAL


def test_deadlines():
    assert not past_active_deadline(None, 5, 100)  # not started
    assert not past_active_deadline(0, None, 100)  # no deadline
    assert not past_active_deadline(0, 5, 5) and past_active_deadline(0, 5, 5.01)
    assert not past_launch_deadline(0, 10, 10) and past_launch_deadline(0, 10, 10.5)


# -- firing -----------------------------------------------------------------------------------


def test_fire_allow_starts_even_with_active_runs():
    assert decide_fires([60.0], 61.0, 30, "ALLOW", active_runs=2) == [Fire(60.0, FireAction.START)]


def test_fire_forbid_skips_while_a_run_is_active():
    assert decide_fires([60.0], 61.0, 30, "FORBID", active_runs=1) == [Fire(60.0, FireAction.SKIP_FORBID)]
    assert decide_fires([60.0], 61.0, 30, "FORBID", active_runs=0) == [Fire(60.0, FireAction.START)]


def test_fire_starting_deadline():
    assert decide_fires([60.0], 90.0, 30, "ALLOW", 0) == [Fire(60.0, FireAction.START)]  # exactly at the deadline
    assert decide_fires([60.0], 90.5, 30, "ALLOW", 0) == [Fire(60.0, FireAction.SKIP_DEADLINE)]
    assert decide_fires([60.0], 60.0, 0, "ALLOW", 0) == [Fire(60.0, FireAction.START)]


def test_after_a_pause_only_the_latest_due_time_is_tried():
    got = decide_fires([60.0, 120.0, 180.0], 200.0, 30, "ALLOW", 0)
    assert got == [Fire(60.0, FireAction.MISSED), Fire(120.0, FireAction.MISSED), Fire(180.0, FireAction.START)]
    got = decide_fires([60.0, 120.0, 180.0], 300.0, 30, "FORBID", 0)
    assert got[-1] == Fire(180.0, FireAction.SKIP_DEADLINE)
    assert decide_fires([], 10.0, 30, "ALLOW", 0) == []


# -- parsing ----------------------------------------------------------------------------------

GOOD = {"id": "backup.nightly", "run": {"cmd": "true", "cpus": 0.1, "mem": 32},
        "schedules": [{"id": "every-minute", "cron": "* * * * *"}]}


def test_defaults_are_filled_in():
    job, schedules = jobspec.parse_job(GOOD)
    assert job["run"]["restart"] == {"policy": "NEVER", "maxAttempts": 1, "activeDeadlineSeconds": None}
    assert job["run"]["maxLaunchDelay"] == 3600
    assert schedules == [{"id": "every-minute", "cron": "* * * * *", "timezone": "UTC", "concurrencyPolicy": "ALLOW",
                          "enabled": True, "startingDeadlineSeconds": 900.0}]
    job, _ = jobspec.parse_job({**GOOD, "run": {"args": ["x"], "restart": {"policy": "ON_FAILURE"}}})
    assert job["run"]["restart"]["maxAttempts"] == 3


@pytest.mark.parametrize("patch,field", [
    ({"id": "Upper"}, "id"), ({"id": "a..b"}, "id"), ({"id": "a\n"}, "id"), ({"bogus": 1}, "bogus"),
    ({"run": {"cmd": "x", "foo": 1}}, "run.foo"), ({"run": {"cmd": "x", "args": ["x"]}}, "run.cmd"),
    ({"run": {"cmd": "x", "cpus": -1}}, "run.cpus"), ({"run": {"cmd": "x", "mem": "lots"}}, "run.mem"),
    ({"run": {"cmd": "x", "activeDeadlineSeconds": -5}}, "run.activeDeadlineSeconds"),
    ({"run": {"cmd": "x", "maxLaunchDelay": 0}}, "run.maxLaunchDelay"),
    ({"run": {"cmd": "x", "restart": {"policy": "ALWAYS"}}}, "run.restart.policy"),
    ({"run": {"cmd": "x", "restart": {"maxAttempts": 3}}}, "run.restart.maxAttempts"),
    ({"run": {"cmd": "x", "restart": {"policy": "ON_FAILURE", "maxAttempts": 0}}}, "run.restart.maxAttempts"),
    ({"run": {"cmd": "x", "env": {"A": 1}}}, "run.env.A"),
    ({"schedules": [{"id": "s", "cron": "* * *"}]}, "schedules[0].cron"),
    ({"schedules": [{"id": "s\n", "cron": "* * * * *"}]}, "schedules[0].id"),
    ({"schedules": [{"id": "s", "cron": "* * * * *", "timezone": "Mars/Base"}]}, "schedules[0].timezone"),
    ({"schedules": [{"id": "s", "cron": "* * * * *", "startingDeadlineSeconds": -1}]},
     "schedules[0].startingDeadlineSeconds"),
    ({"schedules": [{"id": "s", "cron": "* * * * *", "concurrencyPolicy": "REPLACE"}]},
     "schedules[0].concurrencyPolicy"),
    ({"schedules": [{"id": "s", "cron": "* * * * *", "extra": 1}]}, "schedules[0].extra"),
    ({"schedules": [{"id": "s", "cron": "* * * * *"}, {"id": "s", "cron": "0 * * * *"}]}, "duplicate"),
])
def test_bad_definitions_name_the_field(patch, field):
    with pytest.raises(jobspec.InvalidJob) as err:
        jobspec.parse_job({**GOOD, **patch})
    assert field in err.value.message
    assert err.value.http_status == 422


def test_task_of_an_attempt():
    job, _ = jobspec.parse_job(GOOD)
    t = jobspec.task_spec("backup.nightly", "20240101000000abcde", 2, job["run"])
    assert t.task_id == "backup.nightly_20240101000000abcde.2"
    assert t.framework_id == "metronome" and t.env["DCOSD_JOB_ATTEMPT"] == "2"
    assert t.command_line() == ["/bin/sh", "-c", "true"]


# -- the commands on real SQLite ------------------------------------------------------------------

AGENT = {"id": "A1", "hostname": "h1", "ip": "127.0.0.1", "address": "http://127.0.0.1:1",
         "resources": {"cpus": 2, "mem": 1024}, "attributes": {}, "backend": {}}


@pytest.fixture
async def store(tmp_path: Path):
    s = StateStore(tmp_path / "state.db")
    yield s
    s.close()


async def add_job(store, run_extra=None, schedule=None):
    job, _ = jobspec.parse_job({"id": "j", "run": {"cmd": "true", "cpus": 0.1, "mem": 32, **(run_extra or {})}})
    scheds = [{"schedule": jobspec.parse_schedule(schedule), "next_fire_at": 60.0}] if schedule else []
    await store.propose({"type": "job_put", "create": True, "job": job, "schedules": scheds, "time": 1.0})
    return job


async def launch(store, run_id, attempt, job):
    t = jobspec.task_spec("j", run_id, attempt, job["run"]).to_dict()
    return await store.propose({"type": "job_run_launch", "run_id": run_id, "attempt": attempt, "agent_id": "A1",
                                "task": {"spec": t, "resources": t["resources"], "role": "*", "alloc": {}},
                                "time": 5.0, "uuid": f"u-{run_id}-{attempt}"})


async def task_ends(store, task_id, state, code):
    await store.propose({"type": "task_status", "agent_id": "A1", "time": 6.0, "updates": [
        {"task_id": task_id, "state": state, "uuid": f"s-{task_id}", "timestamp": 6.0, "exit_code": code}]})


async def test_retry_then_success_records_every_attempt(store):
    await store.propose({"type": "agent_register", "time": 1.0, "agent": AGENT})
    job = await add_job(store, {"restart": {"policy": "ON_FAILURE", "maxAttempts": 3}})
    await store.propose({"type": "job_run_start", "job_id": "j", "run_id": "r1", "time": 2.0})
    r = await launch(store, "r1", 1, job)
    with pytest.raises(Conflict):  # the same attempt cannot launch twice
        await launch(store, "r1", 1, job)
    with pytest.raises(Conflict):  # the task has not ended yet
        await store.propose({"type": "job_run_task_ended", "run_id": "r1", "task_id": r["task_id"], "time": 7.0})
    await task_ends(store, r["task_id"], "TASK_FAILED", 2)
    assert (await store.propose({"type": "job_run_task_ended", "run_id": "r1", "task_id": r["task_id"],
                                 "time": 7.0}))["status"] == "INITIAL"
    r2 = await launch(store, "r1", 2, job)
    await task_ends(store, r2["task_id"], "TASK_FINISHED", 0)
    await store.propose({"type": "job_run_task_ended", "run_id": "r1", "task_id": r2["task_id"], "time": 8.0})
    run = views.run(store, "j", "r1")
    assert run["status"] == "SUCCESS" and run["exitCode"] == 0 and run["attempts"] == 2
    assert [(t["attempt"], t["status"], t["exitCode"]) for t in run["tasks"]] == [(1, "TASK_FAILED", 2),
                                                                                  (2, "TASK_FINISHED", 0)]
    with pytest.raises(Conflict):  # replayed end changes nothing
        await store.propose({"type": "job_run_task_ended", "run_id": "r1", "task_id": r2["task_id"], "time": 9.0})


async def test_schedule_fire_is_guarded_and_forbid_rechecked(store):
    await add_job(store, schedule={"id": "s", "cron": "* * * * *", "concurrencyPolicy": "FORBID"})
    fire = {"type": "job_schedule_fire", "job_id": "j", "schedule_id": "s", "expected_next": 60.0,
            "next_fire_at": 120.0, "fires": [{"due_at": 60.0, "action": "START"}], "run_id": "r1", "time": 61.0}
    assert (await store.propose(fire))["run_id"] == "r1"
    with pytest.raises(Conflict):  # already advanced: never fired twice
        await store.propose(fire)
    # the leader thought no run was active; the handler knows better
    again = {**fire, "expected_next": 120.0, "next_fire_at": 180.0, "fires": [{"due_at": 120.0, "action": "START"}],
             "run_id": "r2", "time": 121.0}
    assert (await store.propose(again))["run_id"] is None
    h = views.history(store, "j", full=True)
    assert [s["action"] for s in h["skippedFires"]] == ["SKIP_FORBID"]
    assert views.schedules(store, "j")[0]["lastFireAction"] == "SKIP_FORBID"


async def test_stop_and_remove(store):
    await store.propose({"type": "agent_register", "time": 1.0, "agent": AGENT})
    job = await add_job(store)
    await store.propose({"type": "job_run_start", "job_id": "j", "run_id": "waiting", "time": 2.0})
    assert (await store.propose({"type": "job_run_stop", "run_id": "waiting", "reason": "LAUNCH_DEADLINE",
                                 "time": 3.0}))["status"] == "FAILED"
    await store.propose({"type": "job_run_start", "job_id": "j", "run_id": "live", "time": 2.0})
    r = await launch(store, "live", 1, job)
    stop = await store.propose({"type": "job_run_stop", "run_id": "live", "reason": "ACTIVE_DEADLINE", "time": 4.0})
    assert stop["kill"]["task_id"] == r["task_id"]
    with pytest.raises(Conflict):
        await store.propose({"type": "job_remove", "job_id": "j", "time": 5.0})
    await task_ends(store, r["task_id"], "TASK_KILLED", None)
    await store.propose({"type": "job_run_task_ended", "run_id": "live", "task_id": r["task_id"], "time": 6.0})
    run = views.run(store, "j", "live")
    assert run["status"] == "FAILED" and run["stopReason"] == "ACTIVE_DEADLINE"
    await store.propose({"type": "job_remove", "job_id": "j", "time": 7.0})
    assert views.job(store, "j") is None and views.runs(store, "j") == []
    with pytest.raises(NotFound):
        await store.propose({"type": "job_run_start", "job_id": "j", "run_id": "x", "time": 8.0})
