"""DRF ordering: the sorter, roles before frameworks, weights, and convergence to weighted shares."""

from __future__ import annotations

import random

import pytest

from dcosd.master.allocator import Allocator, AllocatorConfig, AllocatorError, Launch
from dcosd.master.allocator.sorter import Sorter
from dcosd.model.resources import Resources as R


def agent_res(cpus: float = 8, mem: float = 16384) -> R:
    return R.of(cpus=cpus, mem=mem, disk=10000)


def cluster(n: int = 4, **kw: float) -> Allocator:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    for i in range(n):
        a.add_agent(f"a{i}", agent_res(**kw))
    return a


# -- the sorter ------------------------------------------------------------------------


def test_sorter_orders_by_dominant_share_then_count_then_name() -> None:
    total = {"cpus": 10_000, "mem": 100_000}
    s = Sorter(total)
    for n in ("c", "b", "a"):
        s.add(n)
    assert s.names() == ["a", "b", "c"]
    s.allocated("a", {"cpus": 1000})  # 10% cpus
    s.allocated("b", {"mem": 5000})  # 5% mem
    assert s.names() == ["c", "b", "a"]
    assert s.share("a") == pytest.approx(0.1)
    s.allocated("c", {"cpus": 500, "mem": 5000})  # 5% both: ties b on share, more allocations? equal count
    # b and c both 5%; both allocated once -> name decides
    assert s.names() == ["b", "c", "a"]
    s.allocated("b", {})  # a second (empty) allocation: b now has the higher count
    assert s.names() == ["c", "b", "a"]


def test_sorter_weights_divide_the_share() -> None:
    total = {"cpus": 10_000}
    s = Sorter(total)
    s.add("light")
    s.add("heavy", weight=3.0)
    s.allocated("light", {"cpus": 1000})
    s.allocated("heavy", {"cpus": 2500})  # 25% / 3 < 10%
    assert s.names() == ["heavy", "light"]
    s.set_weight("heavy", 1.0)
    assert s.names() == ["light", "heavy"]


def test_sorter_recomputes_when_total_changes() -> None:
    total = {"cpus": 10_000, "mem": 10_000}
    s = Sorter(total)
    s.add("x")
    s.add("y")
    s.allocated("x", {"cpus": 2000})
    s.allocated("y", {"mem": 3000})
    assert s.names() == ["x", "y"]
    total["mem"] = 100_000  # y's mem share drops to 3%
    s.invalidate()
    assert s.names() == ["y", "x"]


def test_sorter_excluded_resources_do_not_count() -> None:
    total = {"cpus": 10_000, "gpus": 1000}
    s = Sorter(total, frozenset({"gpus"}))
    s.add("g")
    s.add("c")
    s.allocated("g", {"gpus": 1000, "cpus": 100})
    s.allocated("c", {"cpus": 1000})
    assert s.names() == ["g", "c"]


def test_sorter_unallocate_below_zero_is_a_bug() -> None:
    s = Sorter({"cpus": 1000})
    s.add("x")
    with pytest.raises(AssertionError):
        s.unallocated("x", {"cpus": 1})


# -- allocator order -------------------------------------------------------------------


def test_lowest_share_role_gets_the_next_agent() -> None:
    a = cluster(3)
    a.add_framework("f-web", ["web"])
    a.add_framework("f-batch", ["batch"])
    offers = a.allocate(0.0)
    # Agents are visited in order; roles alternate by share, ties broken by name.
    assert [(o.agent_id, o.framework_id) for o in offers] == [
        ("a0", "f-batch"), ("a1", "f-web"), ("a2", "f-batch")]
    assert a.role_share("batch") == pytest.approx(2 / 3)
    assert a.role_share("web") == pytest.approx(1 / 3)
    assert a.role_order() == ["web", "batch"]


def test_roles_first_then_frameworks_within_a_role() -> None:
    """A role with many frameworks does not get more than a role with one."""
    a = cluster(8)
    for i in range(3):
        a.add_framework(f"crowd{i}", ["crowd"])
    a.add_framework("solo", ["solo"])
    offers = a.allocate(0.0)
    by_role: dict[str, int] = {}
    by_fw: dict[str, int] = {}
    for o in offers:
        by_role[o.role] = by_role.get(o.role, 0) + 1
        by_fw[o.framework_id] = by_fw.get(o.framework_id, 0) + 1
    assert by_role == {"crowd": 4, "solo": 4}
    # Within "crowd", its 4 agents are spread by framework share: 2/1/1.
    assert sorted(by_fw[f"crowd{i}"] for i in range(3)) == [1, 1, 2]


