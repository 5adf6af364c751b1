"""Three RaftStores (the real shell: SQLite files, the raft-disk thread) in one event loop, their
messages routed in memory and delivered on a later turn of the loop, as a socket would.

The raft clock is frozen (the stores' own ticks are an hour apart): a test ticks a store by hand
(``elect``), so nothing happens that the test did not cause.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dcosd.master.replog import Message
from dcosd.master.replog.shell import RaftStore

IDS = ("m1", "m2", "m3")
FROZEN = 3600.0  # seconds between the stores' own ticks: none happens during a test


def cluster(tmp: Path, loop: asyncio.AbstractEventLoop, cut: set[str] | None = None) -> dict[str, RaftStore]:
    """``cut``: the test's own set of stores cut off from the others; messages to or from them are lost
    (judged when a message is sent and again when it is delivered, as a link going down would)."""
    stores: dict[str, RaftStore] = {}
    lost = cut if cut is not None else set()

    def deliver(m: Message) -> None:
        if m.to in stores and m.to not in lost and m.frm not in lost:
            stores[m.to].step([m])

    def send(messages: list[Message]) -> None:
        for m in messages:
            if m.to not in lost and m.frm not in lost:
                loop.call_soon(deliver, m)

    for i in IDS:
        stores[i] = RaftStore(tmp / i / "state.db", i, list(IDS), send=send, loop=loop, tick_seconds=FROZEN)
    return stores


async def elect(store: RaftStore, timeout: float = 20.0) -> None:
    """Tick ``store`` alone (the frozen clock, advanced for it) until it leads."""
    async def ticking() -> None:
        while not store.is_leader:
            store._on_tick()
            await asyncio.sleep(0.002)

    await asyncio.wait_for(ticking(), timeout)


async def elect_any(candidates: list[RaftStore], timeout: float = 20.0) -> RaftStore:
    """Tick ``candidates`` together (each one's frozen clock advanced) until one of them leads: each
    must also outlast its lease on the leader it heard last before it grants a vote."""
    async def ticking() -> RaftStore:
        while True:
            for s in candidates:
                if s.is_leader:
                    return s
            for s in candidates:
                s._on_tick()
            await asyncio.sleep(0.002)

    return await asyncio.wait_for(ticking(), timeout)


async def until(pred, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def submit(task_id: str) -> dict:
    """A task_submit command, as the operator API proposes it."""
    return {"type": "task_submit", "time": time.time(),
            "spec": {"task_id": task_id, "name": "r", "argv": ["true"], "resources": {"cpus": 0.1, "mem": 32}}}
