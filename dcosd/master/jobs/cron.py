"""Cron evaluation: when a schedule fires, as a pure function of the expression, the zone and a time.

No clock is read here; every function takes the time it reasons about. Times
are POSIX seconds (UTC instants); expressions are evaluated in the schedule's
IANA timezone (zoneinfo), in local wall-clock time, as cron does.

Daylight-saving rules (the ones Vixie cron and Kubernetes' CronJobs agree on
closely enough that operators expect them):

- spring forward: a wall-clock time that does not exist that day (02:30 in
  Europe/Berlin on the last Sunday of March) does not fire;
- fall back: a wall-clock time that happens twice fires once, at its first
  occurrence — unless the expression's hour field is ``*`` (it runs every
  hour), in which case it fires at both occurrences, so ``*/15 * * * *``
  keeps firing every 15 real minutes through the repeated hour.

Expressions have exactly five fields (minute hour day-of-month month
day-of-week) or are one of the ``@hourly``-style macros; croniter does the
calendar arithmetic on naive wall-clock times, this module maps them to
instants.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
# Wall-clock and real-time order differ by at most the largest UTC-offset change of a DST switch
# (1 h almost everywhere, 2 h historically); look this far around to order candidates.
_SHIFT = dt.timedelta(hours=3)
# An expression that matches nothing for this many candidates (e.g. "0 0 30 2 *") never fires.
_MAX_CANDIDATES = 2000


class CronError(ValueError):
    """An expression or timezone that cannot be used; the message says why."""


def normalise(expr: str) -> str:
    """The five-field form of ``expr``, or CronError."""
    if not isinstance(expr, str):
        raise CronError("a cron expression must be a string")
    text = " ".join(expr.split())
    text = MACROS.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) != 5:
        raise CronError(f"cron expression {expr!r} must have 5 fields (minute hour day month weekday), "
                        f"not {len(fields)}")
    try:
        croniter(text, dt.datetime(2000, 1, 1))
    except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
        raise CronError(f"cron expression {expr!r} is invalid: {exc}") from None
    return text


def zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name:
        raise CronError(f"unknown timezone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown timezone {name!r} (use an IANA name such as UTC or Europe/Berlin)") from None


def _hour_is_wildcard(expr: str) -> bool:
    return expr.split(" ")[1] == "*"


def _instants(naive: dt.datetime, tz: ZoneInfo, both_folds: bool) -> list[float]:
    """The instants a wall-clock time names in ``tz``: none (gap), one, or two (repeated hour)."""
    out = []
    for fold in (0, 1):
        aware = naive.replace(tzinfo=tz, fold=fold)
        back = aware.astimezone(dt.timezone.utc).astimezone(tz)
        if back.replace(tzinfo=None) != naive:
            continue  # does not exist: skipped by the spring-forward gap
        ts = aware.timestamp()
        if ts not in out:
            out.append(ts)
    if not both_folds:
        out = out[:1]
    return out


def _steady(tz: ZoneInfo, t: float) -> bool:
    """No UTC-offset change within _SHIFT of ``t``."""
    span = _SHIFT.total_seconds()
    offsets = {dt.datetime.fromtimestamp(x, tz).utcoffset() for x in (t - span, t, t + span)}
    return len(offsets) == 1


def _wall_candidates(expr: str, start: dt.datetime) -> Iterator[dt.datetime]:
    it = croniter(expr, start)
    for _ in range(_MAX_CANDIDATES):
        try:
            yield it.get_next(dt.datetime)
        except CroniterBadDateError:
            return


def next_fire(expr: str, tz_name: str, after: float) -> float | None:
    """The first instant strictly after ``after`` at which ``expr`` fires in ``tz_name`` (None: never)."""
    expr = normalise(expr)
    tz = zone(tz_name)
    both = _hour_is_wildcard(expr)
    local = dt.datetime.fromtimestamp(after, tz).replace(tzinfo=None, fold=0)
    # Fast path: away from any offset change wall-clock order is real-time order, so the first matching
    # wall time after ``after`` is the answer. Checked at both ends, where an order swap could happen.
    if _steady(tz, after):
        for naive in _wall_candidates(expr, local.replace(microsecond=0) if local.microsecond else local):
            found = [ts for ts in _instants(naive, tz, both) if ts > after]
            if found:
                if _steady(tz, found[0]):
                    return found[0]
                break
        else:
            return None
    # Start a little earlier in wall time: a later wall time may be an earlier instant around a switch.
    start = local.replace(second=0, microsecond=0) - _SHIFT
    best: float | None = None
    for naive in _wall_candidates(expr, start):
        for ts in _instants(naive, tz, both):
            if ts > after and (best is None or ts < best):
                best = ts
        if best is not None:
            # Candidates come in wall-clock order; none later than this can be an earlier instant.
            limit = dt.datetime.fromtimestamp(best, tz).replace(tzinfo=None) + _SHIFT
            if naive > limit:
                return best
    return best


def fires_between(expr: str, tz_name: str, after: float, until: float, limit: int = 10_000) -> list[float]:
    """Every instant in (after, until] at which ``expr`` fires, oldest first (at most ``limit``)."""
    out: list[float] = []
    t = after
    while len(out) < limit:
        nxt = next_fire(expr, tz_name, t)
        if nxt is None or nxt > until:
            break
        out.append(nxt)
        t = nxt
    return out
