"""marathon-python 0.13.0 against dcosd's /v2 API, on a real master and two real agents.

The agents have different --hostname values so a hostname UNIQUE constraint
means "one per agent" on one machine.
"""

from __future__ import annotations

import collections
import collections.abc
import json
import time
from pathlib import Path

import pytest

from harness.cluster import ClusterFactory, Master, kill_tree_of_tasks, wait_for

collections.Iterable = collections.abc.Iterable  # type: ignore[attr-defined]  # marathon 0.13 on Python ≥ 3.10
marathon = pytest.importorskip("marathon")
from marathon import MarathonClient  # noqa: E402
from marathon.models import MarathonApp, MarathonConstraint, MarathonHealthCheck  # noqa: E402

# marathon 0.13 logs through the deprecated Logger.warn (a COMMAND check read back as {"value": ...}).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RES = "cpus:4;mem:4096;disk:1000;ports:[31000-31200]"


@pytest.fixture
def cluster(tmp_path: Path):
    f = ClusterFactory(tmp_path)
    try:
        m = f.master()
        agents = [f.agent(m, "--hostname", f"host-{x}", "--resources", RES) for x in "ab"]
        yield m, agents
    finally:
        f.stop_all()
        for d in tmp_path.glob("agent-*"):
            if d.is_dir():
                kill_tree_of_tasks(d)


def client(m: Master) -> MarathonClient:
    return MarathonClient(m.url, auth_token=m.token)


def command_check(interval: float = 0.5) -> MarathonHealthCheck:
    return MarathonHealthCheck(protocol="COMMAND", command="test -n \"$MESOS_TASK_ID\"", interval_seconds=interval,
                               grace_period_seconds=10, timeout_seconds=5, max_consecutive_failures=3)


def healthy(c: MarathonClient, app_id: str, n: int) -> bool:
    a = c.get_app(app_id)
    return a.tasks_healthy == n and a.tasks_running == n and not a.deployments


def test_app_lifecycle_with_health_check_and_unique_hostname(cluster):
    m, _ = cluster
    c = client(m)
    assert c.ping().strip() == b"pong"
    info = c.get_info()
    assert info.name == "marathon" and info.elected
    app = MarathonApp(cmd="echo $MARATHON_APP_ID $PORT0 > out; sleep 300", cpus=0.1, mem=32, instances=2,
                      constraints=[MarathonConstraint("hostname", "UNIQUE")], health_checks=[command_check()],
                      labels={"team": "web"})
    created = c.create_app("/grp/web", app)
    assert created.id == "/grp/web" and created.instances == 2
    wait_for(lambda: healthy(c, "/grp/web", 2), 30, what="2 healthy instances")

    got = c.get_app("/grp/web", embed_tasks=True)
    assert got.constraints[0].field == "hostname" and got.constraints[0].operator == "UNIQUE"
    assert got.health_checks[0].protocol == "COMMAND" and got.labels == {"team": "web"}
    assert {t.host for t in got.tasks} == {"host-a", "host-b"}  # UNIQUE: one per agent
    assert all(t.health_check_results[0].alive for t in got.tasks)
    assert [a.id for a in c.list_apps()] == ["/grp/web"]

    c.scale_app("/grp/web", instances=1)  # PUT /v2/apps//grp/web
    wait_for(lambda: healthy(c, "/grp/web", 1) and len(c.list_tasks("/grp/web")) == 1, 30, what="scaled to 1")
    c.scale_app("/grp/web", instances=2)
    wait_for(lambda: healthy(c, "/grp/web", 2), 30, what="scaled back to 2")
    tasks = c.list_tasks("/grp/web")
    assert len(tasks) == 2 and all(t.app_id == "/grp/web" and t.state == "TASK_RUNNING" for t in tasks)
    assert all(t.ports and 31000 <= t.ports[0] <= 31200 for t in tasks)

    victim = tasks[0]
    c.kill_task("/grp/web", victim.id)
    wait_for(lambda: healthy(c, "/grp/web", 2) and victim.id not in {t.id for t in c.list_tasks("/grp/web")}, 30,
             what="the killed instance replaced")
    assert {t.host for t in c.list_tasks("/grp/web")} == {"host-a", "host-b"}

    versions = c.list_versions("/grp/web")
    assert len(versions) >= 3
    assert c.list_deployments() == [] or all(d.affected_apps for d in c.list_deployments())

    c.delete_app("/grp/web")
    wait_for(lambda: not c.list_tasks() and not c.list_apps(), 30, what="app and its instances gone")
    with pytest.raises(marathon.exceptions.NotFoundError):
        c.get_app("/grp/web")


