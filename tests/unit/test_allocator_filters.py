"""Offer lifecycle: filters from DECLINE and ACCEPT, REVIVE, SUPPRESS, rescind, min allocatable."""

from __future__ import annotations

from dcosd.master.allocator import (
    GPU_CAPABILITY, Allocator, AllocatorConfig, Launch, RoleResources, refuse_seconds_or_default,
)
from dcosd.model.resources import Resources as R


def new(n: int = 1, offer_timeout: float | None = None, **res: float) -> Allocator:
    a = Allocator(AllocatorConfig(shuffle_seed=None, offer_timeout=offer_timeout))
    for i in range(n):
        a.add_agent(f"a{i}", R.of(**(res or {"cpus": 4, "mem": 8192})))
    return a


def test_offered_resources_are_not_offered_again_until_answered() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    a.add_framework("g", ["s"])
    first = a.allocate(0.0)
    assert len(first) == 2
    assert a.allocate(1.0) == []
    assert a.allocate(100.0) == []


def test_decline_refuse_30_not_reoffered_before_30s_and_revive_clears() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    assert a.decline("f", [o.offer_id], 0.0, refuse_seconds=30) == []
    for t in (0.0, 1.0, 10.0, 29.0, 29.999):
        assert a.allocate(t) == [], t
    assert a.is_filtered("f", "a0", 29.0)
    [o2] = a.allocate(30.0)
    assert o2.agent_id == "a0"
    a.decline("f", [o2.offer_id], 30.0, refuse_seconds=30)
    assert a.allocate(31.0) == []
    a.revive("f")
    [o3] = a.allocate(31.0)
    assert o3.agent_id == "a0"


def test_filter_only_for_that_framework_and_agent() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    offers = a.allocate(0.0)
    assert len(offers) == 2
    a.decline("f", [offers[0].offer_id], 0.0, refuse_seconds=30)
    a.decline("f", [offers[1].offer_id], 0.0, refuse_seconds=0)  # 0: no filter
    [o] = a.allocate(1.0)
    assert o.agent_id == offers[1].agent_id
    a.add_framework("g", ["s"])
    [og] = a.allocate(2.0)
    assert og.framework_id == "g" and og.agent_id == offers[0].agent_id


def test_default_refuse_is_5_seconds() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    a.decline("f", [o.offer_id], 0.0)
    assert a.allocate(4.9) == []
    assert len(a.allocate(5.0)) == 1
    assert refuse_seconds_or_default(None) == 5.0
    assert refuse_seconds_or_default(-1) == 5.0
    assert refuse_seconds_or_default(float("nan")) == 5.0
    assert refuse_seconds_or_default(1e12) == 365 * 24 * 3600.0


def test_filter_does_not_hide_more_resources_than_refused() -> None:
    """Mesos semantics: a filter covers what was refused; a bigger offer passes it."""
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    res = a.accept("f", [o.offer_id], [Launch(R.of(cpus=1, mem=1024))], 0.0, refuse_seconds=60)
    assert res.ok
    assert res.returned == RoleResources({"*": R.of(cpus=3, mem=7168)})
    assert a.allocate(1.0) == []  # the remainder is filtered for 60 s
    role, drawn = res.launched[0]
    a.recover("a0", "f", role, drawn)  # the task ended: more than was refused is free now
    [o2] = a.allocate(2.0)
    assert o2.scalars() == {"cpus": 4, "mem": 8192}


def test_accept_remainder_filtered_default_5s() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    assert a.accept("f", [o.offer_id], [Launch(R.of(cpus=1, mem=1024))], 0.0).ok
    assert a.allocate(4.0) == []
    [o2] = a.allocate(5.0)
    assert o2.scalars() == {"cpus": 3, "mem": 7168}


def test_several_filters_on_one_agent_all_count() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    a.decline("f", [o.offer_id], 0.0, refuse_seconds=100)
    # A second, shorter filter on the same agent must not shorten the first.
    a.revive("f")
    [o] = a.allocate(1.0)
    a.decline("f", [o.offer_id], 1.0, refuse_seconds=100)
    a.add_framework("g", ["s"])
    [og] = a.allocate(2.0)
    a.decline("g", [og.offer_id], 2.0, refuse_seconds=1000)
    assert a.allocate(50.0) == []
    assert len(a.allocate(101.0)) == 1


def test_suppress_stops_offers_and_revive_resumes() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    a.suppress("f")
    assert a.is_suppressed("f")
    assert a.allocate(0.0) == []
    a.revive("f")
    assert len(a.allocate(1.0)) == 2


def test_suppress_per_role() -> None:
    a = new(2)
    a.add_framework("f", ["r1", "r2"])
    a.suppress("f", ["r1"])
    offers = a.allocate(0.0)
    assert {o.role for o in offers} == {"r2"}
    assert not a.is_suppressed("f") and a.is_suppressed("f", "r1")


def test_suppressed_at_subscription() -> None:
    a = new(1)
    a.add_framework("f", ["r"], suppressed_roles=["r"])
    assert a.allocate(0.0) == []


