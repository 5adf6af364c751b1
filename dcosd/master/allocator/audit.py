"""The allocator's books, checked from scratch: what tests and debugging lean on.

Recomputes every derived figure (cluster total, role and framework allocations,
quota consumption) from the agents' pools, offers and used resources, and
asserts that the incrementally maintained ones agree, that nothing is negative,
that ports are normalised and never in two places, and that per agent and
reservation role

    total == available + outstanding offers + used
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .roles import UNRESERVED, Bag, Pools, pools_add, pools_copy, pools_flat, ranges_norm

if TYPE_CHECKING:  # pragma: no cover
    from .allocator import Allocator


def _add_to(d: dict[str, int], s: dict[str, int]) -> None:
    for k, v in s.items():
        d[k] = d.get(k, 0) + v


def check_invariants(alloc: "Allocator") -> None:
    total: dict[str, int] = {}
    role_alloc: dict[str, dict[str, int]] = {}
    fw_alloc: dict[tuple[str, str], dict[str, int]] = {}
    unres_alloc: dict[str, dict[str, int]] = {}
    reserved: dict[str, dict[str, int]] = {}
    for aid, a in alloc._agents.items():
        acc: Pools = pools_copy(a.avail)
        held: list[tuple[str, str, Pools]] = [(o.framework_id, o.role, o._pools) for o in a.offers.values()]
        held += [(fid, role, p) for (fid, role), p in a.used.items()]
        for fid, role, p in held:
            for r in p:
                assert r in (UNRESERVED, role), f"{aid}: {fid} holds {r} resources under role {role}"
            pools_add(acc, p)
            flat = pools_flat(p)
            _add_to(role_alloc.setdefault(role, {}), flat)
            _add_to(fw_alloc.setdefault((fid, role), {}), flat)
            if UNRESERVED in p:
                _add_to(unres_alloc.setdefault(role, {}), p[UNRESERVED].s)
        for pools in [a.avail, a.total] + [h[2] for h in held]:
            for b in pools.values():
                assert all(v > 0 for v in b.s.values()), f"{aid}: non-positive amount {b}"
                assert ranges_norm(b.p) == b.p, f"{aid}: ports not normalised {b.p}"
        norm = {r: Bag(dict(b.s), ranges_norm(b.p)) for r, b in acc.items() if not b.empty()}
        assert norm == a.total, f"{aid}: available + offered + used {norm} != total {a.total}"
        # Ports are never handed out twice: the pieces must be disjoint.
        pieces = [r for p in [a.avail] + [h[2] for h in held] for b in p.values() for r in b.p]
        count = sum(hi - lo + 1 for lo, hi in pieces)
        assert count == sum(hi - lo + 1 for b in a.total.values() for lo, hi in b.p), f"{aid}: ports overlap"
        assert not a.avail or aid in alloc._free, f"{aid}: has resources but is not in the free set"
        _add_to(total, pools_flat(a.total))
        for r, b in a.total.items():
            if r != UNRESERVED:
                _add_to(reserved.setdefault(r, {}), b.s)
    assert total == alloc._total, "cluster total out of date"
    for role in alloc._roles.keys:
        assert alloc._roles.alloc[role] == role_alloc.get(role, {}), f"role {role} share books"
        for fid in alloc._fw_sorters[role].keys if role in alloc._fw_sorters else ():
            assert alloc._fw_sorters[role].alloc[fid] == fw_alloc.get((fid, role), {}), f"{fid} in {role}"
    for role in set(unres_alloc) | set(alloc._unres_alloc):
        assert {k: v for k, v in alloc._unres_alloc.get(role, {}).items() if v} == unres_alloc.get(role, {})
    for role in set(reserved) | set(alloc._reserved_total):
        assert {k: v for k, v in alloc._reserved_total.get(role, {}).items() if v} == reserved.get(role, {})
    for oid, o in alloc._offers.items():
        assert alloc._agents[o.agent_id].offers.get(oid) is o
        assert alloc._frameworks[o.framework_id].offers.get(oid) is o