def test_bad_definitions_are_refused_with_422_naming_the_field(cluster):
    m, _ = cluster
    for body, field in (({"id": "/x", "cmd": "true", "bogus": 1}, "bogus"), ({"id": "/X Y", "cmd": "true"}, "id"),
                        ({"id": "/x", "cmd": "true", "constraints": [["hostname", "SOMETIMES"]]}, "constraints"),
                        ({"id": "/x", "cmd": "true", "cpus": -2}, "cpus")):
        status, out = m.api("POST", "/v2/apps", body)
        assert status == 422 and field in out["message"], (status, out)
    assert m.get("/v2/apps") == {"apps": []}  # nothing half-applied
    status, out = m.api("GET", "/v2/apps/nope")
    assert status == 404 and "message" in out


def test_unique_with_more_instances_than_agents_waits_and_says_why(cluster):
    m, _ = cluster
    c = client(m)
    c.create_app("/spread", MarathonApp(cmd="sleep 300", cpus=0.1, mem=32, instances=3,
                                        constraints=[MarathonConstraint("hostname", "UNIQUE")]))
    wait_for(lambda: c.get_app("/spread").tasks_running == 2, 30, what="2 of 3 running")

    def explained():
        (d,) = m.get("/dcosd/v1/services/deployments")["deployments"]
        why = d["apps"]["/spread"]["waiting"]
        return why if "UNIQUE" in why else None
    why = wait_for(explained, 15, what="a reason for the waiting instance")
    assert "1 instance(s) waiting" in why and "hostname:UNIQUE" in why, why
    deps = c.list_deployments()
    assert len(deps) == 1 and deps[0].affected_apps == ["/spread"]
    cli = m.cli("deployment", "list")
    assert cli.returncode == 0 and "hostname:UNIQUE" in cli.stdout, (cli.stdout, cli.stderr)
    time.sleep(1.5)
    assert c.get_app("/spread").tasks_running == 2  # never a second instance on one host


def test_rolling_update_keeps_half_healthy(cluster):
    m, _ = cluster
    c = client(m)
    c.create_app("/roll", MarathonApp(cmd="sleep 300", cpus=0.1, mem=32, instances=4, health_checks=[command_check(0.3)],
                                      upgrade_strategy={"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0}))
    wait_for(lambda: healthy(c, "/roll", 4), 30, what="4 healthy")
    old = {t.id for t in c.list_tasks("/roll")}
    out = c.update_app("/roll", MarathonApp(cmd="sleep 301"))
    assert out["deploymentId"]
    samples = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        a = c.get_app("/roll")
        samples.append(a.tasks_healthy)
        if not a.deployments and a.tasks_healthy == 4:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"rolling update did not finish: {samples[-10:]}")
    assert min(samples) >= 2, samples
    assert min(samples) < 4, samples  # the update was seen under way (a count of samples depended on speed)
    new = c.list_tasks("/roll")
    assert len(new) == 4 and not (old & {t.id for t in new})


def test_crash_loop_backs_off_exponentially(cluster):
    m, _ = cluster
    status, _ = m.api("POST", "/v2/apps", {"id": "/crash", "cmd": "exit 1", "cpus": 0.1, "mem": 32,
                                           "backoffSeconds": 1, "backoffFactor": 2, "maxLaunchDelaySeconds": 60})
    assert status == 201
    seen_delay = []

    def launches() -> list[float]:
        q = m.get("/v2/queue")["queue"]
        seen_delay.extend(i["delay"]["timeLeftSeconds"] for i in q if i["app"]["id"] == "/crash")
        tasks = m.get("/dcosd/v1/tasks?all=1&limit=1000")["tasks"]
        return sorted(t["created_at"] for t in tasks if t.get("spec", {}).get("labels", {}).get("DCOSD_APP_ID")
                      == "/crash")
    times = wait_for(lambda: ts if len(ts := launches()) >= 5 else None, 40, interval=0.1, what="5 launches")
    gaps = [b - a for a, b in zip(times, times[1:])][:4]
    ratios = [b / a for a, b in zip(gaps, gaps[1:])]
    assert all(1.4 < r < 2.7 for r in ratios[1:]), (gaps, ratios)
    assert gaps[3] > gaps[1] * 2.8, gaps
    assert max(seen_delay) > 0.5, seen_delay  # the delay is visible in /v2/queue
    assert json.dumps(m.get("/v2/apps/crash")["app"]["lastTaskFailure"])
