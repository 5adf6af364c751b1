"""A proposer that needs only its command's outcome (RaftStore.propose(outcome_only=True), as the
operator API's task submission) is answered once the command is committed and applied, before the
transaction that applied it commits; everything else about that write happens as before, a loop turn
later: the commit, the listeners, ``applied``, and the reads that wait for it.

Three RaftStores in one event loop (tests/harness/raft_stores.py), their SQLite files real.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dcosd.errors import Conflict
from dcosd.master.replog.shell import RaftStore
from tests.harness.raft_stores import cluster, elect, submit


def _queued(store: RaftStore) -> int:
    return store.query("SELECT COUNT(*) FROM queue")[0][0]


def test_an_outcome_only_proposer_is_answered_before_the_apply_commits(tmp_path: Path) -> None:
    async def scenario() -> None:
        stores = cluster(tmp_path, asyncio.get_running_loop())
        leader = stores["m1"]
        heard: list[str] = []
        leader.listeners.append(lambda command, value: heard.append(command["spec"]["task_id"]))
        try:
            await elect(leader)
            before = leader.applied
            assert await leader.propose(submit("t1"), outcome_only=True) == {"task_id": "t1"}
            # Answered: the transaction that applied it is still open, nothing else has seen it yet.
            assert leader.storage.holding
            assert _queued(leader) == 0 and heard == [] and leader.applied == before
            index = await leader.read_index()
            await leader.wait_applied(index)  # a read waits for the commit
            assert not leader.storage.holding
            assert _queued(leader) == 1 and heard == ["t1"] and leader.applied >= index

            # A proposer that did not ask resumes after the commit and the listeners, as before.
            assert await leader.propose(submit("t2")) == {"task_id": "t2"}
            assert not leader.storage.holding and _queued(leader) == 2 and heard == ["t1", "t2"]

            # A refused command's outcome comes the same way, and is the same.
            with pytest.raises(Conflict):
                await leader.propose(submit("t1"), outcome_only=True)
            await leader.wait_applied(await leader.read_index())
            assert _queued(leader) == 2 and heard == ["t1", "t2"]
        finally:
            for s in stores.values():
                s.close()

    asyncio.run(scenario())


def test_a_store_closed_before_the_held_apply_commits_applies_it_again_at_the_restart(tmp_path: Path) -> None:
    """As a leader killed right after answering: the command is committed (a majority has it durably),
    so the restarted master applies it from its log, to the outcome it answered."""
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        stores = cluster(tmp_path, loop)
        leader = stores["m1"]
        try:
            await elect(leader)
            assert await leader.propose(submit("t1"), outcome_only=True) == {"task_id": "t1"}
            assert leader.storage.holding
            leader.close()  # before the loop's next turn: the held transaction is rolled back
            assert not leader.storage.holding
            stores["m1"] = RaftStore(tmp_path / "m1" / "state.db", "m1", list(stores), send=leader._send, loop=loop,
                                     tick_seconds=3600.0)
            assert _queued(stores["m1"]) == 0  # the rolled-back apply left nothing
            new_leader = stores["m2"]
            await elect(new_leader)
            await stores["m1"].wait_applied(await new_leader.read_index())
            assert stores["m1"].query("SELECT task_id FROM queue") == [("t1",)]
        finally:
            for s in stores.values():
                s.close()

    asyncio.run(scenario())
