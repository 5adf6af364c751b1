"""The service planner (pure): steady state, surplus, rolling replacement bounds, backoff, steps, app parsing."""

from __future__ import annotations

import math
import random

import pytest

from dcosd.master.services.appdef import AppInvalid, merge_update, normalise_id, parse_app, discovery_name
from dcosd.master.services.planner import Instance, backoff_delay, deployment_steps, plan_app


def app(n=4, m=1.0, o=1.0, checks=True, **kw):
    raw = {"id": "/grp/web", "cmd": "sleep 1", "instances": n,
           "upgradeStrategy": {"minimumHealthCapacity": m, "maximumOverCapacity": o},
           "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}] if checks else [], **kw}
    return parse_app(raw)


def inst(i, version="v2", state="TASK_RUNNING", healthy=True, started=None):
    return Instance(f"t{i}", version, state, healthy, float(i if started is None else started))


def test_steady_state_launches_and_converges():
    a = app(3)
    p = plan_app(a, "v2", [])
    assert p.launch == 3 and not p.done
    p = plan_app(a, "v2", [inst(i) for i in range(3)])
    assert p.launch == 0 and p.kill == [] and p.done
    p = plan_app(a, "v2", [inst(0), inst(1, healthy=None), inst(2, state="TASK_STAGING", healthy=None)])
    assert p.launch == 0 and not p.done and p.ready == 1


def test_surplus_kills_unready_then_youngest_or_oldest():
    live = [inst(0), inst(1), inst(2, healthy=False), inst(3)]
    assert plan_app(app(2), "v2", live).kill == ["t2", "t3"]
    assert plan_app(app(2, killSelection="OLDEST_FIRST"), "v2", live).kill == ["t2", "t0"]


def simulate(a, old_n, seed):
    """Run a rolling replacement to the end, with launches becoming ready in random order."""
    rng = random.Random(seed)
    live = [inst(i, "v1") for i in range(old_n)]
    nid = 100
    floor = math.ceil(a["instances"] * a["upgradeStrategy"]["minimumHealthCapacity"])
    cap = max(a["instances"], math.floor(a["instances"] * (1 + a["upgradeStrategy"]["maximumOverCapacity"])))
    for _ in range(2000):
        p = plan_app(a, "v2", live)
        live = [i for i in live if i.task_id not in p.kill]
        ready = sum(i.ready(True) for i in live)
        # With no room above the target (floor ≥ cap) one instance at a time must go down first.
        assert ready >= (floor - 1 if floor >= cap else floor) or not p.kill, (ready, floor)
        for _ in range(p.launch):
            live.append(inst(nid, "v2", "TASK_STAGING", None, started=nid))
            nid += 1
        assert len(live) <= cap
        if p.done:
            return live
        # some starting instance becomes ready — or nothing changes before the planner looks again
        starting = [i for i in live if not i.ready(True)]
        if starting and rng.random() < 0.5:
            s = rng.choice(starting)
            live = [i if i is not s else inst(int(s.task_id[1:]), s.config_version, started=s.started) for i in live]
    raise AssertionError("the rolling replacement did not finish")


@pytest.mark.parametrize("n,m,o", [(4, 0.5, 0.0), (4, 1.0, 1.0), (4, 0.5, 0.5), (5, 0.6, 0.2), (1, 1.0, 0.0),
                                   (1, 0.5, 0.0), (10, 0.0, 0.0), (3, 1.0, 0.34)])
def test_rolling_replacement_keeps_bounds_and_finishes(n, m, o):
    a = app(n, m, o)
    for seed in range(20):
        end = simulate(a, n, seed)
        assert len(end) == n and all(i.config_version == "v2" and i.ready(True) for i in end)


def test_rolling_half_capacity_kills_half_first():
    p = plan_app(app(4, 0.5, 0.0), "v2", [inst(i, "v1") for i in range(4)])
    assert len(p.kill) == 2 and p.launch == 2


def test_rolling_full_capacity_launches_first():
    p = plan_app(app(4, 1.0, 1.0), "v2", [inst(i, "v1") for i in range(4)])
    assert p.kill == [] and p.launch == 4


def test_backoff_grows_by_factor_and_caps():
    assert backoff_delay(0, 1, 2, 100) == 0
    assert [backoff_delay(k, 1, 2, 100) for k in range(1, 6)] == [1, 2, 4, 8, 16]
    assert backoff_delay(20, 1, 2, 100) == 100
    assert backoff_delay(3, 0.5, 1.15, 300) == pytest.approx(0.5 * 1.15 ** 2)


def test_deployment_steps_follow_dependencies():
    assert deployment_steps({"/a": [], "/b": ["/a"], "/c": ["/b"], "/d": []}) == [["/a", "/d"], ["/b"], ["/c"]]
    assert deployment_steps({"/b": ["/outside"]}) == [["/b"]]
    with pytest.raises(ValueError, match="cycle"):
        deployment_steps({"/a": ["/b"], "/b": ["/a"]})


def test_ids_and_discovery_names():
    assert normalise_id("web", "/grp") == "/grp/web"
    assert normalise_id("//grp//web/") == "/grp/web"
    assert normalise_id("../x", "/grp/sub") == "/grp/x"
    assert discovery_name("/grp/app") == "app.grp"
    for bad in ("/Web", "/-a", "/a_b", "", "/../x", 5, "/web\n", "/web\n/x"):
        with pytest.raises(AppInvalid):
            normalise_id(bad)


@pytest.mark.parametrize("raw,field", [
    ({"id": "/a", "cmd": "x", "bogus": 1}, "bogus"),
    ({"id": "/A", "cmd": "x"}, "id"),
    ({"id": "/a"}, "cmd"),
    ({"id": "/a", "cmd": "x", "args": ["y"]}, "cmd"),
    ({"id": "/a", "cmd": "x", "cpus": -1}, "cpus"),
    ({"id": "/a", "cmd": "x", "mem": 1e30}, "mem"),
    ({"id": "/a", "cmd": "x", "instances": 1.5}, "instances"),
    ({"id": "/a", "cmd": "x", "constraints": [["hostname", "NOPE"]]}, "constraints"),
    ({"id": "/a", "cmd": "x", "constraints": [["hostname", "LIKE", "("]]}, "constraints"),
    ({"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "COMMAND"}]}, "healthChecks[0].command"),
    ({"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "HTTP", "portIndex": 3}]}, "healthChecks[0].portIndex"),
    ({"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "GOPHER"}]}, "healthChecks[0].protocol"),
    ({"id": "/a", "cmd": "x", "requirePorts": True}, "requirePorts"),
    ({"id": "/a", "cmd": "x", "uris": ["ftp://x"]}, "uris"),
    ({"id": "/a", "cmd": "x", "killSelection": "RANDOM"}, "killSelection"),
    ({"id": "/a", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 2}}, "upgradeStrategy.minimumHealthCapacity"),
    ({"id": "/a", "cmd": "x", "env": {"A": 1}}, "env.A"),
    ({"id": "/a", "cmd": "x", "dependencies": ["/a"]}, "dependencies"),
    ({"id": "/a", "cmd": "x", "container": {"docker": {"image": "x"}}}, "container"),
])
def test_bad_definitions_name_the_field(raw, field):
    with pytest.raises(AppInvalid) as e:
        parse_app(raw)
    assert field in str(e.value)
    assert e.value.http_status == 422


def test_defaults_read_only_fields_and_merge():
    a = parse_app({"id": "/a", "cmd": "x", "tasksRunning": 3, "version": "v", "deployments": []})
    assert a["instances"] == 1 and a["portDefinitions"] == [{"port": 0, "protocol": "tcp"}] and a["ports"] == [0]
    assert a["upgradeStrategy"] == {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}
    b = merge_update(a, {"instances": 3})
    assert b["instances"] == 3 and b["cmd"] == "x"
    c = merge_update(a, {"args": ["sleep", "1"]})
    assert c["cmd"] is None and c["args"] == ["sleep", "1"]
    d = merge_update(a, {"ports": [0, 0]})
    assert len(d["portDefinitions"]) == 2
    with pytest.raises(AppInvalid, match="renamed"):
        merge_update(a, {"id": "/b"})
