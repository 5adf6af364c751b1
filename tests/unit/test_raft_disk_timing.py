"""DurableWriteTimes: the durations of a master's fsynced Raft writes, and the slow-disk warning."""

from __future__ import annotations

from dcosd.master.replog.disk_timing import SLOW_WRITE, WARN_EVERY, WINDOW, DurableWriteTimes


def test_percentiles_are_over_the_latest_writes_in_milliseconds() -> None:
    t = DurableWriteTimes()
    assert t.summary() == {"durable_writes": 0.0, "slow_writes": 0.0, "write_ms_p50": 0.0, "write_ms_p99": 0.0,
                           "write_ms_max": 0.0}
    for k in range(100):  # 0.001 s .. 0.100 s
        assert t.record((k + 1) / 1000, now=float(k)) is None
    s = t.summary()
    assert s["durable_writes"] == 100 and s["slow_writes"] == 0
    assert abs(s["write_ms_p50"] - 51) < 1e-9 and abs(s["write_ms_p99"] - 100) < 1e-9
    assert abs(s["write_ms_max"] - 100) < 1e-9
    for k in range(WINDOW):  # the old ones leave the window; the total stays
        t.record(0.002, now=200.0)
    s = t.summary()
    assert s["durable_writes"] == 100 + WINDOW and s["write_ms_max"] == 2.0 and s["write_ms_p50"] == 2.0


def test_slow_writes_are_counted_and_warned_about_at_most_once_per_interval() -> None:
    t = DurableWriteTimes()
    first = t.record(SLOW_WRITE + 0.4, now=100.0)
    assert first is not None and "took 1.40 s" in first and "disk" in first
    assert t.record(SLOW_WRITE, now=101.0) is None  # slow, but warned about a moment ago
    assert t.record(0.01, now=102.0) is None
    assert t.record(2.0, now=100.0 + WARN_EVERY - 1) is None  # still within the interval
    later = t.record(1.5, now=100.0 + WARN_EVERY + 1)
    assert later is not None and "took 1.50 s" in later and "(3 writes over 1 s since the last warning)" in later
    assert t.summary()["slow_writes"] == 4 and t.summary()["durable_writes"] == 5
    last = t.record(1.2, now=100.0 + 2 * WARN_EVERY + 2)  # one more interval on: only itself
    assert last is not None and "took 1.20 s" in last and "since" not in last
