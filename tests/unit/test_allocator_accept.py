"""ACCEPT: valid launches, and every way an ACCEPT is refused (atomically)."""

from __future__ import annotations

import pytest

from dcosd.master.allocator import (
    AcceptError, Allocator, AllocatorConfig, AllocatorError, Launch, Reserve, RoleResources,
)
from dcosd.model.resources import Resources as R
from dcosd.model.states import Reason, TaskState


def new(n: int = 2) -> Allocator:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    for i in range(n):
        a.add_agent(f"a{i}", R.of([(31000, 31009)], cpus=4, mem=4096, disk=1000))
    return a


def offers_for(a: Allocator, fid: str, now: float = 0.0) -> list:
    return [o for o in a.allocate(now) if o.framework_id == fid]


def test_launch_several_tasks_in_one_accept() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    ops = [Launch(R.of([(31000, 31001)], cpus=1, mem=1024), task_id="t1"),
           Launch(R.of([(31005, 31005)], cpus=2, mem=1024), task_id="t2")]
    res = a.accept("f", [o.offer_id], ops, 0.0)
    assert res.ok and res.agent_id == "a0"
    assert [r.flatten() for _, r in res.launched] == [op.resources for op in ops]
    assert res.returned == RoleResources({"*": R.of([(31002, 31004), (31006, 31009)], cpus=1, mem=2048, disk=1000)})
    assert a.used("a0") == {("f", "r"): RoleResources({"*": R.of([(31000, 31001), (31005, 31005)], cpus=3, mem=2048)})}
    assert a.offers() == []
    a.check_invariants()


def test_accept_nothing_returns_everything_with_a_filter() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    res = a.accept("f", [o.offer_id], [], 0.0, refuse_seconds=10)
    assert res.ok and res.launched == ()
    assert a.allocate(9.0) == []
    assert len(a.allocate(10.0)) == 1


def test_accept_merges_offers_on_the_same_agent() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o1] = a.allocate(0.0)
    res = a.accept("f", [o1.offer_id], [Launch(R.of(cpus=2, mem=2048))], 0.0, refuse_seconds=0)
    role, drawn = res.launched[0]
    [o2] = a.allocate(1.0)
    a.recover("a0", "f", role, drawn)
    [o3] = a.allocate(2.0)
    assert o2.agent_id == o3.agent_id == "a0"
    res = a.accept("f", [o2.offer_id, o3.offer_id], [Launch(R.of(cpus=4, mem=4096))], 2.0)
    assert res.ok, res
    a.check_invariants()


@pytest.mark.parametrize("make_ids, error", [
    (lambda o, other: [], AcceptError.NO_OFFERS),
    (lambda o, other: ["no-such-offer"], AcceptError.UNKNOWN_OFFER),
    (lambda o, other: [o.offer_id, o.offer_id], AcceptError.DUPLICATE_OFFER),
    (lambda o, other: [o.offer_id, other.offer_id], AcceptError.MULTIPLE_AGENTS),
])
def test_invalid_offer_sets(make_ids, error) -> None:  # type: ignore[no-untyped-def]
    a = new(2)
    a.add_framework("f", ["r"])
    o, other = a.allocate(0.0)
    res = a.accept("f", make_ids(o, other), [Launch(R.of(cpus=1, mem=64))], 0.0)
    assert res.error is error and not res.ok and res.message
    assert res.error.task_state is TaskState.DROPPED
    assert res.error.task_reason is Reason.INVALID_OFFERS
    assert a.used("a0") == {} and a.used("a1") == {}
    a.check_invariants()


def test_refused_accept_uses_up_its_offers_without_filter() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    res = a.accept("f", [o.offer_id, "bogus"], [Launch(R.of(cpus=1))], 0.0)
    assert res.error is AcceptError.UNKNOWN_OFFER
    assert a.offers() == []
    # Back in the pool, unfiltered.
    assert len(a.allocate(0.0)) == 1


def test_accepting_a_rescinded_offer_is_reported_as_rescinded() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None, offer_timeout=5))
    a.add_agent("a0", R.of(cpus=1, mem=64))
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    a.rescind_expired(10.0)
    res = a.accept("f", [o.offer_id], [Launch(R.of(cpus=1))], 10.0)
    assert res.error is AcceptError.RESCINDED_OFFER


