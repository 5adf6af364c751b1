"""Resource arithmetic: fixed-point scalars, port ranges, validation."""

import random
import re

import pytest

from dcosd.model.resources import (
    Resources, ResourceError, normalise_ranges, ranges_contain, ranges_size, subtract_ranges,
)


def test_fixed_point_never_drifts():
    total = Resources.of(cpus=1.0)
    step = Resources.of(cpus=0.1)
    acc = Resources()
    for _ in range(10):
        acc = acc + step
    assert acc.get("cpus") == 1.0 and total.contains(acc) and acc.contains(total)
    for _ in range(10):
        acc = acc - step
    assert acc.is_empty()


def test_contains_and_shortfall():
    agent = Resources.of([(31000, 31010)], cpus=2, mem=1024)
    assert agent.contains(Resources.of([(31002, 31003)], cpus=1, mem=512))
    assert not agent.contains(Resources.of(cpus=3))
    assert not agent.contains(Resources.of([(30999, 31000)]))
    short = agent.shortfall(Resources.of([(40000, 40000)], cpus=4, mem=10))
    assert short == ["cpus 4 > 2", "ports 40000-40000 not free"]


def test_sub_floors_at_zero_and_removes_ports():
    r = Resources.of([(1, 10)], cpus=1) - Resources.of([(3, 4)], cpus=2)
    assert r.get("cpus") == 0 and r.ports == ((1, 2), (5, 10))


def test_take_ports_lowest_first():
    r = Resources.of([(100, 101), (200, 205)])
    assert r.take_ports(3) == ((100, 101), (200, 200))
    with pytest.raises(ResourceError):
        r.take_ports(9)


@pytest.mark.parametrize("bad,needle", [
    ({"cpus": -1}, "negative"), ({"cpus": float("nan")}, "negative"), ({"mem": "x"}, "number"),
    ({"cpus": True}, "number"), ({"cpus": 1e9}, "beyond"), ({"bogus": 1}, "unknown resource"),
    ({"ports": [[5, 1]]}, "ends before"), ({"ports": [[0, 10]]}, "outside"), ({"ports": "1-2"}, "list"),
    ({"ports": [[1, 2, 3]]}, "not [begin, end]"),
])
def test_from_dict_refuses_bad_values(bad, needle):
    with pytest.raises(ResourceError, match=re.escape(needle)):
        Resources.from_dict(bad)


def test_round_trip_and_mesos_ports():
    r = Resources.from_dict({"cpus": 0.5, "mem": 64, "disk": 0, "ports": [[31001, 31001], [31000, 31000]]})
    assert Resources.from_dict(r.to_dict()) == r
    assert r.mesos_ports() == "[31000-31001]"


def test_range_algebra_against_sets():
    rng = random.Random(7)
    for _ in range(500):
        a = normalise_ranges((lo, lo + rng.randrange(0, 6)) for lo in rng.sample(range(0, 60), 4))
        b = normalise_ranges((lo, lo + rng.randrange(0, 6)) for lo in rng.sample(range(0, 60), 3))
        sa = {p for lo, hi in a for p in range(lo, hi + 1)}
        sb = {p for lo, hi in b for p in range(lo, hi + 1)}
        diff = subtract_ranges(a, b)
        assert {p for lo, hi in diff for p in range(lo, hi + 1)} == sa - sb
        assert normalise_ranges(diff) == diff
        assert ranges_contain(a, b) == (sb <= sa)
        assert ranges_size(a) == len(sa)
