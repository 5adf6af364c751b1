"""The job framework end to end: real master and agent processes, the /v1/jobs API and `dcosd job`.

Cron under a controllable clock: the master runs with DCOSD_JOBS_CLOCK_FILE (master/jobs/clock.py), so
the test moves job time by rewriting a file. And once for real: a `* * * * *` schedule fires within ~70 s.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from harness.cluster import ClusterFactory, Master, kill_tree_of_tasks, wait_for, world_readable_tmp

T0 = dt.datetime(2024, 6, 15, 10, 0, 30, tzinfo=dt.timezone.utc).timestamp()


def at(hhmmss: str) -> float:
    return dt.datetime.fromisoformat(f"2024-06-15T{hhmmss}+00:00").timestamp()


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds")


def teardown(f: ClusterFactory, tmp: Path) -> None:
    f.stop_all()
    for d in tmp.glob("agent-*"):
        if d.is_dir():
            kill_tree_of_tasks(d)


@pytest.fixture(scope="module")
def clocked():
    """A master whose job clock reads a file, and an agent."""
    tmp = world_readable_tmp()
    clock = tmp / "job-clock"
    clock.write_text(str(T0))
    mp = pytest.MonkeyPatch()
    mp.setenv("DCOSD_JOBS_CLOCK_FILE", str(clock))
    f = ClusterFactory(tmp)
    try:
        m = f.master()
        mp.delenv("DCOSD_JOBS_CLOCK_FILE")
        f.agent(m)
        yield m, clock
    finally:
        mp.undo()
        teardown(f, tmp)


@pytest.fixture(scope="module")
def real():
    tmp = world_readable_tmp()
    f = ClusterFactory(tmp)
    try:
        m = f.master()
        f.agent(m)
        yield m
    finally:
        teardown(f, tmp)


def post(m: Master, path: str, body) -> dict:
    status, out = m.api("POST", path, body)
    assert status == 201, (status, out)
    return out


def runs(m: Master, job_id: str) -> list[dict]:
    return m.get(f"/v1/jobs/{job_id}/runs?all=true")


def ended(m: Master, job_id: str, run_id: str, timeout: float = 30) -> dict:
    return wait_for(lambda: (r := m.get(f"/v1/jobs/{job_id}/runs/{run_id}"))["status"] in ("SUCCESS", "FAILED") and r,
                    timeout, what=f"run {run_id} of {job_id} to end")


def set_clock(clock: Path, t: float) -> None:
    tmp = clock.with_suffix(".tmp")
    tmp.write_text(str(t))
    tmp.replace(clock)


def settle(m: Master, job_id: str) -> None:
    """Let the job loop see the new time: a few of its 0.2 s ticks (absence cannot be waited for)."""
    time.sleep(1.0)


def test_cron_fires_on_the_right_minutes_under_a_controlled_clock(clocked):
    m, clock = clocked
    job = {"id": "every-two", "run": {"cmd": "true", "cpus": 0.1, "mem": 32},
           "schedules": [{"id": "s", "cron": "*/2 * * * *", "startingDeadlineSeconds": 60}]}
    created = post(m, "/v1/jobs", job)
    assert created["schedules"][0]["nextRunAt"] == iso(at("10:02:00"))

    set_clock(clock, at("10:01:59"))
    settle(m, "every-two")
    assert runs(m, "every-two") == []

    for now, due in (("10:02:01", "10:02:00"), ("10:04:00.500", "10:04:00")):
        set_clock(clock, at(now))
        wait_for(lambda: any(r["scheduledAt"] == iso(at(due)) for r in runs(m, "every-two")), 10,
                 what=f"the run due at {due}")
    # A pause: 10:06 and 10:08 are both due at 10:09:30; only the latest is tried, and it is 90 s late.
    set_clock(clock, at("10:09:30"))
    wait_for(lambda: len(m.get("/v1/jobs/every-two?embed=history")["history"]["skippedFires"]) == 2, 10,
             what="two skipped fires")
    set_clock(clock, at("10:10:10"))
    wait_for(lambda: len(runs(m, "every-two")) == 3, 10, what="the 10:10 run")
    settle(m, "every-two")
    got = sorted(r["scheduledAt"] for r in runs(m, "every-two"))
    assert got == [iso(at("10:02:00")), iso(at("10:04:00")), iso(at("10:10:00"))]
    skipped = m.get("/v1/jobs/every-two?embed=history")["history"]["skippedFires"]
    assert {(s["dueAt"], s["action"]) for s in skipped} == {(iso(at("10:06:00")), "MISSED"),
                                                            (iso(at("10:08:00")), "SKIP_DEADLINE")}
    for r in runs(m, "every-two"):
        assert ended(m, "every-two", r["id"])["status"] == "SUCCESS"
    assert m.get("/v1/jobs/every-two/schedules/s")["nextRunAt"] == iso(at("10:12:00"))


def test_forbid_skips_a_fire_while_a_run_is_active(clocked):
    m, clock = clocked
    now = float(clock.read_text())
    base = (int(now // 60) + 1) * 60  # the next whole minute of job time
    post(m, "/v1/jobs", {"id": "forbid", "run": {"cmd": "sleep 60", "cpus": 0.1, "mem": 32,
                                                 "taskKillGracePeriodSeconds": 1},
                         "schedules": [{"id": "s", "cron": "* * * * *", "concurrencyPolicy": "FORBID"}]})
    set_clock(clock, base + 1)
    first = wait_for(lambda: [r for r in runs(m, "forbid") if r["status"] == "ACTIVE"
                              and r["tasks"] and r["tasks"][-1]["status"] == "TASK_RUNNING"], 20,
                     what="the first run running")[0]
    set_clock(clock, base + 61)
    wait_for(lambda: m.get("/v1/jobs/forbid?embed=history")["history"]["skippedFires"], 10, what="a FORBID skip")
    (skip,) = m.get("/v1/jobs/forbid?embed=history")["history"]["skippedFires"]
    assert skip["action"] == "SKIP_FORBID" and skip["dueAt"] == iso(base + 60)
    assert [r["id"] for r in runs(m, "forbid")] == [first["id"]]
    # Stopped, the run fails; the next minute starts a new one.
    status, _ = m.api("POST", f"/v1/jobs/forbid/runs/{first['id']}/actions/stop", {})
    assert status == 200
    assert ended(m, "forbid", first["id"])["stopReason"] == "STOPPED"
    set_clock(clock, base + 121)
    wait_for(lambda: len(runs(m, "forbid")) == 2, 10, what="the run after the stop")
    status, body = m.api("DELETE", "/v1/jobs/forbid")
    assert status == 409, body
    status, body = m.api("DELETE", "/v1/jobs/forbid?stopCurrentJobRuns=true")
    assert status == 200 and body["removed"], body
    assert m.api("GET", "/v1/jobs/forbid")[0] == 404


def test_jobs_on_real_time(real, tmp_path):
    """One master+agent on the real clock: a `* * * * *` schedule fires for real within a minute, and
    meanwhile one-off runs record exit codes, retry up to maxAttempts and are killed at their deadline."""
    m = real
    post(m, "/v1/jobs", {"id": "tick", "run": {"cmd": "echo tick", "cpus": 0.1, "mem": 32},
                         "schedules": [{"id": "s", "cron": "* * * * *"}]})
    fire_by = time.monotonic() + 75

    # One-off run through the CLI: exit code in history.
    definition = tmp_path / "exit7.json"
    definition.write_text(json.dumps({"id": "exit7", "run": {"cmd": "exit 7", "cpus": 0.1, "mem": 32}}))
    m.cli("job", "add", str(definition), check=True)
    cp = m.cli("job", "run", "exit7", "--wait", "--json")
    assert cp.returncode == 1, cp.stderr
    run = json.loads(cp.stdout)
    assert run["status"] == "FAILED" and run["exitCode"] == 7
    hist = json.loads(m.cli("job", "history", "exit7", "--json", check=True).stdout)
    assert hist["failureCount"] == 1 and hist["runs"][0]["exitCode"] == 7
    assert hist["runs"][0]["startedAt"] and hist["runs"][0]["finishedAt"]
    assert "FAILED" in m.cli("job", "history", "exit7", check=True).stdout

    # maxAttempts: a failing run is launched three times, then fails.
    post(m, "/v1/jobs", {"id": "flaky", "run": {"cmd": "exit 3", "cpus": 0.1, "mem": 32,
                                                "restart": {"policy": "ON_FAILURE", "maxAttempts": 3}}})
    r = post(m, "/v1/jobs/flaky/runs", {})
    # activeDeadlineSeconds: a long run is killed.
    post(m, "/v1/jobs", {"id": "slow", "run": {"cmd": "sleep 120", "cpus": 0.1, "mem": 32,
                                               "activeDeadlineSeconds": 2, "taskKillGracePeriodSeconds": 1,
                                               "restart": {"policy": "ON_FAILURE", "maxAttempts": 5}}})
    slow = post(m, "/v1/jobs/slow/runs", {})

    flaky = ended(m, "flaky", r["id"], 60)
    assert flaky["status"] == "FAILED" and flaky["attempts"] == 3
    assert [(t["status"], t["exitCode"]) for t in flaky["tasks"]] == [("TASK_FAILED", 3)] * 3
    s = ended(m, "slow", slow["id"], 60)
    assert s["status"] == "FAILED" and s["stopReason"] == "ACTIVE_DEADLINE" and s["attempts"] == 1
    assert s["tasks"][0]["status"] == "TASK_KILLED"

    # Bad input: 422 naming the field, nothing created.
    status, body = m.api("POST", "/v1/jobs", {"id": "bad", "run": {"cmd": "true"},
                                              "schedules": [{"id": "s", "cron": "0 25 * * *"}]})
    assert status == 422 and "schedules[0].cron" in body["message"]
    assert m.api("GET", "/v1/jobs/bad")[0] == 404
    cp = m.cli("job", "show", "nope")
    assert cp.returncode == 3 and cp.stderr.count("\n") == 1

    assert m.api("GET", "/v1/jobs", token="")[0] == 401  # operator token required (auth is on)
    assert m.api("POST", "/v1/jobs/exit7/runs", {}, token="wrong")[0] == 401
    table = m.cli("job", "list", check=True).stdout
    assert table.startswith("ID") and "* * * * * UTC" in table
    listed = json.loads(m.cli("job", "list", "--json", check=True).stdout)
    assert {j["id"] for j in listed} == {"tick", "exit7", "flaky", "slow"}

    remaining = max(1.0, fire_by - time.monotonic())
    tick = wait_for(lambda: [x for x in runs(m, "tick") if x["status"] == "SUCCESS"], remaining, interval=0.5,
                    what="the every-minute schedule to fire for real")[0]
    assert tick["trigger"] == "schedule:s"
    assert tick["scheduledAt"].endswith(":00.000+00:00")
    cp = m.cli("job", "remove", "tick", check=True)
    assert "removed" in cp.stdout
