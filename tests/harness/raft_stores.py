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


def cluster(tmp: Path, loop: asyncio.AbstractEventLoop) -> dict[str, RaftStore]:
    stores: dict[str, RaftStore] = {}

    def send(messages: list[Message]) -> None:
        for m in messages:
            loop.call_soon(lambda m=m: stores[m.to].step([m]) if m.to in stores else None)

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
