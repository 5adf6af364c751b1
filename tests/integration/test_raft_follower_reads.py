"""A follower holds committed entries back for a batch; a linearizable read on it must not wait for one.

Three RaftStores in one event loop (tests/harness/raft_stores.py). The raft clock is frozen, so a
follower's batch is never released by a tick: only ``wait_applied`` asking the core (``apply_now``)
can make it apply what the read waits for.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from dcosd.master.replog.shell import FOLLOWER_APPLY_BATCH
from tests.harness.raft_stores import cluster, elect, submit, until


def test_a_follower_serves_a_linearizable_read_without_waiting_for_its_batch(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        stores = cluster(tmp_path, loop)
        try:
            leader, follower = stores["m1"], stores["m2"]
            await elect(leader)
            for k in range(3):
                await leader.propose(submit(f"t{k}"))
            assert FOLLOWER_APPLY_BATCH > 4  # the no-op and three writes stay below one batch
            # The follower holds every entry it has learnt is committed: no tick, no full batch.
            await until(lambda: follower.node.log.committed >= 2, "the follower to learn a commit")
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
