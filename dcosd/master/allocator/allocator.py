"""The hierarchical weighted-DRF allocator: state, events, and the allocation cycle.

Pure: no I/O, no clock. Every method that depends on time takes ``now``
(seconds, any epoch, non-decreasing). The master's leader loop feeds events in
(agent added, task ended, framework subscribed, ACCEPT/DECLINE/REVIVE...) and
calls ``allocate(now)`` every interval and promptly after a release or revive.

Accounting, per agent and per reservation role ("*" = unreserved):

    total == available + sum(outstanding offers) + sum(used by launched tasks)

Offered resources count as allocated for DRF (as in Mesos), so an offer that
is never answered still weighs on its framework's share until it is answered
or rescinded.
"""

from __future__ import annotations

import random
from typing import Iterable, Mapping

from dcosd.model.resources import Resources

from .accept import apply_accept
from .audit import check_invariants
from .roles import (
    UNRESERVED, Bag, Pools, RoleResources, pools_add, pools_contain, pools_copy, pools_flat,
    pools_sub, ranges_contain, ranges_norm, to_milli,
)
from .snapshot import ClusterSnapshot, dump as snapshot_dump, load as snapshot_load
from .sorter import Sorter
from .types import (
    GPU_CAPABILITY, AcceptResult, AllocatorConfig, AllocatorError, Offer, Operation,
    refuse_seconds_or_default,
)

_GONE_MEMORY = 10_000  # rescinded offer ids remembered, to tell "rescinded" from "unknown"

Filter = tuple[float, dict[str, int], tuple]  # (expires_at, refused scalars, refused ports)


def _add_to(d: dict[str, int], s: Mapping[str, int]) -> None:
    for k, v in s.items():
        d[k] = d.get(k, 0) + v


def _sub_from(d: dict[str, int], s: Mapping[str, int]) -> None:
    for k, v in s.items():
        left = d.get(k, 0) - v
        if left < 0:
            raise AssertionError(f"{k} would go negative")
        if left:
            d[k] = left
        else:
            d.pop(k, None)


class _Agent:
    __slots__ = ("agent_id", "hostname", "attributes", "active", "total", "static", "avail",
                 "used", "offers", "has_gpus", "flat_total")

    def __init__(self, agent_id: str, hostname: str, attributes: Mapping[str, str]) -> None:
        self.agent_id = agent_id
        self.hostname = hostname
        self.attributes = dict(attributes)
        self.active = True
        self.total: Pools = {}
        self.static: Pools = {}  # static reservations (cannot be UNRESERVEd)
        self.avail: Pools = {}
        self.used: dict[tuple[str, str], Pools] = {}  # (framework, allocation role) -> pools
        self.offers: dict[str, Offer] = {}
        self.has_gpus = False
        self.flat_total: dict[str, int] = {}


class _Framework:
    __slots__ = ("framework_id", "roles", "active", "suppressed", "capabilities", "offers")

    def __init__(self, framework_id: str, roles: Iterable[str], capabilities: Iterable[str]) -> None:
        self.framework_id = framework_id
        self.roles: tuple[str, ...] = tuple(dict.fromkeys(roles))
        self.active = True
        self.suppressed: set[str] = set()
        self.capabilities = frozenset(capabilities)
        self.offers: dict[str, Offer] = {}


def _check_role(role: str) -> None:
    if not isinstance(role, str) or not role or role == UNRESERVED or "/" in role[:1]:
        raise AllocatorError(f"{role!r} is not a valid role")


