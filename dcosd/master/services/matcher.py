"""Instances of apps into offers: resources, host ports, constraints — pure.

For each offer (one agent's free resources) instances are taken app by app
while they fit: scalars from what is left of the offer, host ports either the
exact ones (``requirePorts``) or the lowest free ones, and every constraint
checked against where the app's instances are — including the ones placed
earlier in this same round. What could not be placed is explained per app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from dcosd.master.services.constraints import Place, refusal
from dcosd.model.resources import Resources, ResourceError, normalise_ranges, ranges_contain


@dataclass
class Need:
    app_id: str
    count: int
    scalars: Resources  # cpus, mem, disk, gpus of one instance
    ports: list[int]  # one entry per port definition; 0 = any
    require_ports: bool
    constraints: list[list[str]]
    placed: list[Place] = field(default_factory=list)  # where its live instances are


@dataclass
class OfferView:
    offer_id: str
    agent_id: str
    place: Place
    free: Resources


@dataclass
class Match:
    offer_id: str
    agent_id: str
    launches: list[tuple[str, Resources, list[int]]] = field(default_factory=list)  # app, resources, host ports


def _ports_for(need: Need, free: Resources) -> list[int] | None:
    if not need.ports:
        return []
    if need.require_ports:
        want = normalise_ranges((p, p) for p in need.ports)
        return list(need.ports) if ranges_contain(free.ports, want) else None
    try:
        ranges = free.take_ports(len(need.ports))
    except ResourceError:
        return None
    return [p for lo, hi in ranges for p in range(lo, hi + 1)]


def why_not(need: Need, offer: OfferView) -> str | None:
    """Why this offer cannot take one instance of ``need`` (None: it can)."""
    short = offer.free.shortfall(need.scalars)
    if short:
        return "insufficient " + ", ".join(s.split()[0] for s in short)
    if _ports_for(need, offer.free) is None:
        return "ports " + (",".join(map(str, need.ports)) + " taken" if need.require_ports else "exhausted")
    c = refusal(need.constraints, offer.place, need.placed)
    if c is not None:
        return f"constraint {c}"
    return None


def match(needs: Sequence[Need], offers: Sequence[OfferView]) -> tuple[list[Match], dict[str, int]]:
    """Place as many instances as fit; returns the matches and how many of each app are still unplaced."""
    left = {n.app_id: n.count for n in needs}
    matches = []
    for offer in offers:
        m = Match(offer.offer_id, offer.agent_id)
        free = offer.free
        for need in needs:
            while left[need.app_id] > 0:
                if not free.contains(need.scalars):
                    break
                ports = _ports_for(need, free)
                if ports is None or refusal(need.constraints, offer.place, need.placed) is not None:
                    break
                res = need.scalars + Resources.of(ports=[(p, p) for p in ports])
                free = free - res
                m.launches.append((need.app_id, res, ports))
                need.placed.append(offer.place)
                left[need.app_id] -= 1
        matches.append(m)
    return matches, left


def waiting_reason(need: Need, agents: Sequence[OfferView], unplaced: int) -> str:
    """One line: why ``unplaced`` instances of an app wait, over every active agent's free resources."""
    if not agents:
        return f"{unplaced} instance(s) waiting: no active agent"
    reasons: dict[str, int] = {}
    for a in agents:
        r = why_not(need, a) or "offer not yet received"
        reasons[r] = reasons.get(r, 0) + 1
    parts = "; ".join(f"{r} on {k} agent(s)" for r, k in sorted(reasons.items(), key=lambda x: -x[1]))
    return f"{unplaced} instance(s) waiting: {parts}"
