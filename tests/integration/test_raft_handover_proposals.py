"""What a write learns when leadership moves under it: whether any of it entered the log.

ha.py sends a write refused with NotLeader on to the new leader only when none of its commands
entered this master's log (``ENTERED_LOG``): then it cannot be done twice. Three RaftStores in one
event loop (tests/harness/raft_stores.py), leadership handed from m1 to m2 with no tick at all.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dcosd.errors import NotLeader
from dcosd.master.replog.shell import ENTERED_LOG
from tests.harness.raft_stores import cluster, elect, elect_any, submit, until


def _queued(store) -> set[str]:
    return {r[0] for r in store.query("SELECT task_id FROM queue")}


def test_a_proposal_held_by_a_handover_is_refused_with_nothing_in_the_log(tmp_path: Path) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        stores = cluster(tmp_path, loop)
        try:
            old = stores["m1"]
            await elect(old)

            async def write(task_id: str, entered: list[int]):
                ENTERED_LOG.set(entered)  # as ha.py's middleware does, in the request's own context
                return await old.propose(submit(task_id))

            before: list[int] = []
            await write("before", before)
            assert len(before) == 1 and before[0] == old.node.log.last_index()

            # The transfer reaches the core first; the write proposed in the same turn waits for it.
            held: list[int] = []
            moving = asyncio.ensure_future(old.transfer_leadership("m2"))
            during = asyncio.ensure_future(write("during", held))
            assert await asyncio.wait_for(moving, 10) == "m2"
            with pytest.raises(NotLeader):  # as m1 stepped down (m2's vote request), before it knew m2 led
                await asyncio.wait_for(during, 10)
            assert held == []  # it never entered the log: safe to send on to m2
            assert old.leader == "m2" and not old.is_leader
            new = stores["m2"]
            await until(lambda: new.is_leader, "m2 to lead")

            # Sent on, it is done once, by the new leader; the old one's log never held it.
            after: list[int] = []
            token = ENTERED_LOG.set(after)
            try:
                await new.propose(submit("during"))
            finally:
                ENTERED_LOG.reset(token)
            assert len(after) == 1
            index = await new.read_index()
            for s in stores.values():
                await s.wait_applied(index, timeout=5)
                assert _queued(s) == {"before", "during"}
            entries = [e for e in new.node.log.slice(new.node.log.offset + 1, new.node.log.last_index() + 1) if b"during" in e.data]
            assert [e.index for e in entries] == after

            # A write of the former leader fails the same way, at once, with nothing written.
            late: list[int] = []
            with pytest.raises(NotLeader):
                await write("late", late)
            assert late == []
        finally:
            for s in stores.values():
                s.close()

    asyncio.run(scenario())


def test_a_proposal_whose_slot_another_leader_committed_is_refused_with_nothing_in_the_log(tmp_path: Path) -> None:
    """A leader cut off from the others (the client still reaching it) holds a write it cannot commit;
    the others elect a leader, which commits its own entry at that index. When the link heals the write
    is refused with its list empty: it was provably never committed, so ha.py sends it on instead of
    answering 503 (outcome unknown)."""
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        cut: set[str] = set()
        stores = cluster(tmp_path, loop, cut)
        try:
            old = stores["m1"]
            await elect(old)
            done: list[int] = []
            ENTERED_LOG.set(done)
            await old.propose(submit("before"))

            cut.add("m1")
            stranded: list[int] = []

            async def write() -> object:
                ENTERED_LOG.set(stranded)
                return await old.propose(submit("stranded"))

            pending = asyncio.ensure_future(write())
            await until(lambda: len(stranded) == 1, "the write to enter m1's log")
            slot = stranded[0]
            assert old.node.log.term(slot) == old.term

            new = await elect_any([stores["m2"], stores["m3"]])
            other: list[int] = []
            ENTERED_LOG.set(other)
            await new.propose(submit("elsewhere"))  # the new leader's no-op and this fill the slots
            assert new.node.log.term(slot) == new.term != old.node.log.term(slot)
            assert not pending.done()

            cut.discard("m1")
            async def heartbeats() -> None:  # the new leader's heartbeats repair m1's log; m1's own
                while True:                     # tick makes it apply what is committed
                    new._on_tick()
                    old._on_tick()
                    await asyncio.sleep(0.005)
            beating = asyncio.ensure_future(heartbeats())
            try:
                with pytest.raises(NotLeader):
                    await asyncio.wait_for(pending, 10)
            finally:
                beating.cancel()
            assert stranded == []  # nothing of it can ever be committed: safe to send on
            assert done != []  # a write that was committed keeps its index
            index = await new.read_index()
            for s in stores.values():
                await s.wait_applied(index, timeout=5)
                assert _queued(s) == {"before", "elsewhere"}
        finally:
            for s in stores.values():
                s.close()

    asyncio.run(scenario())