class Allocator:
    def __init__(self, config: AllocatorConfig | None = None) -> None:
        self.config = config or AllocatorConfig()
        self._agents: dict[str, _Agent] = {}
        self._frameworks: dict[str, _Framework] = {}
        self._total: dict[str, int] = {}
        excluded = frozenset(self.config.fairness_excluded)
        self._roles = Sorter(self._total, excluded)
        self._fw_sorters: dict[str, Sorter] = {}
        self._weights: dict[str, float] = {}
        self._quota: dict[str, dict[str, int]] = {}
        self._reserved_total: dict[str, dict[str, int]] = {}
        self._unres_alloc: dict[str, dict[str, int]] = {}
        self._offers: dict[str, Offer] = {}
        self._gone: dict[str, None] = {}
        self._filters: dict[str, dict[str, list[Filter]]] = {}
        self._free: dict[str, None] = {}  # agents with something available, as an ordered set
        self._next_offer = 0
        self._rng = random.Random(self.config.shuffle_seed) if self.config.shuffle_seed is not None else None
        self._min = [{k: to_milli(v) for k, v in m.items()} for m in self.config.min_allocatable]

    # ================================================================ agents ==========
    def add_agent(
        self,
        agent_id: str,
        resources: RoleResources | Resources,
        *,
        hostname: str = "",
        attributes: Mapping[str, str] | None = None,
        dynamic: RoleResources | None = None,
        used: Iterable[tuple[str, str, RoleResources]] = (),
        active: bool = True,
    ) -> None:
        """Register an agent.

        ``resources`` are what the agent reports: unreserved under ``"*"`` and static
        reservations under their role. ``dynamic`` are dynamic reservations already
        committed (carved out of ``"*"``). ``used`` lists (framework, role, resources)
        held by tasks that already run there (after a failover or re-registration).
        """
        if agent_id in self._agents:
            raise AllocatorError(f"agent {agent_id} is already registered")
        if isinstance(resources, Resources):
            resources = RoleResources.unreserved(resources)
        total, static = self._build_total(agent_id, resources, dynamic.to_pools() if dynamic else {})
        avail = pools_copy(total)
        used_pools: dict[tuple[str, str], Pools] = {}
        for fid, role, res in used:
            p = res.to_pools()
            if not pools_contain(avail, p):
                raise AllocatorError(f"agent {agent_id}: resources used by {fid} exceed what the agent has")
            pools_sub(avail, p)
            pools_add(used_pools.setdefault((fid, role), {}), p)

        agent = _Agent(agent_id, hostname or agent_id, attributes or {})
        agent.active = active
        agent.total, agent.static, agent.avail, agent.used = total, static, avail, used_pools
        agent.flat_total = pools_flat(total)
        agent.has_gpus = agent.flat_total.get("gpus", 0) > 0
        self._agents[agent_id] = agent
        _add_to(self._total, agent.flat_total)
        self._invalidate_shares()
        for role, bag in total.items():
            if role != UNRESERVED:
                _add_to(self._reserved_total.setdefault(role, {}), bag.s)
        for (fid, role), p in used_pools.items():
            self._ensure_client(fid, role)
            flat = pools_flat(p)
            self._roles.allocated(role, flat)
            self._fw_sorters[role].allocated(fid, flat)
            if UNRESERVED in p:
                _add_to(self._unres_alloc.setdefault(role, {}), p[UNRESERVED].s)
        if avail:
            self._free[agent_id] = None

    @staticmethod
    def _build_total(agent_id: str, resources: RoleResources, dynamic: Pools) -> tuple[Pools, Pools]:
        """(total, static reservations) of an agent: ``dynamic`` is carved out of ``"*"``."""
        total = resources.to_pools()
        static = {r: b.copy() for r, b in total.items() if r != UNRESERVED}
        for role in static:
            _check_role(role)
        for role, bag in dynamic.items():
            _check_role(role)
            unres = total.get(UNRESERVED)
            if unres is None or not unres.contains(bag):
                raise AllocatorError(f"agent {agent_id}: dynamic reservation for {role} exceeds unreserved resources")
            pools_sub(total, {UNRESERVED: bag})
            pools_add(total, {role: bag})
        return total, static

    def remove_agent(self, agent_id: str) -> list[Offer]:
        """Forget an agent (removed or gone for good). Returns its offers, to rescind."""
        agent = self._agent(agent_id)
        rescinded = self._rescind_agent(agent)
        for (fid, role), p in agent.used.items():
            self._unallocate(fid, role, p)
        for role, bag in agent.total.items():
            if role != UNRESERVED:
                _sub_from(self._reserved_total[role], bag.s)
        _sub_from(self._total, agent.flat_total)
        self._invalidate_shares()
        for ff in self._filters.values():
            ff.pop(agent_id, None)
        self._free.pop(agent_id, None)
        del self._agents[agent_id]
        return rescinded

    def update_agent(self, agent_id: str, resources: RoleResources | Resources, *,
                     hostname: str | None = None, attributes: Mapping[str, str] | None = None) -> list[Offer]:
        """New reported resources (re-registration). Keeps dynamic reservations and tasks."""
        agent = self._agent(agent_id)
        dynamic: Pools = {}
        for role, bag in agent.total.items():
            if role == UNRESERVED:
                continue
            d = bag.copy()
            st = agent.static.get(role)
            if st is not None:
                d.sub(st)
            if not d.empty():
                dynamic[role] = d
        used = [(fid, role, RoleResources.from_pools(p)) for (fid, role), p in agent.used.items()]
        if isinstance(resources, Resources):
            resources = RoleResources.unreserved(resources)
        total, _ = self._build_total(agent_id, resources, dynamic)
        for _, _, r in used:
            p = r.to_pools()
            if not pools_contain(total, p):
                raise AllocatorError(f"agent {agent_id}: new resources do not cover its running tasks")
            pools_sub(total, p)
        old = (agent.hostname, agent.attributes, agent.active)
        rescinded = self.remove_agent(agent_id)
        self.add_agent(agent_id, resources, hostname=hostname or old[0],
                       attributes=old[1] if attributes is None else attributes,
                       dynamic=RoleResources.from_pools(dynamic), used=used, active=old[2])
        return rescinded

    def deactivate_agent(self, agent_id: str) -> list[Offer]:
        """Disconnected or draining: no offers until ``activate_agent``. Returns offers to rescind."""
        agent = self._agent(agent_id)
        agent.active = False
        return self._rescind_agent(agent)

    def activate_agent(self, agent_id: str) -> None:
        self._agent(agent_id).active = True

    def reserve(self, agent_id: str, role: str, resources: Resources) -> None:
        """Operator RESERVE_RESOURCES: unreserved, unoffered resources become reserved for ``role``.

        Raises AllocatorError if they are not available (offered or used): rescind the
        agent's offers first (``rescind_agent_offers``) and retry, as Mesos does.
        """
        _check_role(role)
        agent = self._agent(agent_id)
        bag = Bag.of(resources)
        unres = agent.avail.get(UNRESERVED)
        if unres is None or not unres.contains(bag):
            raise AllocatorError(f"agent {agent_id}: {resources} is not available unreserved")
        for pools in (agent.avail, agent.total):
            pools_sub(pools, {UNRESERVED: bag})
            pools_add(pools, {role: bag})
        _add_to(self._reserved_total.setdefault(role, {}), bag.s)

    def unreserve(self, agent_id: str, role: str, resources: Resources) -> None:
        """Operator UNRESERVE_RESOURCES of available dynamically reserved resources."""
        agent = self._agent(agent_id)
        bag = Bag.of(resources)
        have = agent.avail.get(role)
        if have is None or not have.contains(bag):
            raise AllocatorError(f"agent {agent_id}: {resources} is not available reserved for {role}")
        if not self._dynamic_of(agent, role).contains(bag):
            raise AllocatorError(f"agent {agent_id}: {resources} is not dynamically reserved for {role}")
        for pools in (agent.avail, agent.total):
            pools_sub(pools, {role: bag})
            pools_add(pools, {UNRESERVED: bag})
        _sub_from(self._reserved_total[role], bag.s)

    def rescind_agent_offers(self, agent_id: str) -> list[Offer]:
        return self._rescind_agent(self._agent(agent_id))

    # ============================================================ frameworks ==========
    def add_framework(self, framework_id: str, roles: Iterable[str] = ("*",), *,
                      capabilities: Iterable[str] = (), active: bool = True,
                      suppressed_roles: Iterable[str] = ()) -> None:
        """Subscribe a framework (built-in or external: the same entry either way)."""
        roles = tuple(roles)
        if not roles:
            raise AllocatorError(f"framework {framework_id} has no role")
        for role in roles:
            if role != UNRESERVED:
                _check_role(role)
        fw = self._frameworks.get(framework_id)
        if fw is None:
            fw = _Framework(framework_id, roles, capabilities)
            self._frameworks[framework_id] = fw
        else:  # known from tasks on agents (failover) or a re-subscription
            fw.roles = tuple(dict.fromkeys(roles))
            fw.capabilities = frozenset(capabilities)
        fw.active = active
        fw.suppressed = set(suppressed_roles) & set(fw.roles)
        for role in fw.roles:
            self._ensure_client(framework_id, role)

    def update_framework(self, framework_id: str, roles: Iterable[str] | None = None,
                         capabilities: Iterable[str] | None = None) -> list[Offer]:
        """UPDATE_FRAMEWORK. Offers for roles the framework leaves are returned, to rescind."""
        fw = self._framework(framework_id)
        rescinded: list[Offer] = []
        if roles is not None:
            roles = tuple(dict.fromkeys(roles))
            if not roles:
                raise AllocatorError(f"framework {framework_id} has no role")
            for role in roles:
                if role != UNRESERVED:
                    _check_role(role)
            for o in list(fw.offers.values()):
                if o.role not in roles:
                    rescinded.append(self._rescind(o))
            fw.roles = roles
            fw.suppressed &= set(roles)
            for role in roles:
                self._ensure_client(framework_id, role)
        if capabilities is not None:
            fw.capabilities = frozenset(capabilities)
        return rescinded

    def remove_framework(self, framework_id: str) -> list[Offer]:
        """Teardown: its offers (returned, to rescind) and every resource its tasks held."""
        fw = self._framework(framework_id)
        rescinded = [self._rescind(o) for o in list(fw.offers.values())]
        for agent in self._agents.values():
            for key in [k for k in agent.used if k[0] == framework_id]:
                p = agent.used.pop(key)
                self._unallocate(framework_id, key[1], p)
                pools_add(agent.avail, p)
                self._free[agent.agent_id] = None
        for sorter in self._fw_sorters.values():
            sorter.remove(framework_id)
        self._filters.pop(framework_id, None)
        del self._frameworks[framework_id]
        return rescinded

    def deactivate_framework(self, framework_id: str) -> list[Offer]:
        """Disconnected: no offers; its outstanding offers are returned, to rescind."""
        fw = self._framework(framework_id)
        fw.active = False
        return [self._rescind(o) for o in list(fw.offers.values())]

    def activate_framework(self, framework_id: str) -> None:
        self._framework(framework_id).active = True

    def suppress(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        """SUPPRESS: no offers for these roles (all of the framework's roles by default)."""
        fw = self._framework(framework_id)
        fw.suppressed |= set(fw.roles if roles is None else roles) & set(fw.roles)

    def revive(self, framework_id: str, roles: Iterable[str] | None = None) -> None:
        """REVIVE: unsuppress these roles (all by default) and clear the framework's filters."""
        fw = self._framework(framework_id)
        fw.suppressed -= set(fw.roles if roles is None else roles)
        self._filters.pop(framework_id, None)

    # ================================================================= roles ==========
    def set_weight(self, role: str, weight: float) -> None:
        _check_role(role)
        if not isinstance(weight, (int, float)) or not weight > 0 or weight != weight:
            raise AllocatorError(f"weight of {role} must be a positive number (got {weight!r})")
        self._weights[role] = float(weight)
        self._roles.set_weight(role, float(weight))

    def set_quota(self, role: str, limits: Mapping[str, float] | None) -> None:
        """Per-role limits on scalars (None or {} removes the quota)."""
        _check_role(role)
        if not limits:
            self._quota.pop(role, None)
            return
        out: dict[str, int] = {}
        for k, v in limits.items():
            if k == "ports" or isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0:
                raise AllocatorError(f"quota of {role}: {k}={v!r} is not a non-negative scalar limit")
            out[k] = to_milli(v)
        self._quota[role] = out

    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def quotas(self) -> dict[str, dict[str, float]]:
        return {r: {k: v / 1000 for k, v in q.items()} for r, q in self._quota.items()}

    # ========================================================== allocation ==========
    def allocate(self, now: float, agent_ids: Iterable[str] | None = None) -> list[Offer]:
        """One allocation cycle over all agents (or only ``agent_ids``). Returns new offers.

        Per agent (in a seeded shuffled order), roles are visited by weighted dominant
        share, and within a role frameworks by dominant share; the first framework that
        wants the agent and has no filter matching it gets everything its role may take
        there: unreserved resources (cut to the role's quota headroom) plus the role's
        reservations. Shares are updated after each offer, so the next agent sees the
        new order.
        """
        wanting: dict[str, set[str]] = {}
        for fw in self._frameworks.values():
            if fw.active:
                for role in fw.roles:
                    if role not in fw.suppressed:
                        wanting.setdefault(role, set()).add(fw.framework_id)
        if not wanting:
            return []
        if agent_ids is None:
            agents = list(self._free)
        else:
            agents = [a for a in dict.fromkeys(agent_ids) if a in self._free]
        if self._rng is not None:
            self._rng.shuffle(agents)

        offers: list[Offer] = []
        role_sorter = self._roles
        quota = self._quota
        filters = self._filters
        frameworks = self._frameworks
        fw_sorters = self._fw_sorters
        gpu_filter = self.config.filter_gpu_resources
        for aid in agents:
            agent = self._agents[aid]
            if not agent.active:
                continue
            avail = agent.avail
            order = role_sorter.order()
            copied = False
            i, n = 0, len(order)
            while i < n:
                role = order[i][2]
                i += 1
                fws = wanting.get(role)
                if fws is None:
                    continue
                unres = avail.get(UNRESERVED)
                resv = avail.get(role) if role != UNRESERVED else None
                if unres is None and resv is None:
                    continue
                chopped = False
                if unres is not None and role in quota:
                    unres, chopped = self._within_quota(role, quota[role], unres)
                    if unres is None and resv is None:
                        continue
                # Flat candidate (scalars summed over the two pools) and its ports.
                if resv is None:
                    flat = dict(unres.s)  # type: ignore[union-attr]
                    ports = unres.p  # type: ignore[union-attr]
                elif unres is None:
                    flat = dict(resv.s)
                    ports = resv.p
                else:
                    flat = dict(unres.s)
                    for k, v in resv.s.items():
                        flat[k] = flat.get(k, 0) + v
                    ports = ranges_norm(unres.p + resv.p) if resv.p else unres.p
                if not self._allocatable(flat):
                    continue
                forder = fw_sorters[role].order()
                for key in forder:
                    fid = key[2]
                    if fid not in fws:
                        continue
                    if gpu_filter and agent.has_gpus and GPU_CAPABILITY not in frameworks[fid].capabilities:
                        continue
                    ff = filters.get(fid)
                    if ff is not None and aid in ff and self._filtered(ff, aid, flat, ports, now):
                        continue
                    # This framework gets the candidate. If the agent keeps something for
                    # later roles, keep walking a copy of the order from before the update.
                    pools: Pools = {}
                    if unres is not None:
                        if chopped:
                            pools_sub(avail, {UNRESERVED: unres})
                            pools[UNRESERVED] = unres
                        else:
                            pools[UNRESERVED] = avail.pop(UNRESERVED)
                    if resv is not None:
                        pools[role] = avail.pop(role)
                    if avail and not copied:
                        order = order[i:]
                        i, n, copied = 0, len(order), True
                    offers.append(self._offer(agent, fid, role, pools, flat, now))
                    break
                if not avail:
                    break
            if not avail:
                self._free.pop(aid, None)
        return offers

    def _within_quota(self, role: str, limits: dict[str, int], unres: Bag) -> tuple[Bag | None, bool]:
        """The part of ``unres`` the role may still take: None at its limit, cut to headroom."""
        res = self._reserved_total.get(role, {})
        ua = self._unres_alloc.get(role, {})
        cut: dict[str, int] | None = None
        for k, lim in limits.items():
            head = lim - res.get(k, 0) - ua.get(k, 0)
            if head <= 0:
                return None, False
            if unres.s.get(k, 0) > head:
                if cut is None:
                    cut = dict(unres.s)
                cut[k] = head
        if cut is None:
            return unres, False
        return Bag(cut, unres.p), True

    def _allocatable(self, flat: dict[str, int]) -> bool:
        if not self._min:
            return bool(flat)
        for m in self._min:
            for k, v in m.items():
                if flat.get(k, 0) < v:
                    break
            else:
                return True
        return False

    def _filtered(self, ff: dict[str, list[Filter]], aid: str, flat: dict[str, int],
                  ports: tuple, now: float) -> bool:
        lst = ff[aid]
        live = [f for f in lst if f[0] > now]
        if len(live) != len(lst):
            if live:
                ff[aid] = live
            else:
                del ff[aid]
        for _, fs, fp in live:
            for k, v in flat.items():
                if fs.get(k, 0) < v:
                    break
            else:
                if not ports or ranges_contain(fp, ports):
                    return True
        return False

    def _offer(self, agent: _Agent, fid: str, role: str, pools: Pools, flat: dict[str, int],
               now: float) -> Offer:
        self._roles.allocated(role, flat)
        self._fw_sorters[role].allocated(fid, flat)
        if UNRESERVED in pools:
            _add_to(self._unres_alloc.setdefault(role, {}), pools[UNRESERVED].s)
        self._next_offer += 1
        oid = f"{self.config.offer_id_prefix}-O{self._next_offer}"
        offer = Offer(oid, fid, agent.agent_id, agent.hostname, role, now, agent.attributes, pools)
        self._offers[oid] = offer
        agent.offers[oid] = offer
        self._frameworks[fid].offers[oid] = offer
        return offer

    # ================================================================ answers ==========
    def accept(self, framework_id: str, offer_ids: Iterable[str], operations: Iterable[Operation],
               now: float, refuse_seconds: float | None = None) -> AcceptResult:
        """ACCEPT: validate, then apply atomically (see ``accept.apply_accept``)."""
        return apply_accept(self, framework_id, list(offer_ids), list(operations), now,
                            refuse_seconds_or_default(refuse_seconds))

    def decline(self, framework_id: str, offer_ids: Iterable[str], now: float,
                refuse_seconds: float | None = None) -> list[str]:
        """DECLINE: offers go back to the pool, filtered for ``refuse_seconds`` (default 5).

        Returns the ids that were not outstanding offers of this framework (ignored, as Mesos does).
        """
        refuse = refuse_seconds_or_default(refuse_seconds)
        ignored = []
        for oid in offer_ids:
            o = self._offers.get(oid)
            if o is None or o.framework_id != framework_id:
                ignored.append(oid)
                continue
            self._drop_offer(o)
            self._release(o.agent_id, framework_id, o.role, o._pools, now, refuse)
        return ignored

    def rescind(self, offer_id: str) -> Offer | None:
        """Withdraw an outstanding offer (no filter). None if it is not outstanding."""
        o = self._offers.get(offer_id)
        return self._rescind(o) if o is not None else None

    def expired_offers(self, now: float) -> list[Offer]:
        """Offers outstanding for ``offer_timeout`` or longer at ``now`` (oldest first)."""
        timeout = self.config.offer_timeout
        if timeout is None:
            return []
        out = []
        for o in self._offers.values():  # insertion order == creation order
            if o.created_at + timeout > now:
                break
            out.append(o)
        return out

    def rescind_expired(self, now: float) -> list[Offer]:
        """Rescind every expired offer; the master tells their frameworks (RESCIND)."""
        return [self._rescind(o) for o in self.expired_offers(now)]

    def recover(self, agent_id: str, framework_id: str, role: str, resources: RoleResources) -> None:
        """A task ended (or a launch was dropped): what it held returns to the pool, unfiltered.

        ``resources`` is what ``AcceptResult.launched`` reported for it.
        """
        agent = self._agent(agent_id)
        p = resources.to_pools()
        used = agent.used.get((framework_id, role))
        if used is None or not pools_contain(used, p):
            raise AllocatorError(
                f"agent {agent_id}: {framework_id} ({role}) does not hold {resources!r}")
        pools_sub(used, p)
        if not used:
            del agent.used[(framework_id, role)]
        self._unallocate(framework_id, role, p)
        pools_add(agent.avail, p)
        self._free[agent_id] = None

    # ========================================================== introspection ==========
    @classmethod
    def from_snapshot(cls, snapshot: "ClusterSnapshot", config: AllocatorConfig | None = None) -> "Allocator":
        alloc = cls(config)
        snapshot_load(alloc, snapshot)
        return alloc

    def snapshot(self) -> "ClusterSnapshot":
        return snapshot_dump(self)

    def offers(self, framework_id: str | None = None) -> list[Offer]:
        """Outstanding offers (of one framework), oldest first."""
        if framework_id is None:
            return list(self._offers.values())
        return list(self._framework(framework_id).offers.values())

    def agent_ids(self) -> list[str]:
        return list(self._agents)

    def framework_ids(self) -> list[str]:
        return list(self._frameworks)

    def available(self, agent_id: str) -> RoleResources:
        return RoleResources.from_pools(self._agent(agent_id).avail)

    def total(self, agent_id: str) -> RoleResources:
        return RoleResources.from_pools(self._agent(agent_id).total)

    def used(self, agent_id: str) -> dict[tuple[str, str], RoleResources]:
        return {k: RoleResources.from_pools(p) for k, p in self._agent(agent_id).used.items()}

    def role_share(self, role: str) -> float:
        """Unweighted dominant share of a role (offered + used) in the cluster."""
        return self._roles.share(role) if role in self._roles else 0.0

    def framework_share(self, framework_id: str, role: str) -> float:
        sorter = self._fw_sorters.get(role)
        return sorter.share(framework_id) if sorter is not None and framework_id in sorter else 0.0

    def role_order(self) -> list[str]:
        return self._roles.names()

    def consumption(self, role: str) -> dict[str, float]:
        """Quota consumption: the role's reservations plus unreserved resources it holds."""
        out: dict[str, int] = dict(self._reserved_total.get(role, {}))
        _add_to(out, self._unres_alloc.get(role, {}))
        return {k: v / 1000 for k, v in out.items()}

    def is_filtered(self, framework_id: str, agent_id: str, now: float) -> bool:
        """Whether any live filter of the framework covers the agent at ``now``."""
        return any(f[0] > now for f in self._filters.get(framework_id, {}).get(agent_id, []))

    def is_suppressed(self, framework_id: str, role: str | None = None) -> bool:
        fw = self._framework(framework_id)
        return (set(fw.roles) <= fw.suppressed) if role is None else role in fw.suppressed

    def check_invariants(self) -> None:
        """Raise AssertionError if the books do not balance (for tests and debugging)."""
        check_invariants(self)

    # ============================================================== internals ==========
    def _agent(self, agent_id: str) -> _Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise AllocatorError(f"unknown agent {agent_id}")
        return agent

    def _framework(self, framework_id: str) -> _Framework:
        fw = self._frameworks.get(framework_id)
        if fw is None:
            raise AllocatorError(f"unknown framework {framework_id}")
        return fw

    def _ensure_client(self, fid: str, role: str) -> None:
        if role not in self._roles:
            self._roles.add(role, self._weights.get(role, 1.0))
        sorter = self._fw_sorters.get(role)
        if sorter is None:
            sorter = self._fw_sorters[role] = Sorter(self._total, self._roles.excluded)
        if fid not in sorter:
            sorter.add(fid)
        if fid not in self._frameworks:  # tasks of a framework that has not re-subscribed yet
            fw = _Framework(fid, (role,), ())
            fw.active = False
            self._frameworks[fid] = fw

    def _invalidate_shares(self) -> None:
        self._roles.invalidate()
        for s in self._fw_sorters.values():
            s.invalidate()

    def _dynamic_of(self, agent: _Agent, role: str) -> Bag:
        d = agent.total.get(role, Bag()).copy()
        st = agent.static.get(role)
        if st is not None:
            d.sub(st)
        return d

    def _unallocate(self, fid: str, role: str, pools: Pools) -> None:
        flat = pools_flat(pools)
        self._roles.unallocated(role, flat)
        self._fw_sorters[role].unallocated(fid, flat)
        if UNRESERVED in pools:
            _sub_from(self._unres_alloc[role], pools[UNRESERVED].s)

    def _drop_offer(self, o: Offer, rescinded: bool = False) -> None:
        del self._offers[o.offer_id]
        self._agents[o.agent_id].offers.pop(o.offer_id, None)
        fw = self._frameworks.get(o.framework_id)
        if fw is not None:
            fw.offers.pop(o.offer_id, None)
        if rescinded:
            self._gone[o.offer_id] = None
            if len(self._gone) > _GONE_MEMORY:
                del self._gone[next(iter(self._gone))]

    def _release(self, agent_id: str, fid: str, role: str, pools: Pools, now: float,
                 refuse: float) -> None:
        """Offered resources go back to the agent's pool, with a filter if ``refuse`` > 0."""
        if not pools:
            return
        self._unallocate(fid, role, pools)
        agent = self._agents[agent_id]
        pools_add(agent.avail, pools)
        self._free[agent_id] = None
        if refuse > 0:
            ports = ranges_norm(tuple(p for b in pools.values() for p in b.p))
            self._filters.setdefault(fid, {}).setdefault(agent_id, []).append(
                (now + refuse, pools_flat(pools), ports))

    def _rescind(self, o: Offer) -> Offer:
        self._drop_offer(o, rescinded=True)
        self._release(o.agent_id, o.framework_id, o.role, o._pools, o.created_at, 0.0)
        return o

    def _rescind_agent(self, agent: _Agent) -> list[Offer]:
        return [self._rescind(o) for o in list(agent.offers.values())]

    def _was_rescinded(self, offer_id: str) -> bool:
        return offer_id in self._gone