def test_inactive_framework_gets_no_offers_and_its_offers_are_rescinded() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    offers = a.allocate(0.0)
    assert {o.offer_id for o in a.deactivate_framework("f")} == {o.offer_id for o in offers}
    assert a.allocate(1.0) == []
    a.activate_framework("f")
    assert len(a.allocate(2.0)) == 2


def test_rescind_after_offer_timeout() -> None:
    a = new(2, offer_timeout=10.0)
    a.add_framework("f", ["r"])
    [o1] = a.allocate(0.0, agent_ids=["a0"])
    [o2] = a.allocate(5.0, agent_ids=["a1"])
    assert a.expired_offers(9.9) == []
    assert a.expired_offers(10.0) == [o1]
    assert a.rescind_expired(12.0) == [o1]
    assert a.offers("f") == [o2]
    assert a.rescind_expired(15.0) == [o2]
    assert a.offers() == []
    # Rescinded resources come back without a filter.
    assert len(a.allocate(15.0)) == 2
    a.check_invariants()


def test_no_timeout_means_no_rescind() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    a.allocate(0.0)
    assert a.expired_offers(1e9) == []


def test_explicit_rescind() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    assert a.rescind(o.offer_id) is o
    assert a.rescind(o.offer_id) is None
    assert len(a.allocate(0.0)) == 1


def test_min_allocatable_cpus_or_mem() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("tiny-cpu", R.of(cpus=0.005, mem=16, disk=100))  # neither
    a.add_agent("only-cpu", R.of(cpus=0.01))  # cpus 0.01 is enough
    a.add_agent("only-mem", R.of(mem=32))  # mem 32 is enough
    a.add_agent("disk-only", R.of(disk=100000))
    a.add_framework("f", ["r"])
    got = sorted(o.agent_id for o in a.allocate(0.0))
    assert got == ["only-cpu", "only-mem"]


def test_min_allocatable_is_configurable() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None, min_allocatable=({"cpus": 1, "mem": 512},)))
    a.add_agent("small", R.of(cpus=2, mem=256))
    a.add_agent("big", R.of(cpus=2, mem=1024))
    a.add_framework("f", ["r"])
    assert [o.agent_id for o in a.allocate(0.0)] == ["big"]


def test_leftover_below_min_allocatable_is_not_offered() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    assert a.accept("f", [o.offer_id], [Launch(R.of(cpus=4, mem=8192 - 16))], 0.0, refuse_seconds=0).ok
    assert a.available("a0") == RoleResources({"*": R.of(mem=16)})
    assert a.allocate(1.0) == []


def test_gpu_agents_only_for_gpu_frameworks() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("gpu", R.of(cpus=4, mem=4096, gpus=1))
    a.add_agent("plain", R.of(cpus=4, mem=4096))
    a.add_framework("f", ["r"])
    assert [o.agent_id for o in a.allocate(0.0)] == ["plain"]
    a.add_framework("g", ["s"], capabilities=[GPU_CAPABILITY])
    assert [(o.agent_id, o.framework_id) for o in a.allocate(1.0)] == [("gpu", "g")]


def test_agent_removal_rescinds_its_offers_and_drops_filters() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    offers = a.allocate(0.0)
    gone = a.remove_agent("a0")
    assert [o.agent_id for o in gone] == ["a0"]
    assert [o.agent_id for o in a.offers()] == ["a1"]
    a.check_invariants()


def test_deactivated_agent_not_offered() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    a.deactivate_agent("a0")
    assert [o.agent_id for o in a.allocate(0.0)] == ["a1"]
    a.activate_agent("a0")
    assert [o.agent_id for o in a.allocate(1.0)] == ["a0"]


def test_allocate_only_some_agents() -> None:
    a = new(3)
    a.add_framework("f", ["r"])
    assert [o.agent_id for o in a.allocate(0.0, agent_ids=["a2", "nope"])] == ["a2"]
    assert sorted(o.agent_id for o in a.allocate(0.0)) == ["a0", "a1"]


def test_remove_framework_returns_everything() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    offers = a.allocate(0.0)
    assert a.accept("f", [offers[0].offer_id], [Launch(R.of(cpus=1, mem=1))], 0.0).ok
    gone = a.remove_framework("f")
    assert [o.offer_id for o in gone] == [offers[1].offer_id]
    assert a.role_share("r") == 0.0
    for x in a.agent_ids():
        assert a.available(x) == a.total(x)
    a.check_invariants()


def test_update_framework_roles_rescinds_offers_of_left_roles() -> None:
    a = new(2)
    a.add_framework("f", ["r1", "r2"])
    offers = a.allocate(0.0)
    assert len(offers) == 2
    gone = a.update_framework("f", roles=["r1"])
    assert all(o.role == "r2" for o in gone)
    assert {o.role for o in a.allocate(1.0)} <= {"r1"}
    a.check_invariants()


def test_offer_ids_are_unique_and_prefixed() -> None:
    a = Allocator(AllocatorConfig(offer_id_prefix="term7"))
    for i in range(5):
        a.add_agent(f"a{i}", R.of(cpus=1, mem=64))
    a.add_framework("f", ["r"])
    ids = [o.offer_id for o in a.allocate(0.0)]
    assert len(set(ids)) == 5 and all(i.startswith("term7-O") for i in ids)
