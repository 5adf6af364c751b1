"""A replacement master (--rejoin) and its first start: the flag is durable before it does anything,
so a restart without it still rejoins. Real RaftStores (SQLite files) in one event loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dcosd.master.replog.shell import RaftStore


def test_a_replacement_killed_before_its_first_write_is_still_rejoining_when_restarted(tmp_path: Path) -> None:
    """--rejoin is recorded durably before the master answers anyone: restarted without the flag (as a
    service is) after dying at once, it still rejoins, instead of taking the leader's view of its
    predecessor's log for its own (commit beyond its last index: it stopped at every restart). A
    repeated --rejoin on a directory still rejoining is taken; on one that finished, refused."""
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        path = tmp_path / "m2" / "state.db"
        first = RaftStore(path, "m2", ["m1", "m2", "m3"], send=lambda ms: None, loop=loop, tick_seconds=3600,
                          rejoin=True)
        first.close()  # before any pump: nothing but the flag was written
        again = RaftStore(path, "m2", ["m1", "m2", "m3"], send=lambda ms: None, loop=loop, tick_seconds=3600)
        assert again.node.rejoining and again.status()["rejoining"]
        again.close()
        repeated = RaftStore(path, "m2", ["m1", "m2", "m3"], send=lambda ms: None, loop=loop, tick_seconds=3600,
                             rejoin=True)
        assert repeated.node.rejoining
        repeated.close()

    asyncio.run(scenario())
