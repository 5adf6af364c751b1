"""Property checks over seeded random scenarios.

Every step of a random mix of events (agents and frameworks coming and going,
reservations, quotas, weights, offers accepted, declined, rescinded, tasks
ending) must keep the books exact:

- per agent and reservation role: available + offered + used == total, nothing negative;
- the same resources (scalars or ports) are never in two places at once;
- offers only go to active, unsuppressed frameworks, for their roles, carrying only
  unreserved resources and the role's own reservations, never covered by a live filter;
- an allocation cycle never takes a role past its quota limit;
- a snapshot round-trips.
"""

from __future__ import annotations

import copy
import random

import pytest

from dcosd.master.allocator import (
    GPU_CAPABILITY, UNRESERVED, Allocator, AllocatorConfig, AllocatorError, Launch, Reserve,
    RoleResources, Unreserve,
)
from dcosd.master.allocator.roles import pools_flat, ranges_contain
from dcosd.model.resources import Resources as R

ROLES = ["web", "batch", "db", "ml"]


def random_agent_resources(rng: random.Random) -> RoleResources:
    lo = 31000 + rng.randrange(0, 100) * 10
    m = {"*": R.of([(lo, lo + rng.randrange(1, 20))], cpus=rng.choice([1, 2, 4, 8, 0.5]),
                   mem=rng.choice([512, 2048, 8192]), disk=rng.choice([0, 1000]),
                   gpus=rng.choice([0, 0, 0, 1]))}
    if rng.random() < 0.3:
        m[rng.choice(ROLES)] = R.of(cpus=rng.choice([0.5, 1, 2]), mem=rng.choice([256, 1024]))
    return RoleResources(m)


def random_launch(rng: random.Random, offer) -> list:  # type: ignore[no-untyped-def]
    """Operations that fit the offer most of the time and overcommit sometimes."""
    sc = offer.scalars()
    ops: list = []
    ports = list(offer.ports())
    for _ in range(rng.randrange(0, 4)):
        cpus = round(rng.uniform(0, sc.get("cpus", 0) * (0.7 if rng.random() < 0.9 else 2)), 3)
        mem = round(rng.uniform(0, sc.get("mem", 0) * 0.5), 3)
        want_ports = []
        if ports and rng.random() < 0.5:
            lo, hi = ports.pop(0)
            want_ports = [(lo, lo)]
            if lo < hi:
                ports.insert(0, (lo + 1, hi))
        ops.append(Launch(R.of(want_ports, cpus=cpus, mem=mem)))
    r = rng.random()
    if r < 0.1 and offer.role != "*":
        ops.insert(0, Reserve(R.of(cpus=round(sc.get("cpus", 0) / 4, 3))))
    elif r < 0.15 and offer.role != "*":
        ops.append(Unreserve(R.of(cpus=0.5)))
    return ops


def check_offers(a: Allocator, offers, filters_before, now: float) -> None:  # type: ignore[no-untyped-def]
    for o in offers:
        fw = a._frameworks[o.framework_id]
        assert fw.active and o.role in fw.roles and o.role not in fw.suppressed
        assert a._agents[o.agent_id].active
        assert set(o.resources) <= {UNRESERVED, o.role}
        if a._agents[o.agent_id].has_gpus:
            assert GPU_CAPABILITY in fw.capabilities
        flat = pools_flat(o._pools)
        ports = o.resources.flatten().ports
        for exp, fs, fp in filters_before.get(o.framework_id, {}).get(o.agent_id, []):
            if exp > now:
                covered = all(fs.get(k, 0) >= v for k, v in flat.items()) and ranges_contain(fp, ports)
                assert not covered, f"{o} offered through a live filter"


