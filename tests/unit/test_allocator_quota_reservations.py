"""Quota limits, static and dynamic reservations."""

from __future__ import annotations

import pytest

from dcosd.master.allocator import (
    AcceptError, Allocator, AllocatorConfig, AllocatorError, Launch, Reserve, RoleResources, Unreserve,
)
from dcosd.model.resources import Resources as R


def new(n: int = 0, **res: float) -> Allocator:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    for i in range(n):
        a.add_agent(f"a{i}", R.of(**(res or {"cpus": 4, "mem": 8192})))
    return a


def accept_all(a: Allocator, offers: list, now: float, task: R = R.of(cpus=1, mem=1024)) -> int:
    placed = 0
    for o in offers:
        sc = o.scalars()
        n = int(min(sc.get("cpus", 0) // task.get("cpus"), sc.get("mem", 0) // task.get("mem")))
        res = a.accept(o.framework_id, [o.offer_id], [Launch(task)] * n, now, refuse_seconds=0)
        assert res.ok, res
        placed += n
    return placed


# -- quota -----------------------------------------------------------------------------


def test_role_at_quota_gets_no_more_offers() -> None:
    a = new(10)
    a.add_framework("capped", ["capped"])
    a.add_framework("free", ["free"])
    a.set_quota("capped", {"cpus": 8})
    offers = a.allocate(0.0)
    assert sum(o.scalars()["cpus"] for o in offers if o.role == "capped") == 8
    accept_all(a, offers, 0.0)
    assert a.consumption("capped")["cpus"] == 8
    a.suppress("free")
    for t in range(1, 20):
        assert a.allocate(float(t)) == []  # 2 agents' worth left, capped is at its limit
    a.check_invariants()


def test_quota_cuts_the_offer_to_the_headroom() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    a.set_quota("r", {"cpus": 6, "mem": 100000})
    offers = a.allocate(0.0)
    assert sorted(o.scalars()["cpus"] for o in offers) == [2, 4]
    # The cut-off part stays available to others.
    assert sum(a.available(x).flatten().get("cpus") for x in a.agent_ids()) == 2
    a.add_framework("g", ["other"])
    [o] = a.allocate(1.0)
    assert o.framework_id == "g" and o.scalars()["cpus"] == 2
    a.check_invariants()


def test_quota_released_resources_open_headroom_again() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    a.set_quota("r", {"cpus": 4})
    [o] = a.allocate(0.0)
    res = a.accept("f", [o.offer_id], [Launch(R.of(cpus=4, mem=1024))], 0.0)
    assert res.ok
    assert a.allocate(10.0) == []
    role, drawn = res.launched[0]
    a.recover(o.agent_id, "f", role, drawn)
    assert len(a.allocate(11.0)) == 1


def test_quota_removal_and_validation() -> None:
    a = new(2)
    a.add_framework("f", ["r"])
    a.set_quota("r", {"cpus": 0})
    assert a.allocate(0.0) == []
    assert a.quotas() == {"r": {"cpus": 0.0}}
    a.set_quota("r", None)
    assert len(a.allocate(1.0)) == 2
    for bad in ({"cpus": -1}, {"ports": 3}, {"mem": "x"}, {"cpus": float("nan")}):
        with pytest.raises(AllocatorError):
            a.set_quota("r", bad)  # type: ignore[arg-type]


def test_reservations_count_toward_quota_consumption() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("a0", RoleResources({"*": R.of(cpus=4, mem=4096), "r": R.of(cpus=2, mem=1024)}))
    a.add_framework("f", ["r"])
    a.set_quota("r", {"cpus": 3})
    [o] = a.allocate(0.0)
    # Its 2 reserved cpus are its own; only 1 unreserved cpu fits under the limit of 3.
    assert o.resources.get_role("r").get("cpus") == 2
    assert o.resources.get_role("*").get("cpus") == 1
    assert a.consumption("r")["cpus"] == 3


# -- static reservations -----------------------------------------------------------------


def test_static_reservation_offered_only_to_its_role() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("a0", RoleResources({"web": R.of(cpus=4, mem=4096)}))
    a.add_framework("batch", ["batch"])
    assert a.allocate(0.0) == []
    a.add_framework("web", ["web"])
    [o] = a.allocate(1.0)
    assert o.framework_id == "web" and o.resources == RoleResources({"web": R.of(cpus=4, mem=4096)})


def test_agent_split_between_unreserved_and_reserved_roles() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("a0", RoleResources({"*": R.of(cpus=4, mem=4096), "web": R.of(cpus=2, mem=2048)}))
    a.add_framework("batch", ["batch"])
    a.add_framework("web", ["web"])
    offers = {o.framework_id: o for o in a.allocate(0.0)}
    # "batch" sorts first by name and takes the unreserved part; web still gets its reservation.
    assert offers["batch"].resources == RoleResources({"*": R.of(cpus=4, mem=4096)})
    assert offers["web"].resources == RoleResources({"web": R.of(cpus=2, mem=2048)})
    a.check_invariants()


def test_reserved_and_unreserved_combined_for_the_role() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("a0", RoleResources({"*": R.of(cpus=4, mem=4096), "web": R.of(cpus=2, mem=2048)}))
    a.add_framework("web", ["web"])
    [o] = a.allocate(0.0)
    assert o.scalars() == {"cpus": 6, "mem": 6144}
    # LAUNCH with plain resources draws from the reservation first.
    res = a.accept("web", [o.offer_id], [Launch(R.of(cpus=3, mem=1024))], 0.0)
    assert res.ok
    assert res.launched == (("web", RoleResources({"web": R.of(cpus=2, mem=1024), "*": R.of(cpus=1)})),)
    a.check_invariants()


def test_static_reservations_cannot_be_unreserved() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("a0", RoleResources({"web": R.of(cpus=2, mem=2048)}))
    a.add_framework("web", ["web"])
    [o] = a.allocate(0.0)
    res = a.accept("web", [o.offer_id], [Unreserve(R.of(cpus=1))], 0.0)
    assert res.error is AcceptError.INVALID_OPERATION
    with pytest.raises(AllocatorError):
        a.unreserve("a0", "web", R.of(cpus=1))
    a.check_invariants()


# -- dynamic reservations ----------------------------------------------------------------


def test_dynamic_reserve_through_accept_then_offered_only_to_role() -> None:
    a = new(1, cpus=4, mem=4096)
    a.add_framework("db", ["db"])
    a.add_framework("other", ["other"])
    offers = a.allocate(0.0)
    o = next(o for o in offers if o.framework_id == "db") if any(
        o.framework_id == "db" for o in offers) else None
    if o is None:  # "db" sorts first by name; keep the test independent of that
        a.decline(offers[0].framework_id, [offers[0].offer_id], 0.0, refuse_seconds=100)
        [o] = a.allocate(0.0)
    assert o.framework_id == "db"
    res = a.accept("db", [o.offer_id], [Reserve(R.of(cpus=2, mem=2048)),
                                         Launch(R.of(cpus=1, mem=512))], 0.0, refuse_seconds=0)
    assert res.ok, res
    assert res.reserved == (("db", R.of(cpus=2, mem=2048)),)
    assert res.launched == (("db", RoleResources({"db": R.of(cpus=1, mem=512)})),)
    assert a.total("a0") == RoleResources({"*": R.of(cpus=2, mem=2048), "db": R.of(cpus=2, mem=2048)})
    a.check_invariants()
    a.suppress("db")
    a.revive("other")
    [o2] = a.allocate(1.0)
    assert o2.framework_id == "other"
    assert o2.resources == RoleResources({"*": R.of(cpus=2, mem=2048)})
    a.decline("other", [o2.offer_id], 1.0, refuse_seconds=1000)
    a.revive("db")
    [o3] = a.allocate(2.0)
    assert o3.framework_id == "db"
    assert o3.resources.get_role("db") == R.of(cpus=1, mem=1536)
    # Unreserve what is not used by the task; it goes back to "*".
    res = a.accept("db", [o3.offer_id], [Unreserve(R.of(cpus=1, mem=1536))], 2.0, refuse_seconds=0)
    assert res.ok, res
    assert a.total("a0") == RoleResources({"*": R.of(cpus=3, mem=3584), "db": R.of(cpus=1, mem=512)})
    a.check_invariants()
    snap = a.snapshot()
    b = Allocator.from_snapshot(snap)
    assert b.total("a0") == a.total("a0")
    b.check_invariants()


def test_operator_reserve_and_unreserve() -> None:
    a = new(1, cpus=4, mem=4096)
    a.reserve("a0", "ops", R.of(cpus=1, mem=1024))
    assert a.available("a0") == RoleResources({"*": R.of(cpus=3, mem=3072), "ops": R.of(cpus=1, mem=1024)})
    with pytest.raises(AllocatorError):
        a.reserve("a0", "ops", R.of(cpus=10))
    with pytest.raises(AllocatorError):
        a.reserve("a0", "*", R.of(cpus=1))
    a.add_framework("x", ["x"])
    [o] = a.allocate(0.0)
    assert o.resources == RoleResources({"*": R.of(cpus=3, mem=3072)})
    # Offered resources cannot be reserved; rescind first.
    with pytest.raises(AllocatorError):
        a.reserve("a0", "ops", R.of(cpus=1))
    assert a.rescind_agent_offers("a0") == [o]
    a.reserve("a0", "ops", R.of(cpus=1))
    a.unreserve("a0", "ops", R.of(cpus=2, mem=1024))
    assert a.total("a0") == RoleResources({"*": R.of(cpus=4, mem=4096)})
    a.check_invariants()


def test_dynamic_reservation_on_snapshot_load() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("a0", R.of(cpus=4, mem=4096), dynamic=RoleResources({"db": R.of(cpus=1)}))
    assert a.total("a0") == RoleResources({"*": R.of(cpus=3, mem=4096), "db": R.of(cpus=1)})
    a.unreserve("a0", "db", R.of(cpus=1))
    with pytest.raises(AllocatorError):
        a.add_agent("a1", R.of(cpus=1), dynamic=RoleResources({"db": R.of(cpus=2)}))
