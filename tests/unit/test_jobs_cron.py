"""Cron evaluation (master/jobs/cron.py): fields, macros, timezones and both DST edges, exhaustively."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from dcosd.master.jobs.cron import CronError, fires_between, next_fire, normalise, zone

UTC = dt.timezone.utc


def ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def local(t: float, tz: str) -> str:
    return dt.datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat()


def fires(expr: str, tz: str, start: str, end: str) -> list[str]:
    return [local(t, tz) for t in fires_between(expr, tz, ts(start), ts(end))]


def test_every_minute_is_strictly_after():
    t = ts("2024-06-15T10:00:00+00:00")
    assert next_fire("* * * * *", "UTC", t) == t + 60
    assert next_fire("* * * * *", "UTC", t - 0.5) == t
    assert next_fire("* * * * *", "UTC", t + 59.999) == t + 60


def test_fields_ranges_steps_lists_and_weekdays():
    assert fires("*/20 9-10 * * 1-5", "UTC", "2024-06-14T08:00:00+00:00", "2024-06-17T10:00:00+00:00") == [
        "2024-06-14T09:00:00+00:00", "2024-06-14T09:20:00+00:00", "2024-06-14T09:40:00+00:00",
        "2024-06-14T10:00:00+00:00", "2024-06-14T10:20:00+00:00", "2024-06-14T10:40:00+00:00",
        "2024-06-17T09:00:00+00:00", "2024-06-17T09:20:00+00:00", "2024-06-17T09:40:00+00:00",
        "2024-06-17T10:00:00+00:00"]  # Saturday 15th and Sunday 16th skipped
    assert fires("0 0 1,15 * *", "UTC", "2024-01-01T00:00:00+00:00", "2024-02-16T00:00:00+00:00") == [
        "2024-01-15T00:00:00+00:00", "2024-02-01T00:00:00+00:00", "2024-02-15T00:00:00+00:00"]


def test_leap_day_and_never():
    assert fires("0 12 29 2 *", "UTC", "2023-01-01T00:00:00+00:00", "2029-01-01T00:00:00+00:00") == [
        "2024-02-29T12:00:00+00:00", "2028-02-29T12:00:00+00:00"]
    assert next_fire("0 0 30 2 *", "UTC", ts("2024-01-01T00:00:00+00:00")) is None


@pytest.mark.parametrize("macro,expr", [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
                                        ("@weekly", "0 0 * * 0"), ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"),
                                        ("@ANNUALLY", "0 0 1 1 *")])
def test_macros(macro, expr):
    assert normalise(macro) == expr


@pytest.mark.parametrize("bad", ["", "* * * *", "* * * * * *", "61 * * * *", "* 24 * * *", "* * 0 * *",
                                 "* * * 13 *", "a b c d e", "@sometimes", 5, None])
def test_bad_expressions_are_refused(bad):
    with pytest.raises(CronError):
        normalise(bad)


@pytest.mark.parametrize("bad", ["Mars/Base", "", "../etc/passwd", "/etc/localtime", 3])
def test_bad_zones_are_refused(bad):
    with pytest.raises(CronError):
        zone(bad)


def test_timezone_shifts_the_instant():
    after = ts("2024-06-15T00:00:00+00:00")
    assert local(next_fire("0 9 * * *", "Europe/Berlin", after), "UTC") == "2024-06-15T07:00:00+00:00"
    assert local(next_fire("0 9 * * *", "America/New_York", after), "UTC") == "2024-06-15T13:00:00+00:00"
    assert local(next_fire("0 9 * * *", "Asia/Kolkata", after), "UTC") == "2024-06-15T03:30:00+00:00"
    # Same expression in winter: Berlin is UTC+1.
    assert local(next_fire("0 9 * * *", "Europe/Berlin", ts("2024-01-15T00:00:00+00:00")), "UTC") == \
        "2024-01-15T08:00:00+00:00"


def test_day_boundary_is_local():
    # 23:30 in Tokyo on Monday is 14:30 UTC Monday; "Monday" is Tokyo's Monday.
    t = next_fire("30 23 * * 1", "Asia/Tokyo", ts("2024-06-15T00:00:00+00:00"))
    assert local(t, "Asia/Tokyo") == "2024-06-17T23:30:00+09:00"


# -- spring forward: 2024-03-31 in Berlin, 02:00 → 03:00; 2024-03-10 in New York, 02:00 → 03:00 ----------


def test_spring_forward_nonexistent_time_does_not_fire():
    assert fires("30 2 * * *", "Europe/Berlin", "2024-03-29T12:00:00+00:00", "2024-04-01T12:00:00+00:00") == [
        "2024-03-30T02:30:00+01:00", "2024-04-01T02:30:00+02:00"]
    assert fires("30 2 * * *", "America/New_York", "2024-03-09T00:00:00+00:00", "2024-03-11T12:00:00+00:00") == [
        "2024-03-09T02:30:00-05:00", "2024-03-11T02:30:00-04:00"]


def test_spring_forward_wildcard_hour_continues_in_real_time():
    assert fires("*/30 * * * *", "Europe/Berlin", "2024-03-31T00:15:00+00:00", "2024-03-31T01:40:00+00:00") == [
        "2024-03-31T01:30:00+01:00", "2024-03-31T03:00:00+02:00", "2024-03-31T03:30:00+02:00"]


def test_spring_forward_times_around_the_gap_fire():
    assert fires("59 1 * * *", "Europe/Berlin", "2024-03-30T12:00:00+00:00", "2024-03-31T12:00:00+00:00") == [
        "2024-03-31T01:59:00+01:00"]
    assert fires("0 3 * * *", "Europe/Berlin", "2024-03-30T12:00:00+00:00", "2024-03-31T12:00:00+00:00") == [
        "2024-03-31T03:00:00+02:00"]


# -- fall back: 2024-10-27 in Berlin, 03:00 CEST → 02:00 CET; 2024-11-03 in New York, 02:00 → 01:00 ---------


def test_fall_back_fixed_time_fires_once_at_first_occurrence():
    assert fires("30 2 * * *", "Europe/Berlin", "2024-10-26T12:00:00+00:00", "2024-10-28T12:00:00+00:00") == [
        "2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]
    assert fires("30 1 * * *", "America/New_York", "2024-11-02T12:00:00+00:00", "2024-11-04T12:00:00+00:00") == [
        "2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]


def test_fall_back_fixed_time_not_refired_from_inside_the_repeated_hour():
    # We are in the second 02:10 (CET); 02:30's first occurrence has passed: the next is tomorrow.
    after = ts("2024-10-27T02:10:00+01:00")
    assert local(next_fire("30 2 * * *", "Europe/Berlin", after), "Europe/Berlin") == "2024-10-28T02:30:00+01:00"


def test_fall_back_wildcard_hour_fires_in_both_occurrences():
    assert fires("*/30 * * * *", "Europe/Berlin", "2024-10-26T23:15:00+00:00", "2024-10-27T02:10:00+00:00") == [
        "2024-10-27T01:30:00+02:00", "2024-10-27T02:00:00+02:00", "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:00:00+01:00", "2024-10-27T02:30:00+01:00", "2024-10-27T03:00:00+01:00"]


def test_fall_back_hourly_keeps_an_hourly_rhythm_in_real_time():
    got = fires_between("0 * * * *", "America/New_York", ts("2024-11-03T03:30:00+00:00"), ts("2024-11-03T09:30:00+00:00"))
    assert [b - a for a, b in zip(got, got[1:])] == [3600.0] * (len(got) - 1)
    assert len(got) == 6


@pytest.mark.parametrize("tz,switch", [
    ("Europe/Berlin", "2024-03-31T01:00:00+00:00"), ("Europe/Berlin", "2024-10-27T01:00:00+00:00"),
    ("America/New_York", "2024-03-10T07:00:00+00:00"), ("America/New_York", "2024-11-03T06:00:00+00:00"),
    ("Australia/Lord_Howe", "2024-04-06T15:00:00+00:00"), ("America/Santiago", "2024-04-07T03:00:00+00:00"),
])
def test_fires_around_every_switch_are_increasing_and_on_the_wall_clock_grid(tz, switch):
    for expr, minutes in (("*/30 * * * *", (0, 30)), ("15 * * * *", (15,)), ("0,45 */2 * * *", (0, 45))):
        got = fires_between(expr, tz, ts(switch) - 12 * 3600, ts(switch) + 12 * 3600)
        assert got and all(b > a for a, b in zip(got, got[1:])), (tz, expr)
        assert all(dt.datetime.fromtimestamp(t, ZoneInfo(tz)).minute in minutes for t in got), (tz, expr)
        # Each instant is the next fire of the one before: the fast and slow paths agree.
        assert [next_fire(expr, tz, t) for t in got[:-1]] == got[1:]


def test_lord_howe_half_hour_shift():
    # Lord Howe moves 30 minutes: 2024-04-07 02:00 LHDT → 01:30 LHST; 01:45 happens twice.
    got = fires("45 1 * * *", "Australia/Lord_Howe", "2024-04-06T00:00:00+00:00", "2024-04-07T12:00:00+00:00")
    assert got == ["2024-04-07T01:45:00+11:00"]