@pytest.mark.parametrize("seed", range(12))
def test_random_scenarios_keep_the_books(seed: int) -> None:
    rng = random.Random(seed)
    a = Allocator(AllocatorConfig(shuffle_seed=seed, offer_timeout=rng.choice([None, 3.0, 10.0])))
    tasks: list[tuple[str, str, str, RoleResources]] = []
    agents = 0
    fws = 0
    now = 0.0
    for step in range(300):
        now += rng.choice([0.0, 0.5, 1.0, 3.0])
        ev = rng.random()
        if ev < 0.08 or agents < 3:
            agents += 1
            a.add_agent(f"a{agents}", random_agent_resources(rng), attributes={"rack": str(agents % 3)})
        elif ev < 0.11 and a.agent_ids():
            victim = rng.choice(a.agent_ids())
            a.remove_agent(victim)
            tasks = [t for t in tasks if t[0] != victim]
        elif ev < 0.16 or fws < 2:
            fws += 1
            roles = rng.sample(ROLES, rng.choice([1, 1, 2]))
            caps = [GPU_CAPABILITY] if rng.random() < 0.3 else []
            a.add_framework(f"f{fws}", roles, capabilities=caps)
        elif ev < 0.18 and len(a.framework_ids()) > 1:
            victim = rng.choice(a.framework_ids())
            a.remove_framework(victim)
            tasks = [t for t in tasks if t[1] != victim]
        elif ev < 0.21:
            a.set_weight(rng.choice(ROLES), rng.choice([0.5, 1, 2, 5]))
        elif ev < 0.24:
            a.set_quota(rng.choice(ROLES), rng.choice([None, {"cpus": rng.choice([1, 4, 16])},
                                                       {"mem": 4096, "cpus": 8}]))
        elif ev < 0.28 and a.framework_ids():
            fid = rng.choice(a.framework_ids())
            rng.choice([a.suppress, a.revive])(fid)
        elif ev < 0.30 and a.framework_ids():
            fid = rng.choice(a.framework_ids())
            if rng.random() < 0.5:
                a.deactivate_framework(fid)
            else:
                a.activate_framework(fid)
        elif ev < 0.32 and a.agent_ids():
            aid = rng.choice(a.agent_ids())
            try:
                if rng.random() < 0.5:
                    a.reserve(aid, rng.choice(ROLES), R.of(cpus=0.5))
                else:
                    a.unreserve(aid, rng.choice(ROLES), R.of(cpus=0.5))
            except AllocatorError:
                pass
        elif ev < 0.45 and tasks:
            t = tasks.pop(rng.randrange(len(tasks)))
            a.recover(t[0], t[1], t[2], t[3])
        elif ev < 0.5:
            a.rescind_expired(now)
        else:
            filters_before = copy.deepcopy(a._filters)
            cons_before = {r: a.consumption(r) for r in ROLES}
            offers = a.allocate(now)
            check_offers(a, offers, filters_before, now)
            for role, limits in a.quotas().items():
                after = a.consumption(role)
                for k, lim in limits.items():
                    assert after.get(k, 0) <= max(lim, cons_before[role].get(k, 0)) + 1e-9
            a.check_invariants()
            for o in offers:
                choice = rng.random()
                if choice < 0.6:
                    res = a.accept(o.framework_id, [o.offer_id], random_launch(rng, o), now,
                                   refuse_seconds=rng.choice([None, 0, 2, 30]))
                    for role, drawn in res.launched:
                        tasks.append((o.agent_id, o.framework_id, role, drawn))
                elif choice < 0.8:
                    a.decline(o.framework_id, [o.offer_id], now, refuse_seconds=rng.choice([None, 0, 1, 30]))
                elif choice < 0.85:
                    bogus = [o.offer_id, "bogus"] if rng.random() < 0.5 else [o.offer_id, o.offer_id]
                    assert not a.accept(o.framework_id, bogus, [], now).ok
                # else: leave it outstanding (timeouts rescind it later)
        a.check_invariants()

    snap = a.snapshot()
    b = Allocator.from_snapshot(snap)
    b.check_invariants()
    for aid in a.agent_ids():
        assert b.total(aid) == a.total(aid)
        assert b.used(aid) == a.used(aid)
    # Every held resource can be given back, and then everything is available.
    for o in a.offers():
        a.rescind(o.offer_id)
    for fid in a.framework_ids():
        a.remove_framework(fid)
    for aid in a.agent_ids():
        assert a.available(aid) == a.total(aid)
    a.check_invariants()


def test_random_scenario_is_deterministic() -> None:
    def run() -> list[tuple[str, str, str]]:
        rng = random.Random(99)
        a = Allocator(AllocatorConfig(shuffle_seed=5))
        for i in range(30):
            a.add_agent(f"a{i}", random_agent_resources(rng))
        for i in range(6):
            a.add_framework(f"f{i}", [ROLES[i % 4]], capabilities=[GPU_CAPABILITY])
        out = []
        for t in range(20):
            for o in a.allocate(float(t)):
                out.append((o.offer_id, o.framework_id, o.agent_id))
                a.decline(o.framework_id, [o.offer_id], float(t), refuse_seconds=rng.choice([0, 3]))
        return out

    assert run() == run()
