"""ACCEPT: validate offers and operations, then apply them atomically.

Validation happens on a scratch copy of the offered pools; the allocator's
state is touched only once everything holds, so a refused ACCEPT changes
nothing but the fate of its offers: like Mesos, the offers named in a refused
ACCEPT are used up and their resources go back to the pool unfiltered (offers of
*other* frameworks named by mistake are left alone).

Operations apply in order, so a LAUNCH may use what a RESERVE before it in the
same call reserved. Whatever the operations did not use returns to the pool
with a filter for ``refuse_seconds``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcosd.model.resources import Resources

from .roles import (
    UNRESERVED, Bag, Pools, RoleResources, pools_add, pools_contain, pools_sub,
    ranges_contain, ranges_intersect, ranges_sub,
)
from .types import AcceptError, AcceptResult, Launch, Offer, Operation, Reserve, Unreserve

if TYPE_CHECKING:  # pragma: no cover
    from .allocator import Allocator


class _Refused(Exception):
    def __init__(self, error: AcceptError, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def _draw(pools: Pools, role: str, want: Bag) -> Pools:
    """Take ``want`` from a role's offered pools: its reservation first, then unreserved."""
    resv = pools.get(role) if role != UNRESERVED else None
    unres = pools.get(UNRESERVED)
    from_r: dict[str, int] = {}
    from_u: dict[str, int] = {}
    for k, v in want.s.items():
        r = min(resv.s.get(k, 0), v) if resv is not None else 0
        u = v - r
        if u > (unres.s.get(k, 0) if unres is not None else 0):
            have = (r + (unres.s.get(k, 0) if unres is not None else 0)) / 1000
            raise _Refused(AcceptError.OVER_COMMITTED, f"{k} {v / 1000:g} wanted, {have:g} offered")
        if r:
            from_r[k] = r
        if u:
            from_u[k] = u
    pr: tuple = ()
    pu: tuple = want.p
    if want.p and resv is not None and resv.p:
        pr = ranges_intersect(resv.p, want.p)
        pu = ranges_sub(want.p, pr)
    if pu and (unres is None or not ranges_contain(unres.p, pu)):
        raise _Refused(AcceptError.OVER_COMMITTED, "ports " + ",".join(f"{a}-{b}" for a, b in pu) + " not offered")
    out: Pools = {}
    if from_r or pr:
        out[role] = Bag(from_r, pr)
    if from_u or pu:
        out[UNRESERVED] = Bag(from_u, pu)
    return out


def _role_of(op: Operation, work: dict[str, Pools]) -> str:
    if not isinstance(op, (Launch, Reserve, Unreserve)):
        raise _Refused(AcceptError.INVALID_OPERATION, f"unsupported operation {type(op).__name__}")
    if op.role is not None:
        if op.role not in work:
            raise _Refused(AcceptError.INVALID_OPERATION, f"no offer in this call is for role {op.role!r}")
        return op.role
    if len(work) != 1:
        raise _Refused(AcceptError.INVALID_OPERATION,
                       "offers for several roles: each operation must name its role")
    return next(iter(work))


def apply_accept(alloc: "Allocator", framework_id: str, offer_ids: list[str],
                 operations: list[Operation], now: float, refuse: float) -> AcceptResult:
    if not offer_ids:
        return AcceptResult(error=AcceptError.NO_OFFERS, message="ACCEPT names no offer")

    # -- the offers -------------------------------------------------------------------
    error: tuple[AcceptError, str] | None = None
    offers: list[Offer] = []
    seen: set[str] = set()
    for oid in offer_ids:
        if oid in seen:
            error = error or (AcceptError.DUPLICATE_OFFER, f"offer {oid} named twice")
            continue
        seen.add(oid)
        o = alloc._offers.get(oid)
        if o is None:
            if alloc._was_rescinded(oid):
                error = error or (AcceptError.RESCINDED_OFFER, f"offer {oid} was rescinded")
            else:
                error = error or (AcceptError.UNKNOWN_OFFER, f"offer {oid} is not outstanding")
            continue
        if o.framework_id != framework_id:
            error = error or (AcceptError.WRONG_FRAMEWORK, f"offer {oid} was made to another framework")
            continue
        offers.append(o)
    if error is None and len({o.agent_id for o in offers}) > 1:
        error = (AcceptError.MULTIPLE_AGENTS, "offers from more than one agent")

    agent_id = offers[0].agent_id if offers else None
    result: AcceptResult | None = None
    if error is None:
        try:
            result = _apply(alloc, framework_id, offers, operations, now, refuse)
        except _Refused as exc:
            error = (exc.error, exc.message)
    if result is not None:
        return result
    assert error is not None
    for o in offers:  # used up; resources back, unfiltered
        alloc._drop_offer(o)
        alloc._release(o.agent_id, framework_id, o.role, o._pools, now, 0.0)
    return AcceptResult(error=error[0], message=error[1], agent_id=agent_id)