def test_accepting_twice_is_unknown_the_second_time() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    assert a.accept("f", [o.offer_id], [], 0.0).ok
    assert a.accept("f", [o.offer_id], [], 0.0).error is AcceptError.UNKNOWN_OFFER


def test_offer_of_another_framework_is_refused_and_left_alone() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    a.add_framework("g", ["s"])
    offers = {o.framework_id: o for o in a.allocate(0.0)}
    res = a.accept("g", [offers["f"].offer_id], [Launch(R.of(cpus=1))], 0.0)
    assert res.error is AcceptError.WRONG_FRAMEWORK
    assert offers["f"] in a.offers("f")  # still f's to answer
    assert a.accept("f", [offers["f"].offer_id], [], 0.0).ok


@pytest.mark.parametrize("ops", [
    [Launch(R.of(cpus=5))],
    [Launch(R.of(cpus=3, mem=64)), Launch(R.of(cpus=2, mem=64))],
    [Launch(R.of([(30000, 30000)], cpus=1))],
    [Launch(R.of([(31000, 31005)])), Launch(R.of([(31005, 31006)]))],
    [Launch(R.of(gpus=1))],
    [Reserve(R.of(cpus=5))],
    [Launch(RoleResources({"r": R.of(cpus=1)}))],
])
def test_over_committed(ops) -> None:  # type: ignore[no-untyped-def]
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    before = a.available("a0")
    res = a.accept("f", [o.offer_id], ops, 0.0)
    assert res.error is AcceptError.OVER_COMMITTED, res
    assert res.error.task_reason is Reason.INVALID_OFFERS
    # Nothing applied: everything is available again.
    assert a.available("a0") == a.total("a0") and before.is_empty()
    a.check_invariants()


def test_invalid_operations() -> None:
    a = new(1)
    a.add_framework("f", ["r1", "r2"])
    a.add_agent("a9", R.of(cpus=1, mem=64))
    offers = a.allocate(0.0)
    o = next(x for x in offers if x.agent_id == "a0")
    res = a.accept("f", [o.offer_id], [Launch(R.of(cpus=1), role="zzz")], 0.0)
    assert res.error is AcceptError.INVALID_OPERATION
    [o] = [x for x in a.allocate(0.0) if x.agent_id == "a0"]
    res = a.accept("f", [o.offer_id], [Launch(RoleResources({"other": R.of(cpus=1)}))], 0.0)
    assert res.error is AcceptError.INVALID_OPERATION
    [o] = [x for x in a.allocate(0.0) if x.agent_id == "a0"]
    res = a.accept("f", [o.offer_id], ["not an op"], 0.0)  # type: ignore[list-item]
    assert res.error is AcceptError.INVALID_OPERATION
    a.check_invariants()


def test_launch_role_must_be_named_when_offers_span_roles() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("a0", RoleResources({"r1": R.of(cpus=1, mem=64), "r2": R.of(cpus=1, mem=64)}))
    a.add_framework("f", ["r1", "r2"])
    offers = a.allocate(0.0)
    assert sorted(o.role for o in offers) == ["r1", "r2"]
    ids = [o.offer_id for o in offers]
    res = a.accept("f", ids, [Launch(R.of(cpus=1))], 0.0)
    assert res.error is AcceptError.INVALID_OPERATION
    offers = a.allocate(0.0)
    res = a.accept("f", [o.offer_id for o in offers],
                   [Launch(R.of(cpus=1), role="r1"), Launch(R.of(cpus=1), role="r2")], 0.0)
    assert res.ok, res
    assert res.launched == (("r1", RoleResources({"r1": R.of(cpus=1)})), ("r2", RoleResources({"r2": R.of(cpus=1)})))
    a.check_invariants()


def test_recover_validates() -> None:
    a = new(1)
    a.add_framework("f", ["r"])
    [o] = a.allocate(0.0)
    res = a.accept("f", [o.offer_id], [Launch(R.of(cpus=1, mem=64))], 0.0)
    role, drawn = res.launched[0]
    with pytest.raises(AllocatorError):
        a.recover("a0", "f", role, drawn + RoleResources.unreserved(R.of(cpus=1)))
    with pytest.raises(AllocatorError):
        a.recover("a0", "g", role, drawn)
    with pytest.raises(AllocatorError):
        a.recover("nope", "f", role, drawn)
    a.recover("a0", "f", role, drawn)
    assert a.used("a0") == {}
    a.check_invariants()