def test_dominant_share_uses_the_scarcest_resource() -> None:
    a = Allocator(AllocatorConfig(shuffle_seed=None))
    a.add_agent("cpu-heavy", R.of(cpus=16, mem=1024))
    a.add_agent("mem-heavy", R.of(cpus=1, mem=65536))
    a.add_agent("small", R.of(cpus=1, mem=1024))
    a.add_framework("f1", ["r1"])
    a.add_framework("f2", ["r2"])
    offers = a.allocate(0.0)
    got = {o.agent_id: o.role for o in offers}
    # r1 takes cpu-heavy (dominant: 16/18 cpus = 0.89); r2 takes mem-heavy (dominant:
    # 65536/67584 mem = 0.97); small then goes to the lower dominant share, r1.
    assert got == {"cpu-heavy": "r1", "mem-heavy": "r2", "small": "r1"}


def test_weights_give_proportional_agents_in_one_cycle() -> None:
    a = cluster(40)
    a.add_framework("light", ["light"])
    a.add_framework("heavy", ["heavy"])
    a.set_weight("heavy", 3)
    offers = a.allocate(0.0)
    count = sum(1 for o in offers if o.role == "heavy")
    assert count == 30


def test_weight_must_be_positive() -> None:
    a = cluster(1)
    for bad in (0, -1, float("nan")):
        with pytest.raises(AllocatorError):
            a.set_weight("r", bad)
    with pytest.raises(AllocatorError):
        a.set_weight("*", 2)


def test_offered_resources_count_toward_share() -> None:
    a = cluster(2)
    a.add_framework("f1", ["r1"])
    [o] = a.allocate(0.0, agent_ids=["a0"])
    assert a.role_share("r1") == pytest.approx(0.5)
    a.decline("f1", [o.offer_id], 0.0, refuse_seconds=0)
    assert a.role_share("r1") == 0.0


def _run_saturation(weights: tuple[float, float], seconds: int = 300, seed: int = 7) -> tuple[float, float]:
    """Two frameworks, each in its own weighted role, accept everything with small tasks."""
    rng = random.Random(seed)
    a = Allocator(AllocatorConfig(shuffle_seed=seed))
    for i in range(60):
        a.add_agent(f"a{i}", R.of(cpus=8, mem=16384, disk=20000))
    roles = {"fa": "ra", "fb": "rb"}
    a.add_framework("fa", ["ra"])
    a.add_framework("fb", ["rb"])
    a.set_weight("ra", weights[0])
    a.set_weight("rb", weights[1])
    task = R.of(cpus=0.5, mem=1024)
    running: list[tuple[float, str, str, object]] = []  # (ends_at, agent, framework, drawn)
    samples: list[tuple[float, float]] = []
    for t in range(seconds):
        now = float(t)
        still = []
        for ends, agent_id, fid, drawn in running:
            if ends <= now:
                a.recover(agent_id, fid, roles[fid], drawn)  # type: ignore[arg-type]
            else:
                still.append((ends, agent_id, fid, drawn))
        running = still
        for o in a.allocate(now):
            sc = o.scalars()
            n = int(min(sc.get("cpus", 0) // 0.5, sc.get("mem", 0) // 1024))
            res = a.accept(o.framework_id, [o.offer_id], [Launch(task)] * n, now)
            assert res.ok, res
            for _, drawn in res.launched:
                running.append((now + rng.uniform(5, 60), o.agent_id, o.framework_id, drawn))
        if t >= seconds // 2:
            samples.append((a.role_share("ra"), a.role_share("rb")))
    a.check_invariants()
    sa = sum(s[0] for s in samples) / len(samples)
    sb = sum(s[1] for s in samples) / len(samples)
    return sa, sb


def test_weighted_frameworks_converge_to_1_to_3() -> None:
    sa, sb = _run_saturation((1.0, 3.0))
    assert sa + sb > 0.95  # the cluster is saturated
    assert sb / sa == pytest.approx(3.0, rel=0.05)


def test_equal_weights_converge_to_equal_shares() -> None:
    sa, sb = _run_saturation((1.0, 1.0), seconds=200)
    assert sb / sa == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weighted_convergence_does_not_depend_on_the_seed(seed: int) -> None:
    sa, sb = _run_saturation((1.0, 3.0), seconds=200, seed=seed)
    assert sb / sa == pytest.approx(3.0, rel=0.05)
