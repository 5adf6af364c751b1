"""Resources with their reservation role, and the allocator's fast internal form.

``RoleResources`` is the public type: an immutable mapping from *reservation*
role to ``Resources``. ``"*"`` holds unreserved resources; any other key holds
resources reserved (statically or dynamically) for that role. It is what offers
carry and what LAUNCH reports as drawn, so a task's resources can be returned to
the right pool when it ends.

``Bag`` is the internal form used on the hot path: scalars as *integers in
thousandths* (Mesos' fixed-point rule made exact: no float drift, no rounding
per operation) and ports as a tuple of inclusive ranges. Bags are mutable and
never leave the package.
"""

from __future__ import annotations

from typing import Iterator, Mapping

from dcosd.model.resources import Range, Resources
from dcosd.model.resources import normalise_ranges as ranges_norm
from dcosd.model.resources import ranges_contain
from dcosd.model.resources import subtract_ranges as ranges_sub

UNRESERVED = "*"

# Scalars are kept as integer thousandths internally (3 decimals, as Mesos).
SCALE = 1000


def to_milli(v: float) -> int:
    return int(round(float(v) * SCALE))


# -- port ranges (tuples of inclusive, sorted, non-overlapping ranges) -----------------


def ranges_intersect(a: tuple[Range, ...], b: tuple[Range, ...]) -> tuple[Range, ...]:
    out: list[Range] = []
    for alo, ahi in a:
        for blo, bhi in b:
            lo, hi = max(alo, blo), min(ahi, bhi)
            if lo <= hi:
                out.append((lo, hi))
    return ranges_norm(out)


class Bag:
    """Mutable resources: ``s`` scalars in thousandths, ``p`` port ranges."""

    __slots__ = ("s", "p")

    def __init__(self, s: dict[str, int] | None = None, p: tuple[Range, ...] = ()) -> None:
        self.s = s if s is not None else {}
        self.p = p

    @classmethod
    def of(cls, r: Resources) -> "Bag":
        return cls({k: to_milli(v) for k, v in r.scalars.items() if to_milli(v)}, tuple(r.ports))

    def copy(self) -> "Bag":
        return Bag(dict(self.s), self.p)

    def empty(self) -> bool:
        return not self.s and not self.p

    def add(self, o: "Bag") -> None:
        s = self.s
        for k, v in o.s.items():
            s[k] = s.get(k, 0) + v
        if o.p:
            self.p = ranges_norm(self.p + o.p) if self.p else o.p

    def sub(self, o: "Bag") -> None:
        """Remove ``o``; the caller has checked ``contains`` (a negative is a bug, so it raises)."""
        s = self.s
        for k, v in o.s.items():
            left = s.get(k, 0) - v
            if left > 0:
                s[k] = left
            elif left == 0:
                s.pop(k, None)
            else:
                raise AssertionError(f"resource {k} would go negative ({left})")
        if o.p:
            self.p = ranges_sub(self.p, o.p)

    def contains(self, o: "Bag") -> bool:
        s = self.s
        for k, v in o.s.items():
            if s.get(k, 0) < v:
                return False
        return not o.p or ranges_contain(self.p, o.p)

    def to_resources(self) -> Resources:
        # Amounts are exact thousandths, non-zero, and ports are kept normalised, so the
        # validating constructor (Resources.of) would change nothing: build it directly.
        return Resources({k: v / SCALE for k, v in self.s.items()}, self.p)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bag) and self.s == other.s and self.p == other.p

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Bag({self.to_resources()})"


Pools = dict[str, Bag]  # reservation role -> Bag


def pools_add(dst: Pools, src: Pools) -> None:
    for role, bag in src.items():
        have = dst.get(role)
        if have is None:
            if not bag.s and not bag.p:
                continue
            dst[role] = bag.copy()
        else:
            have.add(bag)