def _apply(alloc: "Allocator", framework_id: str, offers: list[Offer], operations: list[Operation],
           now: float, refuse: float) -> AcceptResult:
    agent = alloc._agents[offers[0].agent_id]
    # Scratch: allocation role -> offered pools. Mutated by the operations in order.
    work: dict[str, Pools] = {}
    for o in offers:
        pools_add(work.setdefault(o.role, {}), o._pools)
    launched: list[tuple[str, Pools]] = []
    reserved: list[tuple[str, Bag]] = []
    unreserved: list[tuple[str, Bag]] = []
    dynamic: dict[str, Bag] = {}

    for op in operations:
        role = _role_of(op, work)
        pools = work[role]
        if isinstance(op, Launch):
            if isinstance(op.resources, RoleResources):
                want = op.resources.to_pools()
                for r in want:
                    if r not in (role, UNRESERVED):
                        raise _Refused(AcceptError.INVALID_OPERATION,
                                       f"resources reserved for {r} cannot be used by role {role}")
                if not pools_contain(pools, want):
                    raise _Refused(AcceptError.OVER_COMMITTED,
                                   f"task {op.task_id or '(unnamed)'} needs {op.resources!r}, not all offered")
            elif isinstance(op.resources, Resources):
                want = _draw(pools, role, Bag.of(op.resources))
            else:
                raise _Refused(AcceptError.INVALID_OPERATION, "LAUNCH resources must be Resources")
            pools_sub(pools, want)
            launched.append((role, want))
        elif isinstance(op, Reserve):
            if role == UNRESERVED:
                raise _Refused(AcceptError.INVALID_OPERATION, "cannot reserve for role '*'")
            bag = Bag.of(op.resources)
            if not pools_contain(pools, {UNRESERVED: bag}):
                raise _Refused(AcceptError.OVER_COMMITTED, f"RESERVE {op.resources}: not offered unreserved")
            pools_sub(pools, {UNRESERVED: bag})
            pools_add(pools, {role: bag})
            reserved.append((role, bag))
            dynamic.setdefault(role, alloc._dynamic_of(agent, role)).add(bag)
        elif isinstance(op, Unreserve):
            bag = Bag.of(op.resources)
            if role == UNRESERVED or not pools_contain(pools, {role: bag}):
                raise _Refused(AcceptError.OVER_COMMITTED, f"UNRESERVE {op.resources}: not offered reserved for {role}")
            dyn = dynamic.setdefault(role, alloc._dynamic_of(agent, role))
            if not dyn.contains(bag):
                raise _Refused(AcceptError.INVALID_OPERATION,
                               f"UNRESERVE {op.resources}: not a dynamic reservation of {role}")
            dyn.sub(bag)
            pools_sub(pools, {role: bag})
            pools_add(pools, {UNRESERVED: bag})
            unreserved.append((role, bag))
        else:
            raise _Refused(AcceptError.INVALID_OPERATION, f"unsupported operation {type(op).__name__}")

    # -- everything holds: apply ------------------------------------------------------
    for o in offers:
        alloc._drop_offer(o)
    for role, bag in reserved:
        pools_sub(agent.total, {UNRESERVED: bag})
        pools_add(agent.total, {role: bag})
        _move(alloc._unres_alloc.setdefault(role, {}), alloc._reserved_total.setdefault(role, {}), bag.s)
    for role, bag in unreserved:
        pools_sub(agent.total, {role: bag})
        pools_add(agent.total, {UNRESERVED: bag})
        _move(alloc._reserved_total[role], alloc._unres_alloc.setdefault(role, {}), bag.s)
    for role, want in launched:
        if want:
            pools_add(agent.used.setdefault((framework_id, role), {}), want)
    returned: Pools = {}
    for role, pools in work.items():
        if pools:
            alloc._release(agent.agent_id, framework_id, role, pools, now, refuse)
            pools_add(returned, pools)
    return AcceptResult(
        agent_id=agent.agent_id,
        launched=tuple((role, RoleResources.from_pools(w)) for role, w in launched),
        reserved=tuple((role, b.to_resources()) for role, b in reserved),
        unreserved=tuple((role, b.to_resources()) for role, b in unreserved),
        returned=RoleResources.from_pools(returned) if returned else RoleResources(),
    )


def _move(src: dict[str, int], dst: dict[str, int], s: dict[str, int]) -> None:
    for k, v in s.items():
        left = src.get(k, 0) - v
        if left:
            src[k] = left
        else:
            src.pop(k, None)
        dst[k] = dst.get(k, 0) + v

