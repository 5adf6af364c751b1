"""The services planner moving instances off draining nodes (pure): only those instances move, replacements
start first, a draining instance goes only once the app has its target ready without it."""

from __future__ import annotations

import math
import random

import pytest

from dcosd.master.services.appdef import parse_app
from dcosd.master.services.planner import Instance, plan_app


def app(n=4, m=0.5, o=0.0, checks=True, **kw):
    raw = {"id": "/web", "cmd": "sleep 1", "instances": n,
           "upgradeStrategy": {"minimumHealthCapacity": m, "maximumOverCapacity": o},
           "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}}] if checks else [], **kw}
    return parse_app(raw)


def inst(i, version="v1", state="TASK_RUNNING", healthy=True, draining=False):
    return Instance(f"t{i}", version, state, healthy, float(i), draining)


def test_without_draining_instances_nothing_changes():
    live = [inst(i) for i in range(4)]
    p = plan_app(app(), "v1", live)
    assert p.done and p.launch == 0 and p.kill == []


def test_max_over_capacity_zero_starts_one_replacement_and_kills_nothing_yet():
    live = [inst(0, draining=True), inst(1, draining=True), inst(2), inst(3)]
    p = plan_app(app(o=0.0), "v1", live)
    assert p.launch == 1 and p.kill == [] and not p.done
    assert "2 to move off draining nodes" in p.note
    # The replacement starting: nothing more until it is ready.
    live.append(inst(10, state="TASK_STAGING", healthy=None))
    p = plan_app(app(o=0.0), "v1", live)
    assert p.launch == 0 and p.kill == []
    # Running but no health result yet is not ready either.
    live[-1] = inst(10, healthy=None)
    p = plan_app(app(o=0.0), "v1", live)
    assert p.launch == 0 and p.kill == []
    # Ready: one draining instance goes (the youngest by default), and the next replacement starts.
    live[-1] = inst(10)
    p = plan_app(app(o=0.0), "v1", live)
    assert p.kill == ["t1"] and p.launch == 1


def test_room_over_capacity_starts_all_replacements_at_once():
    live = [inst(0, draining=True), inst(1, draining=True), inst(2), inst(3)]
    p = plan_app(app(o=0.5), "v1", live)
    assert p.launch == 2 and p.kill == []


def test_unready_draining_instances_go_at_once_ready_ones_wait():
    live = [inst(0, draining=True, healthy=False), inst(1, draining=True, state="TASK_STAGING", healthy=None),
            inst(2, draining=True), inst(3)]
    p = plan_app(app(), "v1", live)
    assert sorted(p.kill) == ["t0", "t1"]
    assert p.launch == 3  # t2 (draining, ready) stays until replaced; n + 1 = 5 with t2 and t3


def test_instances_elsewhere_are_never_touched():
    a = app(n=5, o=1.0)
    live = [inst(0, draining=True), inst(1), inst(2), inst(3), inst(10), inst(11, state="TASK_STAGING", healthy=None)]
    # The replacement is starting: nothing goes, nothing more starts.
    p = plan_app(a, "v1", live)
    assert p.kill == [] and p.launch == 0
    # Ready: the draining instance goes, and only it.
    live[-1] = inst(11)
    p = plan_app(a, "v1", live)
    assert p.kill == ["t0"] and p.launch == 0
    p = plan_app(a, "v1", live[1:])
    assert p.done


def test_a_drain_never_lowers_a_ready_count_already_below_target():
    # Only 2 of 4 ready, one of them draining: it stays until a replacement is ready and the target met.
    live = [inst(0, draining=True), inst(1), inst(2, healthy=False), inst(3, state="TASK_STAGING", healthy=None)]
    p = plan_app(app(), "v1", live)
    assert "t0" not in p.kill


def test_scaled_to_zero_draining_instances_go():
    p = plan_app(app(n=0), "v1", [inst(0, draining=True), inst(1, draining=True)])
    assert sorted(p.kill) == ["t0", "t1"] and p.launch == 0


def test_no_health_checks_running_is_ready():
    live = [inst(0, draining=True, healthy=None), inst(1, healthy=None), inst(2, healthy=None)]
    p = plan_app(app(n=2, checks=False), "v1", live)
    assert p.kill == ["t0"] and p.launch == 0


def simulate(a, live, seed, config_version="v1"):
    """Run plans to the end; starting instances become ready (or fail) in random order; kills take effect at once."""
    rng = random.Random(seed)
    n = a["instances"]
    cap = max(n + 1, math.floor(n * (1 + a["upgradeStrategy"]["maximumOverCapacity"])))
    floor = math.ceil(n * a["upgradeStrategy"]["minimumHealthCapacity"])
    untouched = {i.task_id for i in live if not i.draining and i.config_version == config_version}
    nid = 100
    for _ in range(2000):
        p = plan_app(a, config_version, live)
        before = sum(i.ready(True) for i in live)
        pure_drain = all(i.config_version == config_version for i in live)
        live = [i for i in live if i.task_id not in p.kill]
        after = sum(i.ready(True) for i in live)
        if pure_drain:
            # A kill never lowers the ready count below the target or where it was; the instances on
            # other nodes are never touched.
            assert after >= min(before, n), (before, after, p)
            assert not untouched & set(p.kill), p
        else:  # beside a rolling replacement: that one's bound (one below it only to get unstuck)
            assert after >= min(before, floor - 1), (before, after, p)
        for _ in range(p.launch):
            live.append(Instance(f"t{nid}", config_version, "TASK_STAGING", None, float(nid)))
            nid += 1
        assert len(live) <= cap, (len(live), cap)
        if p.done:
            assert not any(i.draining for i in live)
            assert sum(i.ready(True) for i in live) == n
            return live
        starting = [k for k, i in enumerate(live) if not i.ready(True)]
        if starting:
            k = rng.choice(starting)
            i = live[k]
            outcome = rng.random()
            if outcome < 0.05:  # a replacement crashes: gone, the planner launches another
                del live[k]
            else:
                live[k] = Instance(i.task_id, i.config_version, "TASK_RUNNING", True, i.started, i.draining)
    raise AssertionError("the drain never finished")


@pytest.mark.parametrize("n,m,o", [(4, 0.5, 0.0), (4, 0.5, 1.0), (1, 1.0, 0.0), (5, 1.0, 0.0), (6, 0.0, 0.5),
                                   (3, 0.5, 0.2), (10, 0.9, 0.1)])
def test_drain_simulated_keeps_ready_and_finishes(n, m, o):
    a = app(n=n, m=m, o=o)
    for seed in range(25):
        rng = random.Random(seed)
        live = [inst(i, draining=rng.random() < 0.5) for i in range(n)]
        out = simulate(a, live, seed)
        assert {i.task_id for i in live if not i.draining} <= {i.task_id for i in out}


def test_drain_during_a_rolling_replacement_finishes():
    a = app(n=4, m=0.5, o=0.0)
    for seed in range(25):
        rng = random.Random(seed)
        live = [inst(i, version=rng.choice(["v1", "v2"]), draining=rng.random() < 0.5) for i in range(4)]
        simulate(a, live, seed, config_version="v2")
