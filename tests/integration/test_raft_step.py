"""Peers' messages are fed to the node as they are read (replog/shell.py ``RaftStore.step``), not a
turn of the loop later: a follower's fsynced write and its acknowledgment happen inside ``step``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from dcosd.master.replog.messages import Entry, EntryKind, Message, MsgType
from dcosd.master.replog.shell import RaftStore
from tests.harness.raft_stores import cluster, elect, submit, until

IDS = ["m1", "m2", "m3"]


async def test_a_follower_acknowledges_an_append_durably_before_step_returns(tmp_path: Path) -> None:
    sent: list[Message] = []
    path = tmp_path / "m2" / "state.db"
    store = RaftStore(path, "m2", IDS, send=sent.extend, loop=asyncio.get_running_loop(), tick_seconds=3600.0)
    try:
        await asyncio.sleep(0)  # whatever the new store owed
        sent.clear()
        store.step([Message(MsgType.APPEND, "m1", "m2", 1, log_term=0, index=0, commit=0,
                            entries=(Entry(1, 1, b"", EntryKind.NOOP),))])
        acks = [m for m in sent if m.type == MsgType.APPEND_RESP]
        assert [(a.to, a.term, a.index, a.reject) for a in acks] == [("m1", 1, 1, False)]
        assert store.storage.load()[0].entries[-1].index == 1  # durable before it was acknowledged
    finally:
        store.close()


async def test_messages_that_arrive_while_a_leader_writes_wait_for_that_write(tmp_path: Path) -> None:
    """A leader steps nothing while its own Ready is on the raft-disk thread (the core takes no input
    between ready() and advance()); what arrived meanwhile is stepped when the write is done."""
    sent: list[Message] = []
    store = RaftStore(tmp_path / "m1" / "state.db", "m1", IDS, send=sent.extend, loop=asyncio.get_running_loop(),
                      tick_seconds=3600.0)
    try:
        store._outstanding = True  # as while the raft-disk thread writes
        store.step([Message(MsgType.HEARTBEAT, "m2", "m1", 5, commit=0)])
        assert store.term == 0 and store._inbox  # queued, not stepped
        store._outstanding = False
        store._pump()
        assert store.node.term == 5 and not store._inbox
    finally:
        store.close()


def test_messages_stepped_from_inside_the_pump_wait_for_it_to_end(tmp_path: Path) -> None:
    """A listener (run by the pump as entries apply) that hands the store messages does not re-enter
    the pump: they are queued and stepped right after it."""
    async def scenario() -> None:
        stores = cluster(tmp_path, asyncio.get_running_loop())
        leader = stores["m1"]
        seen: list[bool] = []

        def listener(command: dict, value: object) -> None:
            leader.step([Message(MsgType.HEARTBEAT_RESP, "m2", "m1", leader.node.term, seq=0)])
            seen.append(bool(leader._inbox))  # queued, not stepped inside the pump

        try:
            await elect(leader)
            leader.listeners.append(listener)
            await leader.propose(submit("t1"))
            await until(lambda: not leader._inbox, "the queued message to be stepped")
            assert seen == [True]
        finally:
            for s in stores.values():
                s.close()

    asyncio.run(scenario())
