"""A master whose disk is slow says so, and its metrics show how slow.

Three RaftStores in one event loop (tests/harness/raft_stores.py). One follower's durable writes are
made slow by a sleep inside the write (the fault; the disk itself is a real SQLite file): that
follower logs a warning naming the disk and counts the slow write, the leader's own writes stay fast.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from dcosd.master.replog.disk_timing import SLOW_WRITE
from tests.harness.raft_stores import cluster, elect, submit


def test_a_follower_with_a_slow_disk_warns_and_counts_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[dict, dict]:
        loop = asyncio.get_running_loop()
        stores = cluster(tmp_path, loop)
        try:
            leader, slow = stores["m1"], stores["m2"]
            await elect(leader)
            await leader.propose(submit("fast"))
            write = slow.storage.write_ready

            def sluggish(rd):
                if rd.entries:
                    time.sleep(SLOW_WRITE + 0.1)  # blocks m2's loop, as a slow fsync does
                return write(rd)

            slow.storage.write_ready = sluggish  # type: ignore[method-assign]
            await leader.propose(submit("slow"))  # m3 acknowledges in time; m2 takes its while
            return leader.disk_times.summary(), slow.disk_times.summary()
        finally:
            for s in stores.values():
                s.close()

    with caplog.at_level(logging.WARNING, logger="dcosd.master.replog.shell"):
        leader, slow = asyncio.run(scenario())
    assert slow["slow_writes"] >= 1 and slow["write_ms_max"] >= (SLOW_WRITE + 0.1) * 1000
    assert leader["slow_writes"] == 0 and leader["durable_writes"] >= 2 and 0 < leader["write_ms_p50"] < 1000
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("writing the replicated log durably took 1.1" in w and "disk slow or overloaded" in w for w in warnings), warnings
