"""Snapshots (leader takeover), agent re-registration, and the role-keyed resource type."""

from __future__ import annotations

import pytest

from dcosd.master.allocator import (
    AgentSnapshot, Allocation, Allocator, AllocatorConfig, AllocatorError, ClusterSnapshot,
    FilterSnapshot, FrameworkSnapshot, Launch, RoleResources, allocate,
)
from dcosd.master.allocator.roles import Bag, ranges_contain, ranges_intersect, ranges_norm, ranges_sub
from dcosd.model.resources import Resources as R


def snapshot() -> ClusterSnapshot:
    return ClusterSnapshot(
        agents=(
            AgentSnapshot("a0", RoleResources({"*": R.of(cpus=4, mem=4096), "web": R.of(cpus=1, mem=512)}),
                          hostname="n0", attributes={"rack": "r1"},
                          allocations=(Allocation("f-web", "web", RoleResources({"web": R.of(cpus=1, mem=512)})),)),
            AgentSnapshot("a1", RoleResources.unreserved(R.of(cpus=4, mem=4096)),
                          dynamic=RoleResources({"db": R.of(cpus=2, mem=1024)})),
            AgentSnapshot("a2", RoleResources.unreserved(R.of(cpus=4, mem=4096)), active=False),
        ),
        frameworks=(FrameworkSnapshot("f-web", ("web",)), FrameworkSnapshot("f-db", ("db",))),
        weights={"web": 2.0},
        quotas={"db": {"cpus": 100}},
        filters=(FilterSnapshot("f-db", "a0", 10.0, R.of(cpus=4, mem=4096)),),
    )


def test_allocate_over_a_snapshot_is_pure() -> None:
    snap = snapshot()
    first = allocate(snap, 0.0, AllocatorConfig(shuffle_seed=None))
    second = allocate(snap, 0.0, AllocatorConfig(shuffle_seed=None))
    assert [(o.framework_id, o.agent_id, o.resources) for o in first] == \
           [(o.framework_id, o.agent_id, o.resources) for o in second]
    got = {o.agent_id: o for o in first}
    assert "a2" not in got  # inactive agent
    # f-db is filtered on a0 until 10 s; a1 carries db's dynamic reservation.
    assert got["a0"].framework_id == "f-web"
    assert got["a1"].framework_id == "f-db"
    assert got["a1"].resources == RoleResources({"*": R.of(cpus=2, mem=3072), "db": R.of(cpus=2, mem=1024)})


def test_snapshot_round_trip() -> None:
    a = Allocator.from_snapshot(snapshot())
    a.check_invariants()
    assert a.used("a0") == {("f-web", "web"): RoleResources({"web": R.of(cpus=1, mem=512)})}
    assert a.weights() == {"web": 2.0}
    b = Allocator.from_snapshot(a.snapshot())
    b.check_invariants()
    for aid in a.agent_ids():
        assert b.total(aid) == a.total(aid) and b.used(aid) == a.used(aid)
    assert b.snapshot() == a.snapshot()


def test_tasks_of_a_framework_not_yet_resubscribed() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("a0", R.of(cpus=4, mem=4096), used=[("ghost", "r", RoleResources.unreserved(R.of(cpus=1)))])
    assert a.role_share("r") == pytest.approx(0.25)
    a.add_agent("a1", R.of(cpus=4, mem=4096))
    assert a.allocate(0.0) == []  # ghost is inactive
    a.add_framework("ghost", ["r"])
    assert len(a.allocate(0.0)) == 2
    a.check_invariants()


def test_agent_used_beyond_total_is_refused() -> None:
    a = Allocator()
    with pytest.raises(AllocatorError):
        a.add_agent("a0", R.of(cpus=1), used=[("f", "r", RoleResources.unreserved(R.of(cpus=2)))])
    assert a.agent_ids() == []
    a.add_agent("a0", R.of(cpus=1))
    with pytest.raises(AllocatorError):
        a.add_agent("a0", R.of(cpus=1))


def test_update_agent_keeps_tasks_and_reservations_and_rescinds_offers() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("a0", R.of(cpus=4, mem=4096), dynamic=RoleResources({"db": R.of(cpus=1)}))
    a.add_framework("f", ["db"])
    [o] = a.allocate(0.0)
    res = a.accept("f", [o.offer_id], [Launch(R.of(cpus=2, mem=1024))], 0.0, refuse_seconds=0)
    assert res.ok
    [o2] = a.allocate(1.0)
    gone = a.update_agent("a0", R.of(cpus=8, mem=8192), attributes={"rack": "r9"})
    assert gone == [o2]
    assert a.total("a0") == RoleResources({"*": R.of(cpus=7, mem=8192), "db": R.of(cpus=1)})
    assert a.used("a0") == {("f", "db"): res.launched[0][1]}
    a.check_invariants()
    # Shrinking below what tasks use is refused, and nothing changes.
    before = a.total("a0")
    with pytest.raises(AllocatorError):
        a.update_agent("a0", R.of(cpus=1, mem=8192))
    assert a.total("a0") == before
    a.check_invariants()


# -- RoleResources and the internal form ---------------------------------------------


def test_role_resources_arithmetic() -> None:
    x = RoleResources({"*": R.of(cpus=1, mem=10), "web": R.of(cpus=2)})
    y = RoleResources({"web": R.of(cpus=1), "db": R.of(mem=5)})
    assert (x + y) == RoleResources({"*": R.of(cpus=1, mem=10), "web": R.of(cpus=3), "db": R.of(mem=5)})
    assert (x + y - y) == x
    assert x.flatten() == R.of(cpus=3, mem=10)
    assert x.contains(RoleResources({"web": R.of(cpus=2)}))
    assert not x.contains(RoleResources({"db": R.of(cpus=0.001)}))
    assert RoleResources({"*": R.of()}).is_empty()
    assert RoleResources.from_dict(x.to_dict()) == x
    assert RoleResources.from_pools(x.to_pools()) == x
    assert hash(x) == hash(RoleResources(dict(x)))
    with pytest.raises(ValueError):
        RoleResources({"": R.of(cpus=1)})
    with pytest.raises(TypeError):
        RoleResources({"*": {"cpus": 1}})  # type: ignore[dict-item]


def test_bag_is_exact_in_thousandths() -> None:
    b = Bag.of(R.of(cpus=0.1))
    for _ in range(1000):
        b.add(Bag.of(R.of(cpus=0.001)))
    for _ in range(1000):
        b.sub(Bag.of(R.of(cpus=0.001)))
    assert b.s == {"cpus": 100}
    assert b.to_resources() == R.of(cpus=0.1)
    with pytest.raises(AssertionError):
        b.sub(Bag.of(R.of(cpus=1)))


def test_range_helpers() -> None:
    assert ranges_norm([(5, 6), (1, 2), (3, 4), (10, 10)]) == ((1, 6), (10, 10))
    assert ranges_sub(((1, 10),), ((3, 4), (10, 10))) == ((1, 2), (5, 9))
    assert ranges_contain(((1, 5), (8, 9)), ((2, 3), (8, 8)))
    assert not ranges_contain(((1, 5),), ((5, 6),))
    assert ranges_intersect(((1, 5), (8, 12)), ((4, 9),)) == ((4, 5), (8, 9))
