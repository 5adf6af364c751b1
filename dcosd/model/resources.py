"""Resource arithmetic: scalars (cpus, mem, disk, gpus) and port ranges.

Scalars follow Mesos' fixed-point rule: values are kept to three decimal places
so that repeated addition and subtraction never drifts. Memory and disk are in
MB, as in Mesos. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping  # not typing's: isinstance() on those is several times slower
from typing import Any

SCALAR_NAMES = ("cpus", "mem", "disk", "gpus")

# Upper bounds that no real machine reaches; a request beyond them is a typo, not a task.
MAX_SCALAR = {"cpus": 100_000.0, "mem": 1 << 40, "disk": 1 << 50, "gpus": 1024.0}


class ResourceError(ValueError):
    """A resource description that cannot be valid."""


def _fix(v: float) -> float:
    return round(float(v) + 0.0, 3)


Range = tuple[int, int]


def normalise_ranges(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sorted, merged, non-overlapping inclusive ranges."""
    out: list[list[int]] = []
    for lo, hi in sorted((int(a), int(b)) for a, b in ranges):
        if hi < lo:
            raise ResourceError(f"port range [{lo}-{hi}] ends before it starts")
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    return tuple((a, b) for a, b in out)


def subtract_ranges(have: tuple[Range, ...], take: tuple[Range, ...]) -> tuple[Range, ...]:
    """``have`` minus ``take``; normalised input gives normalised output."""
    if not take:
        return have
    result = list(have)
    for tlo, thi in take:
        nxt: list[Range] = []
        for lo, hi in result:
            if thi < lo or tlo > hi:
                nxt.append((lo, hi))
                continue
            if lo < tlo:
                nxt.append((lo, tlo - 1))
            if thi < hi:
                nxt.append((thi + 1, hi))
        result = nxt
    return tuple(result)


def ranges_contain(have: tuple[Range, ...], want: tuple[Range, ...]) -> bool:
    for wlo, whi in want:
        for lo, hi in have:
            if lo <= wlo and whi <= hi:
                break
        else:
            return False
    return True


def ranges_size(ranges: Iterable[Range]) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


@dataclass(frozen=True)
class Resources:
    """An immutable bag of resources."""

    scalars: Mapping[str, float] = field(default_factory=dict)
    ports: tuple[Range, ...] = ()

    # -- construction -------------------------------------------------------------
    @classmethod
    def of(cls, ports: Iterable[Range] = (), **scalars: float) -> "Resources":
        fixed = {k: _fix(v) for k, v in scalars.items()}
        return cls({k: v for k, v in fixed.items() if v != 0.0}, normalise_ranges(ports) if ports else ())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Resources":
        """Parse ``{"cpus": 1, "mem": 128, "ports": [[31000, 31005]]}``, validating every value."""
        if not isinstance(data, Mapping):
            raise ResourceError("resources must be an object")
        scalars: dict[str, float] = {}
        ports: list[Range] = []
        for name, value in data.items():
            if name == "ports":
                if not isinstance(value, list):
                    raise ResourceError("ports must be a list of [begin, end] ranges")
                for r in value:
                    if (
                        not isinstance(r, (list, tuple))
                        or len(r) != 2
                        or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)
                    ):
                        raise ResourceError(f"port range {r!r} is not [begin, end]")
                    if not (0 < r[0] <= 65535 and 0 < r[1] <= 65535):
                        raise ResourceError(f"port range {r!r} is outside 1-65535")
                    ports.append((r[0], r[1]))
            elif name in SCALAR_NAMES:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ResourceError(f"{name} must be a number, not {value!r}")
                if value != value or value < 0:  # NaN or negative
                    raise ResourceError(f"{name} must not be negative (got {value})")
                if value > MAX_SCALAR[name]:
                    raise ResourceError(f"{name}={value} is beyond any machine (limit {MAX_SCALAR[name]:g})")
                fixed = _fix(value)
                if fixed != 0.0:  # as of() keeps them: every submitted task is parsed here
                    scalars[name] = fixed
            else:
                raise ResourceError(f"unknown resource {name!r} (known: {', '.join(SCALAR_NAMES)}, ports)")
        return cls(scalars, normalise_ranges(ports) if ports else ())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: self.scalars.get(k, 0.0) for k in ("cpus", "mem", "disk")}
        if self.scalars.get("gpus"):
            out["gpus"] = self.scalars["gpus"]
        if self.ports:
            out["ports"] = [list(r) for r in self.ports]
        return out

    # -- arithmetic ---------------------------------------------------------------
    def get(self, name: str) -> float:
        return self.scalars.get(name, 0.0)

    def __add__(self, other: "Resources") -> "Resources":
        s = dict(self.scalars)
        for k, v in other.scalars.items():
            s[k] = s.get(k, 0.0) + v
        return Resources.of(self.ports + other.ports, **s)

    def __sub__(self, other: "Resources") -> "Resources":
        """Difference, floored at zero per scalar (use ``contains`` first when it matters)."""
        s = dict(self.scalars)
        for k, v in other.scalars.items():
            s[k] = max(0.0, _fix(s.get(k, 0.0) - v))
        return Resources.of(subtract_ranges(self.ports, other.ports), **s)

    def contains(self, other: "Resources") -> bool:
        for k, v in other.scalars.items():
            if _fix(self.scalars.get(k, 0.0) - v) < 0:
                return False
        return ranges_contain(self.ports, other.ports)

    def shortfall(self, other: "Resources") -> list[str]:
        """Human-readable list of what ``other`` needs beyond ``self``."""
        short = []
        for k, v in other.scalars.items():
            have = self.scalars.get(k, 0.0)
            if _fix(have - v) < 0:
                short.append(f"{k} {v:g} > {have:g}")
        if not ranges_contain(self.ports, other.ports):
            short.append("ports " + ",".join(f"{a}-{b}" for a, b in other.ports) + " not free")
        return short

    def is_empty(self) -> bool:
        return not self.scalars and not self.ports

    def take_ports(self, count: int) -> tuple[Range, ...]:
        """The lowest ``count`` free ports, as ranges; ResourceError if there are not enough."""
        picked: list[Range] = []
        need = count
        for lo, hi in self.ports:
            if need <= 0:
                break
            n = min(need, hi - lo + 1)
            picked.append((lo, lo + n - 1))
            need -= n
        if need > 0:
            raise ResourceError(f"{count} ports wanted, {ranges_size(self.ports)} free")
        return normalise_ranges(picked)

    def mesos_ports(self) -> str:
        """Ports in the flattened form of Mesos' /master/state: ``[31000-31001, 31005-31005]``."""
        return "[" + ", ".join(f"{a}-{b}" for a, b in self.ports) + "]"

    def __str__(self) -> str:
        parts = [f"{k}={self.scalars[k]:g}" for k in SCALAR_NAMES if k in self.scalars]
        if self.ports:
            parts.append("ports=" + self.mesos_ports())
        return " ".join(parts) or "(none)"
