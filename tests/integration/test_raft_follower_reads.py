"""A follower holds committed entries back for a batch; a linearizable read on it must not wait for one.

Three RaftStores (the real shell: SQLite files, the raft-disk thread) in one event loop, their messages
routed in memory. The raft clock is frozen (the stores' own ticks are an hour apart; the test ticks the
first store by hand until it leads), so a follower's batch is never released by a tick: only
``wait_applied`` asking the core (``apply_now``) can make it apply what the read waits for.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dcosd.master.replog import Message
from dcosd.master.replog.shell import FOLLOWER_APPLY_BATCH, RaftStore

IDS = ("m1", "m2", "m3")
FROZEN = 3600.0  # seconds between the stores' own ticks: none happens during the test


def _cluster(tmp: Path, loop: asyncio.AbstractEventLoop) -> dict[str, RaftStore]:
    stores: dict[str, RaftStore] = {}

    def send(messages: list[Message]) -> None:
        for m in messages:  # delivered on a later turn of the loop, as a socket would
            loop.call_soon(lambda m=m: stores[m.to].step([m]) if m.to in stores else None)

    for i in IDS:
        stores[i] = RaftStore(tmp / i / "state.db", i, list(IDS), send=send, loop=loop, tick_seconds=FROZEN)
    return stores


async def _until(pred, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def _spec(task_id: str) -> dict:
    return {"task_id": task_id, "name": "r", "argv": ["true"], "resources": {"cpus": 0.1, "mem": 32}}


def test_a_follower_serves_a_linearizable_read_without_waiting_for_its_batch(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        stores = _cluster(tmp_path, loop)
        try:
            leader, follower = stores["m1"], stores["m2"]

            async def elect() -> None:
                while not leader.is_leader:
                    leader._on_tick()  # the frozen clock, advanced for m1 alone
                    await asyncio.sleep(0.002)

            await asyncio.wait_for(elect(), 20)
            for k in range(3):
                await leader.propose({"type": "task_submit", "time": time.time(), "spec": _spec(f"t{k}")})
            assert FOLLOWER_APPLY_BATCH > 4  # the no-op and three writes stay below one batch
            # The follower holds every entry it has learnt is committed: no tick, no full batch.
            await _until(lambda: follower.node.log.committed >= 2, "the follower to learn a commit")
            assert follower.applied == 0 and follower.node.log.applied == 0
            assert follower.query("SELECT COUNT(*) FROM queue")[0][0] == 0

            index = await leader.read_index()  # what ha.py asks the leader for, over HTTP
            assert index >= 4
            await follower.wait_applied(index, timeout=5)  # fails (Unavailable) if the batch is not released
            assert follower.applied >= index
            assert follower.query("SELECT COUNT(*) FROM queue")[0][0] == 3
            # The third master was not asked: it still holds its batch.
            assert stores["m3"].applied == 0
        finally:
            for s in stores.values():
                s.close()

    asyncio.run(scenario())
