"""RaftStore: the master's state store replicated by Raft, with StateStore's surface.

``propose(command)`` / ``query()`` / ``listeners`` / ``close()`` as in master/state/store.py, plus
``read_index()`` / ``wait_applied()`` for linearizable reads, ``step(messages)`` for the transport,
and ``status()``.

One thread owns the RaftNode and the writer connection (blocking SQLite and fsync stay off the
event loop). It wakes on its queue (proposals, messages, reads) or on the next tick of a monotonic
clock, feeds the node everything waiting (all proposals waiting become ONE propose_many, so one
Ready and one fsync carry them: group commit), then drives the Ready loop of replog/DESIGN.md.
Results go back to the loop with call_soon_threadsafe, after COMMIT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcosd.errors import DcosdError, NotLeader, StorageError, Unavailable
from dcosd.master.state.store import Reads, migrate, open_db

from .core import RaftNode
from .messages import Message, MsgType, Ready, Role
from .storage import RaftStorage

log = logging.getLogger(__name__)

PROPOSE_TIMEOUT = 30.0
READ_TIMEOUT = 5.0


class _Stop:
    pass


class RaftStore(Reads):
    def __init__(self, path: Path, node_id: str, peers: list[str], *, send: Callable[[list[Message]], None],
                 loop: asyncio.AbstractEventLoop, tick_seconds: float = 0.04,
                 election_ticks: tuple[int, int] = (10, 20), heartbeat_ticks: int = 2,
                 snapshot_threshold: int = 5000, rejoin: bool = False,
                 on_leadership: Callable[[bool, str | None, int], None] | None = None,
                 on_fatal: Callable[[BaseException], None] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.node_id = node_id
        self.loop = loop
        self._send = send
        self._on_leadership = on_leadership
        self._on_fatal = on_fatal
        self.tick_seconds = tick_seconds
        self._writer = open_db(self.path)
        migrate(self._writer)
        self.reader = open_db(self.path)
        self.storage = RaftStorage(self._writer, self.path)
        if rejoin and not self.storage.is_empty():
            raise StorageError(f"--rejoin needs an empty data directory; {self.path} already holds Raft state")
        state, applied = self.storage.load()
        self.node = RaftNode(node_id, peers, rng=random.Random(), state=state, election_ticks=election_ticks,
                             heartbeat_ticks=heartbeat_ticks, snapshot_threshold=snapshot_threshold,
                             applied=applied, rejoin=rejoin)
        if len(self.node.peers) == 1:  # a one-master cluster elects itself at once
            while self.node.role != Role.LEADER:
                self.node.tick()
        self.listeners: list[Any] = []
        # Loop-side view, updated after every Ready.
        self.applied = applied
        self.leader: str | None = None
        self.is_leader = False
        self.term = state.hard_state.term
        self._status: dict[str, Any] = self.node.status()
        self._applied_waiters: list[tuple[int, asyncio.Future]] = []
        # Thread-side.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._waiting: dict[int, tuple[int, asyncio.Future]] = {}  # index -> (term, future)
        self._reads: dict[int, asyncio.Future] = {}
        self._read_seq = 0
        self._announced: tuple[bool, str | None, int] = (False, None, -1)
        self._closed = False
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="raft", daemon=True)
        self._thread.start()

    # -- the loop-side surface ------------------------------------------------------------------
    async def propose(self, command: dict[str, Any]) -> Any:
        if self._closed or self._failed is not None:
            raise StorageError("state store is closed")
        fut: asyncio.Future = self.loop.create_future()
        self._queue.put(("propose", json.dumps(command).encode(), fut))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), PROPOSE_TIMEOUT)
        except TimeoutError:
            raise Unavailable("the write was not committed in time (no quorum of masters?); its outcome is "
                              "unknown") from None

    def step(self, messages: list[Message]) -> None:
        if not self._closed:
            self._queue.put(("step", messages, None))

    async def read_index(self) -> int:
        """On the leader: an index such that state applied up to it reflects every write acknowledged
        before this call (Raft read index). Raises NotLeader."""
        fut: asyncio.Future = self.loop.create_future()
        self._queue.put(("read", None, fut))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), READ_TIMEOUT)
        except TimeoutError:
            raise Unavailable("could not confirm leadership for a linearizable read (no quorum?)") from None

    async def wait_applied(self, index: int, timeout: float = READ_TIMEOUT) -> None:
        if self.applied >= index:
            return
        fut: asyncio.Future = self.loop.create_future()
        self._applied_waiters.append((index, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise Unavailable(f"this master has not caught up to index {index} yet") from None

    def status(self) -> dict[str, Any]:
        return self._status

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(("stop", None, None))
        self._thread.join(timeout=10)
        self._writer.close()
        self.reader.close()

    # -- results, on the loop -------------------------------------------------------------------
    def _deliver(self, results: list[tuple[dict | None, bool, Any, asyncio.Future | None]], applied: int,
                 status: dict[str, Any]) -> None:
        self._status = status
        for command, ok, value, fut in results:
            if ok and command is not None:
                for listener in list(self.listeners):
                    try:
                        listener(command, value)
                    except Exception:
                        log.exception("state listener failed")
            if fut is not None and not fut.done():
                fut.set_result(value) if ok else fut.set_exception(value)
        if applied > self.applied:
            self.applied = applied
            keep = []
            for index, f in self._applied_waiters:
                if index <= applied:
                    if not f.done():
                        f.set_result(None)
                else:
                    keep.append((index, f))
            self._applied_waiters = keep

    def _leadership(self, is_leader: bool, leader: str | None, term: int) -> None:
        self.is_leader, self.leader, self.term = is_leader, leader, term
        if self._on_leadership is not None:
            self._on_leadership(is_leader, leader, term)

    @staticmethod
    def _settle(fut: asyncio.Future, value: Any, ok: bool) -> None:
        if not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)

    def _post(self, fn: Callable, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: we are shutting down
            pass

    # -- the Raft thread ------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 — storage failure: this master must stop
            self._failed = exc
            log.critical("replicated log stopped: %s", exc)
            for _, fut in self._waiting.values():
                self._post(self._settle, fut, exc, False)
            if self._on_fatal is not None:
                self._post(self._on_fatal, exc)

    def _loop(self) -> None:
        node = self.node
        next_tick = time.monotonic() + self.tick_seconds
        while True:
            items = []
            try:
                items.append(self._queue.get(timeout=max(0.0, next_tick - time.monotonic())))
                while True:
                    items.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            proposals: list[tuple[bytes, asyncio.Future]] = []
            for kind, payload, fut in items:
                if kind == "stop":
                    return
                if kind == "propose":
                    proposals.append((payload, fut))
                elif kind == "step":
                    for m in payload:
                        node.step(m)
                elif kind == "read":
                    self._read_seq += 1
                    try:
                        node.read_index(self._read_seq)
                        self._reads[self._read_seq] = fut
                    except NotLeader as exc:
                        self._post(self._settle, fut, exc, False)
            if proposals:
                try:
                    placed = node.propose_many([p for p, _ in proposals])
                    for (_, fut), pr in zip(proposals, placed):
                        self._waiting[pr.index] = (pr.term, fut)
                except NotLeader as exc:
                    for _, fut in proposals:
                        self._post(self._settle, fut, NotLeader(leader=exc.leader), False)
            now = time.monotonic()
            if now >= next_tick:
                node.tick()
                next_tick += self.tick_seconds
                if next_tick < now:  # we were stalled (a long fsync): do not burst ticks
                    next_tick = now + self.tick_seconds
            while node.has_ready():
                self._handle(node.ready())

    def _handle(self, rd: Ready) -> None:
        node = self.node
        messages = rd.messages
        if (messages and node.role == Role.LEADER and rd.snapshot is None
                and not self.storage.vouches(rd.hard_state)):
            # A leader's appends and heartbeats vouch for nothing of its own disk (its term is already
            # durable): they leave while it fsyncs the same entries, which it counts for commit only
            # after advance() (Raft thesis §10.2.1). A commit thus waits for max(own, follower's) fsync.
            early = [m for m in messages if m.type in (MsgType.APPEND, MsgType.HEARTBEAT)]
            if early:
                self._post(self._send, early)
                messages = [m for m in messages if m.type not in (MsgType.APPEND, MsgType.HEARTBEAT)]
        outcomes = self.storage.write_ready(rd)  # 1 + 3: one transaction, fsynced
        if messages:  # 2: after the fsync
            self._post(self._send, messages)
        node.advance(rd)  # 4
        if rd.snapshot_request:  # 5
            index = rd.snapshot_request
            term = node.log.term(index) or 0
            data = self.storage.take_image()
            self.storage.store_snapshot(index, term, data)
            node.compact(index, data)
            log.info("snapshot at index %d (%d bytes); log compacted", index, len(data))
        results: list[tuple[dict | None, bool, Any, asyncio.Future | None]] = []
        for e, ok, value in outcomes:
            waiter = self._waiting.pop(e.index, None)
            fut = None
            if waiter is not None:
                term, fut = waiter
                if term != e.term:
                    ok, value = False, NotLeader(leader=node.leader)
                    results.append((None, False, value, fut))
                    continue
            command = json.loads(e.data) if e.data else None
            results.append((command, ok, value, fut))
        if rd.snapshot is not None:  # proposals whose slots the snapshot covers: outcome unknown here
            for index in [i for i in self._waiting if i <= rd.snapshot.meta.index]:
                _, fut = self._waiting.pop(index)
                results.append((None, False, NotLeader(leader=node.leader), fut))
        applied = node.log.applied
        for rs in rd.read_states:  # 6: the loop side waits for applied >= index
            fut = self._reads.pop(rs.request_id, None)
            if fut is not None:
                self._post(self._settle, fut, rs.index, True)
        if rd.soft_state is not None and rd.soft_state.role != Role.LEADER:
            for rid, fut in list(self._reads.items()):  # dropped by the core: fail them now
                self._post(self._settle, fut, NotLeader(leader=rd.soft_state.leader), False)
            self._reads.clear()
        status = node.status()
        self._post(self._deliver, results, applied, status)
        # Leader-only work starts once our no-op is applied (the state then holds every committed
        # write) and stops the moment we are deposed.
        ready = node.role == Role.LEADER and self.storage.applied_term == node.term
        announce = (ready, node.leader, node.term)
        if announce != self._announced:
            self._announced = announce
            self._post(self._leadership, *announce)


__all__ = ["DcosdError", "RaftStore"]
