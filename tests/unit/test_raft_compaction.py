"""When the log is compacted (replog/compaction.py): every N entries only once the log since the last
snapshot is as large as its image, and at CAP_FACTOR x N entries whatever the sizes."""

from __future__ import annotations

import pytest

from dcosd.master.replog.compaction import CAP_FACTOR, snapshot_due


def test_never_before_the_entry_threshold_however_large_the_log() -> None:
    assert not snapshot_due(99, 10**12, 0, every=100, size_ratio=1.0)


def test_the_first_snapshot_comes_at_the_entry_threshold() -> None:
    assert snapshot_due(100, 1, 0, every=100, size_ratio=1.0)


@pytest.mark.parametrize("log_bytes,due", [(49_999, False), (50_000, True), (80_000, True)])
def test_a_small_log_waits_until_it_is_as_large_as_the_image(log_bytes: int, due: bool) -> None:
    assert snapshot_due(150, log_bytes, 50_000, every=100, size_ratio=1.0) is due


@pytest.mark.parametrize("ratio,log_bytes,due", [(2.0, 99_999, False), (2.0, 100_000, True), (0.0, 0, True)])
def test_the_size_ratio_scales_the_image(ratio: float, log_bytes: int, due: bool) -> None:
    assert snapshot_due(100, log_bytes, 50_000, every=100, size_ratio=ratio) is due


def test_the_entry_cap_bounds_the_log_whatever_the_sizes() -> None:
    assert not snapshot_due(100 * CAP_FACTOR - 1, 10, 10**9, every=100, size_ratio=1.0)
    assert snapshot_due(100 * CAP_FACTOR, 10, 10**9, every=100, size_ratio=1.0)
