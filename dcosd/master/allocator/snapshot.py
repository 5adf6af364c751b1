"""A committed-state snapshot of what the allocator needs, and allocation over it.

The leader builds an ``Allocator`` from a ``ClusterSnapshot`` of the replicated
state when it takes office (``Allocator.from_snapshot``), then keeps it current
with events. Offers and filters live only in the leader's memory (as in
Mesos): after a failover there are no outstanding offers, and frameworks get
fresh ones.

``allocate(snapshot, now)`` is the one-shot pure function: a fresh allocator
over the snapshot, one cycle, the offers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from dcosd.model.resources import Resources

from .roles import RoleResources, pools_flat
from .types import AllocatorConfig, Offer

if TYPE_CHECKING:  # pragma: no cover
    from .allocator import Allocator


@dataclass(frozen=True)
class Allocation:
    """Resources held by running tasks of a framework in one of its roles."""

    framework_id: str
    role: str
    resources: RoleResources


@dataclass(frozen=True)
class AgentSnapshot:
    agent_id: str
    resources: RoleResources  # as reported: "*" plus static reservations by role
    hostname: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    dynamic: RoleResources = field(default_factory=RoleResources)  # committed dynamic reservations
    allocations: tuple[Allocation, ...] = ()
    active: bool = True


@dataclass(frozen=True)
class FrameworkSnapshot:
    framework_id: str
    roles: tuple[str, ...] = ("*",)
    active: bool = True
    suppressed_roles: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class FilterSnapshot:
    framework_id: str
    agent_id: str
    expires_at: float
    resources: Resources


@dataclass(frozen=True)
class ClusterSnapshot:
    agents: tuple[AgentSnapshot, ...] = ()
    frameworks: tuple[FrameworkSnapshot, ...] = ()
    weights: Mapping[str, float] = field(default_factory=dict)
    quotas: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    filters: tuple[FilterSnapshot, ...] = ()


def load(alloc: "Allocator", snap: ClusterSnapshot) -> None:
    for role, w in snap.weights.items():
        alloc.set_weight(role, w)
    for role, q in snap.quotas.items():
        alloc.set_quota(role, q)
    for f in snap.frameworks:
        alloc.add_framework(f.framework_id, f.roles, capabilities=f.capabilities, active=f.active,
                            suppressed_roles=f.suppressed_roles)
    for a in snap.agents:
        alloc.add_agent(a.agent_id, a.resources, hostname=a.hostname, attributes=a.attributes,
                        dynamic=a.dynamic, active=a.active,
                        used=[(x.framework_id, x.role, x.resources) for x in a.allocations])
    for flt in snap.filters:
        bag_pools = RoleResources.unreserved(flt.resources).to_pools()
        ports = flt.resources.ports
        alloc._filters.setdefault(flt.framework_id, {}).setdefault(flt.agent_id, []).append(
            (flt.expires_at, pools_flat(bag_pools), ports))


def dump(alloc: "Allocator") -> ClusterSnapshot:
    """The allocator's committed view; outstanding offers count as available."""
    from .roles import UNRESERVED, pools_add, pools_copy

    agents = []
    for a in alloc._agents.values():
        static = RoleResources.from_pools(a.static)
        total = pools_copy(a.total)
        dyn = {}
        for role, bag in total.items():
            if role == UNRESERVED:
                continue
            d = alloc._dynamic_of(a, role)
            if not d.empty():
                dyn[role] = d
        unres = {}
        pools_add(unres, {r: b for r, b in total.items() if r == UNRESERVED})
        for b in dyn.values():
            pools_add(unres, {UNRESERVED: b})
        agents.append(AgentSnapshot(
            agent_id=a.agent_id,
            resources=static + RoleResources.from_pools(unres),
            hostname=a.hostname,
            attributes=dict(a.attributes),
            dynamic=RoleResources.from_pools(dyn),
            allocations=tuple(Allocation(fid, role, RoleResources.from_pools(p))
                              for (fid, role), p in a.used.items()),
            active=a.active,
        ))
    frameworks = tuple(
        FrameworkSnapshot(f.framework_id, f.roles, f.active, tuple(sorted(f.suppressed)),
                          tuple(sorted(f.capabilities)))
        for f in alloc._frameworks.values())
    filters = tuple(
        FilterSnapshot(fid, aid, exp, Resources.of(ports, **{k: v / 1000 for k, v in s.items()}))
        for fid, ff in alloc._filters.items() for aid, lst in ff.items() for exp, s, ports in lst)
    return ClusterSnapshot(tuple(agents), frameworks, alloc.weights(), alloc.quotas(), filters)


def allocate(snapshot: ClusterSnapshot, now: float, config: AllocatorConfig | None = None) -> list[Offer]:
    """One pure allocation cycle over a snapshot."""
    from .allocator import Allocator

    return Allocator.from_snapshot(snapshot, config).allocate(now)
