"""Marathon constraints: parsing refuses what can never hold; every operator against placements."""

from __future__ import annotations

import itertools

import pytest

from dcosd.master.services.constraints import ConstraintError, Place, parse, refusal

A = Place("a", {"rack": "r1", "zone": "z1"})
B = Place("b", {"rack": "r1", "zone": "z2"})
C = Place("c", {"rack": "r2"})
AGENTS = (A, B, C)


def ok(constraints, cand, placed=()) -> bool:
    return refusal(parse(constraints), cand, list(placed)) is None


@pytest.mark.parametrize("bad", [
    "x", [["hostname"]], [["hostname", "NOPE"]], [["", "UNIQUE"]], [["hostname", "LIKE"]],
    [["hostname", "UNLIKE"]], [["hostname", "MAX_PER"]], [["hostname", "MAX_PER", "0"]],
    [["hostname", "MAX_PER", "x"]], [["hostname", "GROUP_BY", "-1"]], [["hostname", "LIKE", "("]],
    [["hostname", "UNIQUE", "v"]], [["hostname", "CLUSTER", "a", "b"]], [["hostname", "CLUSTER", True]],
])
def test_parse_refuses(bad):
    with pytest.raises(ConstraintError):
        parse(bad)


def test_parse_normalises():
    assert parse([["hostname", "unique"], ["rack", "MAX_PER", 2]]) == [["hostname", "UNIQUE"], ["rack", "MAX_PER", "2"]]
    assert parse([{"fieldName": "rack", "operator": "LIKE", "value": "r.*"}]) == [["rack", "LIKE", "r.*"]]


def test_unique_hostname_and_attribute():
    assert ok([["hostname", "UNIQUE"]], A)
    assert not ok([["hostname", "UNIQUE"]], A, [A])
    assert ok([["hostname", "UNIQUE"]], B, [A])
    assert not ok([["rack", "UNIQUE"]], B, [A])  # same rack
    assert ok([["rack", "UNIQUE"]], C, [A])
    assert not ok([["zone", "UNIQUE"]], C)  # no such attribute: refused
    assert ok([["@hostname", "UNIQUE"]], B, [A])


def test_cluster():
    assert ok([["rack", "CLUSTER", "r1"]], A) and ok([["rack", "CLUSTER", "r1"]], B)
    assert not ok([["rack", "CLUSTER", "r1"]], C)
    assert ok([["rack", "CLUSTER"]], C)  # the first decides
    assert ok([["rack", "CLUSTER"]], B, [A]) and not ok([["rack", "CLUSTER"]], C, [A])


def test_like_unlike_fullmatch():
    assert ok([["hostname", "LIKE", "[ab]"]], A) and not ok([["hostname", "LIKE", "[ab]"]], C)
    assert not ok([["hostname", "LIKE", "a."]], A)  # whole string
    assert ok([["hostname", "UNLIKE", "[ab]"]], C) and not ok([["hostname", "UNLIKE", "a"]], A)
    assert not ok([["zone", "LIKE", ".*"]], C)  # absent: LIKE refuses
    assert ok([["zone", "UNLIKE", "z1"]], C)  # absent: UNLIKE accepts


def test_max_per():
    c = [["rack", "MAX_PER", "2"]]
    assert ok(c, A) and ok(c, B, [A]) and not ok(c, B, [A, B]) and ok(c, C, [A, B])


def test_group_by_spreads_evenly():
    c = [["rack", "GROUP_BY"]]
    assert ok(c, A)
    assert ok(c, B, [A])  # only one group known: it may grow ...
    assert ok(c, C, [A])  # ... but a new group is always fine
    assert not ok(c, A, [A, C, B])  # r1 has 2, r2 has 1: r1 refuses
    assert ok(c, C, [A, C, B])
    c2 = [["rack", "GROUP_BY", "2"]]
    assert not ok(c2, B, [A])  # two groups wanted, r1 already ahead
    assert ok(c2, C, [A])


def test_every_placement_sequence_keeps_unique_and_max_per():
    """Greedy placement in every agent order never breaks UNIQUE or MAX_PER."""
    for order in itertools.permutations(AGENTS * 2):
        placed: list[Place] = []
        for cand in order:
            if ok([["rack", "MAX_PER", "3"], ["hostname", "MAX_PER", "1"]], cand, placed):
                placed.append(cand)
        hosts = [p.hostname for p in placed]
        assert len(hosts) == len(set(hosts))
        assert sum(p.value("rack") == "r1" for p in placed) <= 3


def test_multiple_constraints_report_the_first_violated():
    assert refusal(parse([["hostname", "LIKE", "a"], ["hostname", "UNIQUE"]]), B, []) == "hostname:LIKE:a"
    assert refusal(parse([["hostname", "LIKE", "a"], ["hostname", "UNIQUE"]]), A, [A]) == "hostname:UNIQUE"
