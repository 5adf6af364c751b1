"""Status updates: checkpoint → forward → retry until acknowledged.

Updates are forwarded in the order they were made (per agent, hence per
task), in batches. The master answers with the uuids it durably recorded; only
those are dropped from the checkpoint. Anything else — a dead master, a
timeout, a refused request — is retried with a capped back-off, forever.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from dcosd.agent.checkpoint import Checkpoint
from dcosd.model.states import TERMINAL_STATES

log = logging.getLogger(__name__)

_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)

Sender = Callable[[list[dict]], Awaitable[list[str]]]


class StatusUpdateManager:
    def __init__(self, checkpoint: Checkpoint, send: Sender) -> None:
        self.checkpoint = checkpoint
        self.send = send
        self._wake = asyncio.Event()
        self.connected = asyncio.Event()

    async def record(self, update: dict) -> None:
        await self.checkpoint.record_update(update)
        self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.2
        while True:
            await self.connected.wait()
            pending = await self.checkpoint.pending_updates()
            if not pending:
                self._wake.clear()
                # Re-check once after clearing, so an update recorded in between is not missed.
                if not await self.checkpoint.pending_updates(limit=1):
                    await self._wake.wait()
                continue
            try:
                acked = await self.send(pending)
            except Exception as exc:  # noqa: BLE001 — every failure means "retry later"
                log.info("status updates not delivered (%s); retrying in %.1fs", exc, backoff)
                try:
                    await asyncio.wait_for(self._wake.wait(), backoff)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
                backoff = min(backoff * 2, 5.0)
                continue
            await self.checkpoint.ack_updates(acked, _TERMINAL)
            if acked:
                backoff = 0.2
            else:  # the master took none of them: do not spin
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
