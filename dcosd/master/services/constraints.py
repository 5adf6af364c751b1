"""Marathon placement constraints — pure.

A constraint is ``[field, OPERATOR]`` or ``[field, OPERATOR, value]``; the field
is ``hostname`` (also ``@hostname``) or an agent attribute. ``refusal()`` says why
an agent cannot take one more instance of an app, given where the app's other
instances already are (``None``: it can).

    UNIQUE            no two instances share the field's value
    CLUSTER [v]       every instance on value v (without v: on the value of the first)
    GROUP_BY [n]      spread evenly over the values (at least n of them when n is given)
    LIKE re           the value matches re (whole string); agents without the field refuse
    UNLIKE re         the value does not match re; agents without the field accept
    MAX_PER n         at most n instances per value
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER")
_NEEDS_VALUE = ("LIKE", "UNLIKE", "MAX_PER")


class ConstraintError(ValueError):
    """A constraint that can never be evaluated (unknown operator, bad regex, missing value)."""


@dataclass(frozen=True)
class Place:
    """Where an instance is (or could go): an agent's hostname and attributes."""

    hostname: str
    attributes: Mapping[str, str] = field(default_factory=dict)

    def value(self, name: str) -> str | None:
        if name in ("hostname", "@hostname"):
            return self.hostname
        v = self.attributes.get(name)
        return None if v is None else str(v)


def parse(raw: Any) -> list[list[str]]:
    """Validate and normalise constraints to lists of 2-3 strings."""
    if not isinstance(raw, list):
        raise ConstraintError("must be a list of [field, OPERATOR(, value)]")
    out = []
    for i, c in enumerate(raw):
        if isinstance(c, Mapping):  # the object form of newer Marathons
            c = [c.get("fieldName"), c.get("operator")] + ([c["value"]] if c.get("value") is not None else [])
        if not isinstance(c, list) or not 2 <= len(c) <= 3:
            raise ConstraintError(f"[{i}] must be [field, OPERATOR] or [field, OPERATOR, value]")
        fld, op = c[0], c[1]
        if not isinstance(fld, str) or not fld:
            raise ConstraintError(f"[{i}] field must be a non-empty string")
        if not isinstance(op, str) or op.upper() not in OPERATORS:
            raise ConstraintError(f"[{i}] operator {op!r} is not one of {', '.join(OPERATORS)}")
        op = op.upper()
        value = c[2] if len(c) == 3 else None
        if value is not None and not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConstraintError(f"[{i}] value must be a string")
        value = None if value is None else str(value)
        if op in _NEEDS_VALUE and value is None:
            raise ConstraintError(f"[{i}] {op} needs a value")
        if op == "UNIQUE" and value is not None:
            raise ConstraintError(f"[{i}] UNIQUE takes no value")
        if op in ("MAX_PER", "GROUP_BY") and value is not None:
            if not value.isdigit() or int(value) < 1:
                raise ConstraintError(f"[{i}] {op} value must be a positive integer, not {value!r}")
        if op in ("LIKE", "UNLIKE"):
            try:
                re.compile(value or "")
            except re.error as exc:
                raise ConstraintError(f"[{i}] {value!r} is not a regular expression: {exc}") from None
        out.append([fld, op] + ([value] if value is not None else []))
    return out


def describe(c: Sequence[str]) -> str:
    return ":".join(c)


def refusal(constraints: Sequence[Sequence[str]], candidate: Place, placed: Sequence[Place]) -> str | None:
    """Why ``candidate`` cannot take one more instance (the first violated constraint), or None."""
    for c in constraints:
        if not _accepts(c, candidate, placed):
            return describe(c)
    return None


def _accepts(c: Sequence[str], cand: Place, placed: Sequence[Place]) -> bool:
    fld, op = c[0], c[1]
    value = c[2] if len(c) > 2 else None
    mine = cand.value(fld)
    if op == "UNLIKE":
        return mine is None or re.fullmatch(value or "", mine) is None
    if mine is None:
        return False
    if op == "LIKE":
        return re.fullmatch(value or "", mine) is not None
    counts = Counter(v for v in (p.value(fld) for p in placed) if v is not None)
    if op == "UNIQUE":
        return counts[mine] == 0
    if op == "CLUSTER":
        if value is not None:
            return mine == value
        return not counts or mine in counts
    if op == "MAX_PER":
        return counts[mine] < int(value or 1)
    if op == "GROUP_BY":
        groups = int(value) if value else 0
        if len(counts) < groups and mine not in counts:
            return True  # fewer groups used than asked for: a new group is always welcome
        known = dict(counts)
        known.setdefault(mine, 0)
        least = 0 if len(known) < groups else min(known.values())
        return known[mine] <= least
    raise ConstraintError(f"unknown operator {op}")  # parse() keeps this unreachable