def pools_sub(dst: Pools, src: Pools) -> None:
    for role, bag in src.items():
        if not bag.s and not bag.p:
            continue
        have = dst[role]
        have.sub(bag)
        if have.empty():
            del dst[role]


def pools_contain(have: Pools, want: Pools) -> bool:
    for role, bag in want.items():
        h = have.get(role)
        if h is None:
            if not bag.empty():
                return False
        elif not h.contains(bag):
            return False
    return True


def pools_flat(pools: Pools) -> dict[str, int]:
    """Scalars summed over reservation roles (what DRF shares and filters look at)."""
    if len(pools) == 1:
        for bag in pools.values():
            return dict(bag.s)
    out: dict[str, int] = {}
    for bag in pools.values():
        for k, v in bag.s.items():
            out[k] = out.get(k, 0) + v
    return out


def pools_copy(pools: Pools) -> Pools:
    return {r: b.copy() for r, b in pools.items()}


class RoleResources(Mapping[str, Resources]):
    """Immutable mapping reservation role -> Resources (``"*"`` is unreserved).

    Empty entries are dropped, so two values are equal exactly when they hold
    the same resources in the same roles.
    """

    __slots__ = ("_m",)

    def __init__(self, mapping: Mapping[str, Resources] | None = None) -> None:
        m: dict[str, Resources] = {}
        for role, res in (mapping or {}).items():
            if not isinstance(role, str) or not role:
                raise ValueError(f"role {role!r} is not a role name")
            if not isinstance(res, Resources):
                raise TypeError(f"resources for role {role!r} must be Resources")
            if not res.is_empty():
                m[role] = m[role] + res if role in m else res
        self._m = m

    @classmethod
    def unreserved(cls, resources: Resources) -> "RoleResources":
        return cls({UNRESERVED: resources})

    @classmethod
    def reserved(cls, role: str, resources: Resources) -> "RoleResources":
        return cls({role: resources})

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping]) -> "RoleResources":
        """``{"*": {"cpus": 4}, "web": {"cpus": 2, "mem": 1024}}``."""
        return cls({role: Resources.from_dict(res) for role, res in data.items()})

    def to_dict(self) -> dict[str, dict]:
        return {role: res.to_dict() for role, res in self._m.items()}

    # Mapping protocol
    def __getitem__(self, role: str) -> Resources:
        return self._m[role]

    def __iter__(self) -> Iterator[str]:
        return iter(self._m)

    def __len__(self) -> int:
        return len(self._m)

    def get_role(self, role: str) -> Resources:
        return self._m.get(role, Resources())

    def flatten(self) -> Resources:
        """All resources regardless of reservation."""
        out = Resources()
        for res in self._m.values():
            out = out + res
        return out

    def is_empty(self) -> bool:
        return not self._m

    def __add__(self, other: "RoleResources") -> "RoleResources":
        m = dict(self._m)
        for role, res in other.items():
            m[role] = m[role] + res if role in m else res
        return RoleResources(m)

    def __sub__(self, other: "RoleResources") -> "RoleResources":
        m = dict(self._m)
        for role, res in other.items():
            if role in m:
                m[role] = m[role] - res
        return RoleResources(m)

    def contains(self, other: "RoleResources") -> bool:
        return all(self.get_role(role).contains(res) for role, res in other.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RoleResources):
            return self._m == other._m
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted((r, str(v)) for r, v in self._m.items())))

    def __repr__(self) -> str:
        inner = ", ".join(f"{r}: {v}" for r, v in self._m.items())
        return f"RoleResources({{{inner}}})"

    # -- internal form ------------------------------------------------------------------
    def to_pools(self) -> Pools:
        return {role: Bag.of(res) for role, res in self._m.items()}

    @classmethod
    def from_pools(cls, pools: Pools) -> "RoleResources":
        rr = cls.__new__(cls)
        rr._m = {role: bag.to_resources() for role, bag in pools.items() if not bag.empty()}
        return rr
