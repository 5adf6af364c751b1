"""RaftStore: the master's state store replicated by Raft, with StateStore's surface.

``propose(command)`` / ``query()`` / ``listeners`` / ``close()`` as in master/state/store.py, plus
``read_index()`` / ``wait_applied()`` for linearizable reads, ``step(messages)`` for the transport,
and ``status()``.

The RaftNode is driven on the event loop, like etcd's raft goroutine: inputs (proposals, read
requests, ticks) are queued and one ``_pump`` feeds them all to the node, so everything that arrived
together becomes one Ready, one transaction and one fsync (group commit). Peers' messages are pumped
in as they are read (every frame of one read together), with whatever else is queued.
An earlier version ran the whole node on its own thread: every input and every result then crossed
threads and the GIL, which cost more CPU and latency per write than the replication itself.

Only the transaction of a Ready that must be fsynced runs on the ``raft-disk`` thread (apsw lets go
of the GIL inside SQLite), so the loop keeps serving requests and reading peers' messages during
the fsync, which takes milliseconds when several masters share a disk. While it runs the Ready is
outstanding: new inputs wait in the queues and become the next, larger batch. A Ready that only
applies committed entries (no fsync) is written on the loop.

A leader's appends and heartbeats leave BEFORE it persists the same entries, so the followers'
fsyncs run in parallel with its own (Raft thesis §10.2.1); it counts itself toward a commit only
after advance().
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

from dcosd import codec
from dcosd.errors import DcosdError, NotLeader, StorageError, Unavailable, ValidationError
from dcosd.master.state.checkpoint import Checkpointer
from dcosd.memtrim import release_free_memory
from dcosd.master.state.store import Reads, migrate, open_db

from .compaction import snapshot_due
from .core import RaftNode
from .disk_timing import DurableWriteTimes
from .image import ImageFile, image_size
from .messages import Entry, Message, MsgType, Ready, Role
from .storage import RaftStorage

log = logging.getLogger(__name__)

PROPOSE_TIMEOUT = 30.0
# A follower applies committed entries 32 at a time, or a tick (40 ms) after it last did, or at once
# when a read waits for them (core.py). One transaction per write cost it more than the write itself:
# A/B at one client, writes/s 1.08x and CPU per write 0.87x (bench/ab_writes.py, replog/DESIGN.md).
FOLLOWER_APPLY_BATCH = 32
READ_TIMEOUT = 5.0
_EARLY = (MsgType.APPEND, MsgType.HEARTBEAT)
# Where the current request's commands entered this master's log (ha.py sets a fresh list per write).
# A request refused with NotLeader while its list is empty left nothing in any log: it can go on to the
# new leader without any risk of being done twice. One whose list is not empty may have been committed
# (its outcome is unknown here): that one is refused. An index leaves the list again when another
# leader's entry is committed at it (_deliver): a committed slot is final, and a leader puts a command at
# one index only, so that command can never be committed anywhere.
ENTERED_LOG: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("entered_log", default=None)


class RaftStore(Reads):
    def __init__(self, path: Path, node_id: str, peers: list[str], *, send: Callable[[list[Message]], None],
                 loop: asyncio.AbstractEventLoop, tick_seconds: float = 0.04,
                 election_ticks: tuple[int, int] = (10, 20), heartbeat_ticks: int = 2,
                 snapshot_threshold: int = 5000, snapshot_size_ratio: float = 1.0, rejoin: bool = False,
                 restore: Path | None = None,
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
        self._checkpointer = Checkpointer(self.path, self._writer)
        self.storage.claim(node_id)
        if rejoin and self.storage.is_empty():
            self.storage.mark_rejoining()  # durable before anything else: later starts need no flag
        elif rejoin and not self.storage.is_rejoining():
            raise StorageError(f"--rejoin needs an empty data directory; {self.path} already holds Raft state")
        if restore is not None:
            if not self.storage.is_empty():
                raise StorageError(f"--restore-from needs an empty data directory; {self.path} already holds Raft state")
            index, term = self.storage.restore_backup(restore)
            log.info("restored the backup: the state at index %d (term %d)", index, term)
        state, applied = self.storage.load()
        self.node = RaftNode(node_id, peers, rng=random.Random(), state=state, election_ticks=election_ticks,
                             heartbeat_ticks=heartbeat_ticks, snapshot_threshold=snapshot_threshold,
                             applied=applied, eager_commit=False,  # rejoining: from the hard state
                             follower_apply_batch=FOLLOWER_APPLY_BATCH)
        if len(self.node.peers) == 1:  # a one-master cluster elects itself at once
            while self.node.role != Role.LEADER:
                self.node.tick()
        self.listeners: list[Any] = []
        self.applied = applied
        self.leader: str | None = None
        self.is_leader = False
        self.term = state.hard_state.term
        self._applied_waiters: list[tuple[int, asyncio.Future]] = []
        # Inputs waiting for the next pump.
        # (command, answer, ENTERED_LOG, outcome_only)
        self._proposals: list[tuple[bytes, asyncio.Future, list[int] | None, bool]] = []
        self._inbox: list[Message] = []
        self._read_requests: list[asyncio.Future] = []
        self._transfers: list[tuple[str | None, asyncio.Future]] = []
        self._ticks_due = 0
        self._imaging: threading.Thread | None = None  # a snapshot being taken beside the writer
        self._compact_due: tuple[int, ImageFile] | None = None
        # For compaction.snapshot_due: the entries' bytes applied since the last snapshot, its image's size.
        self.snapshot_size_ratio = snapshot_size_ratio
        self._log_bytes = 0
        self._image_bytes = image_size(state.snapshot.data)
        self._deadlines: collections.deque[tuple[float, asyncio.Future]] = collections.deque()
        # Outputs the node still owes.
        # index -> (term, future, the proposing request's ENTERED_LOG, outcome_only)
        self._waiting: dict[int, tuple[int, asyncio.Future, list[int] | None, bool]] = {}
        self._reads: dict[int, asyncio.Future] = {}
        self._read_seq = 0
        self._announced: tuple[bool, str | None, int] = (False, None, -1)
        self._watchers: list[asyncio.Future] = []  # woken at every change of leadership, and every tick
        # Set while this master hands leadership over; done when that ended, either way (ha.py's
        # middleware holds writes until then, so they go to whoever leads afterwards).
        self.handover: asyncio.Future | None = None
        self._outstanding = False  # a Ready is between ready() and advance() (being written on the disk thread)
        self._pump_handle: asyncio.Handle | None = None
        self._pumping = False
        self._closed = False
        self._failed: BaseException | None = None
        self.disk_times = DurableWriteTimes()  # of the fsynced writes (metrics, slow-disk warnings)
        self._disk: queue.SimpleQueue[tuple[Ready, list[Message]] | None] = queue.SimpleQueue()
        self._disk_thread = threading.Thread(target=self._disk_loop, name="raft-disk", daemon=True)
        self._disk_thread.start()
        self._tick_handle = loop.call_later(tick_seconds, self._on_tick)
        self._schedule()  # a fresh node may already owe a Ready (a one-master cluster's election)

    # -- the surface ----------------------------------------------------------------------------
    async def propose(self, command: dict[str, Any], *, outcome_only: bool = False) -> Any:
        """Commit ``command`` and return what applying it returned (or raise what it raised).

        ``outcome_only``: the caller needs that outcome and nothing else — it reads no state after this
        returns and does not rely on the listeners having run. It may then be answered as soon as the
        command is committed and applied, before the transaction that applied it commits (a loop turn
        later, with the listeners). Its outcome is final: the command is committed, so a crash before
        that transaction commits re-applies it at the restart, to the same outcome; and reads still wait
        until this master has committed it (``applied`` moves only then). At one client that takes the
        commit and the listeners, ~50 µs of a write's ~1.1 ms, off the answer's path."""
        if self._closed or self._failed is not None:
            raise StorageError("state store is closed")
        fut: asyncio.Future = self.loop.create_future()
        self._proposals.append((codec.dumps(command), fut, ENTERED_LOG.get(), outcome_only))
        # One timer per write showed in profiles; the tick expires them instead, oldest first.
        self._deadlines.append((self.loop.time() + PROPOSE_TIMEOUT, fut))
        self._schedule()
        return await fut

    def step(self, messages: list[Message]) -> None:
        """Peers' messages, as one read of their stream brought them (transport.FrameReader): fed to the
        node at once, not a loop turn later. An acknowledgment that commits a write then answers it before
        the loop polls again (the other follower's acknowledgment, arriving meanwhile, used to be read
        and decoded first), and a follower starts its fsync a hop sooner. While a Ready is being written
        they wait for it, as everything else does (_persisted pumps)."""
        if self._closed:
            return
        self._inbox.extend(messages)
        if self._outstanding:
            return
        if self._pumping:  # from inside the pump (a listener, a callback): after it, not within it
            self._schedule()
            return
        if self._pump_handle is not None:  # proposals waiting for the loop's turn go now, with these
            self._pump_handle.cancel()
        self._pump()

    async def read_index(self) -> int:
        """On the leader: an index such that state applied up to it reflects every write acknowledged
        before this call (Raft read index). Raises NotLeader."""
        if self._closed or self._failed is not None:
            raise StorageError("state store is closed")
        fut: asyncio.Future = self.loop.create_future()
        self._read_requests.append(fut)
        self._schedule()
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                return await fut
        except TimeoutError:
            raise Unavailable("could not confirm leadership for a linearizable read (no quorum?)") from None

    async def wait_applied(self, index: int, timeout: float = READ_TIMEOUT) -> None:
        if self.applied >= index:
            return
        fut: asyncio.Future = self.loop.create_future()
        self._applied_waiters.append((index, fut))
        self.node.apply_now(index)  # a follower may be holding committed entries back for a batch
        self._schedule()
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise Unavailable(f"this master has not caught up to index {index} yet") from None

    async def transfer_leadership(self, to: str | None, timeout: float = 5.0) -> str:
        """Hand leadership to master ``to`` (None: the follower with the longest log) and wait until a
        master other than this one leads; return its id (``to``, unless an election elsewhere won first).

        The core stops taking proposals, brings ``to`` up to date and tells it to campaign at once:
        writes pause for a round trip and an election, not for an election timeout. Proposals that arrive
        meanwhile wait (they are never proposed here: a new leader answers them). Raises NotLeader,
        ValidationError for a master that cannot lead, Unavailable when it did not take over (the core
        drops a transfer after an election timeout; this master then leads on)."""
        if self._closed or self._failed is not None:
            raise StorageError("state store is closed")
        own = self.handover is None
        if own:  # before the core stops taking proposals: writes from now on wait for the outcome
            self.handover = self.loop.create_future()
        try:
            started: asyncio.Future = self.loop.create_future()
            self._transfers.append((to, started))
            self._schedule()
            chosen = await started
            if chosen == self.node_id:
                return chosen
            async with asyncio.timeout(timeout):
                while True:
                    if self.leader is not None and self.leader != self.node_id:
                        return self.leader
                    if self.node.role == Role.LEADER and self.node.transferee is None:
                        raise Unavailable(f"master {chosen} did not take over within an election timeout (is it "
                                          f"up, reachable and caught up?); {self.node_id} still leads")
                    if self._closed or self._failed is not None:
                        raise StorageError("state store is closed")
                    await self._next_change()
        except TimeoutError:
            raise Unavailable(f"no master took over from {self.node_id} within {timeout:g}s") from None
        finally:
            if own and self.handover is not None:
                self.handover.set_result(None)
                self.handover = None

    async def wait_for_leader(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until this master leads and has applied its no-op, or knows another
        master that leads: while an election is on, or just won, a write waits for it instead of being
        refused."""
        try:
            async with asyncio.timeout(timeout):
                while not (self.is_leader or (self.leader is not None and self.leader != self.node_id)):
                    if self._closed:
                        return
                    await self._next_change()
        except TimeoutError:
            pass

    async def _next_change(self) -> None:
        """Until leadership changes or the next tick."""
        change: asyncio.Future = self.loop.create_future()
        self._watchers.append(change)
        await change

    def _wake_watchers(self) -> None:
        watchers, self._watchers = self._watchers, []
        for fut in watchers:
            if not fut.done():
                fut.set_result(None)

    def status(self) -> dict[str, Any]:
        return self.node.status()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tick_handle.cancel()
        if self._pump_handle is not None:
            self._pump_handle.cancel()
        closed = StorageError("state store is closed")
        for fut in [p[1] for p in self._proposals] + [w[1] for w in self._waiting.values()] + \
                self._read_requests + list(self._reads.values()) + [f for _, f in self._transfers] + self._watchers:
            self._settle(fut, closed, False)
        self._disk.put(None)
        self._disk_thread.join(timeout=10)
        try:
            self.storage.rollback_held()  # its entries are in the durable log: the restart applies them
        except apsw.Error as exc:
            log.warning("closing the state store: %s", exc)
        self._checkpointer.close()
        self._writer.close()
        self.reader.close()

    @staticmethod
    def _settle(fut: asyncio.Future, value: Any, ok: bool) -> None:
        if not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)

    # -- driving the node -------------------------------------------------------------------------
    def _schedule(self) -> None:
        if self._pump_handle is None and not self._outstanding and not self._closed:
            self._pump_handle = self.loop.call_soon(self._pump)

    def _on_tick(self) -> None:
        if self._closed:
            return
        self._tick_handle = self.loop.call_later(self.tick_seconds, self._on_tick)
        self._ticks_due += 1
        self._schedule()
        if self._watchers:
            self._wake_watchers()
        deadlines, now = self._deadlines, self.loop.time()
        while deadlines and (deadlines[0][1].done() or deadlines[0][0] <= now):
            _, fut = deadlines.popleft()
            self._settle(fut, Unavailable("the write was not committed in time (no quorum of masters?); its "
                                          "outcome is unknown"), False)

    def _pump(self) -> None:
        """Feed the node everything queued, then work off its Readys."""
        self._pump_handle = None
        if self._outstanding or self._closed or self._failed is not None:
            return
        node = self.node
        self._pumping = True
        try:
            if self._compact_due is not None:  # between Readys, as the core requires
                index, data = self._compact_due
                self._compact_due = None
                term = node.log.term(index)
                if term is not None and index > node.log.offset:
                    node.compact(index, data)
                    self.storage.record_snapshot(index, term)
                    release_free_memory()  # the entries just dropped (memtrim.py)
                    log.info("snapshot at index %d (%d bytes); log compacted", index, image_size(data))
            inbox, self._inbox = self._inbox, []
            for m in inbox:
                node.step(m)
            if self._ticks_due:
                self._ticks_due = 0  # one tick, however late: a stalled loop must not burst ticks
                node.tick()
            reads, self._read_requests = self._read_requests, []
            for fut in reads:
                self._read_seq += 1
                try:
                    node.read_index(self._read_seq)
                    self._reads[self._read_seq] = fut
                except NotLeader as exc:
                    self._settle(fut, exc, False)
            transfers, self._transfers = self._transfers, []
            for to, fut in transfers:
                try:
                    self._settle(fut, node.transfer_leadership(to), True)
                    if node.transferee is not None:
                        log.info("handing leadership to master %s", node.transferee)
                except NotLeader as exc:
                    self._settle(fut, exc, False)
                except ValueError as exc:
                    self._settle(fut, ValidationError(str(exc)), False)
            # While leadership is being handed over, proposals wait here, never proposed: the core
            # refuses them so the transferee can catch up, and the new leader answers them (NotLeader).
            proposals = self._proposals if node.transferee is None else []
            if proposals:
                self._proposals = []
                try:
                    placed = node.propose_many([p[0] for p in proposals])
                    for (_, fut, entered, outcome_only), pr in zip(proposals, placed):
                        self._waiting[pr.index] = (pr.term, fut, entered, outcome_only)
                        if entered is not None:
                            entered.append(pr.index)
                except NotLeader as exc:
                    for _, fut, _, _ in proposals:
                        self._settle(fut, NotLeader(leader=exc.leader), False)
            self._drive()
        except BaseException as exc:  # noqa: BLE001 — storage failure: this master must stop
            self._fail(exc)
        finally:
            self._pumping = False

    def _drive(self) -> None:
        node = self.node
        while node.has_ready():
            rd = node.ready()
            later = rd.messages
            leading = node.role == Role.LEADER
            if leading and rd.snapshot is None and not self.storage.vouches(rd.hard_state):
                # Our appends and heartbeats vouch for nothing of our own disk (the term is already
                # durable): they go out now, while we write the same entries.
                early = [m for m in rd.messages if m.type in _EARLY]
                if early:
                    self._send(early)
                    later = [m for m in rd.messages if m.type not in _EARLY]
            if rd.entries or rd.snapshot is not None or self.storage.vouches(rd.hard_state):
                if not leading:
                    self._finish(rd, [], self._write_and_acknowledge(rd, later))
                    continue
                self._outstanding = True
                self._disk.put((rd, later))  # the early messages are in the sockets already
                return
            outcomes = self.storage.write_ready(rd, hold=self._answers_before_commit(rd))
            if self.storage.holding:
                for e, ok, value, _ in outcomes:
                    waiter = self._waiting.get(e.index)
                    if waiter is not None and waiter[3]:
                        self._answer(e, ok, value)
                self._outstanding = True  # nothing else is written until that transaction commits
                self.loop.call_soon(self._commit_held, rd, later, outcomes)
                return
            self._finish(rd, later, outcomes)

    def _answers_before_commit(self, rd: Ready) -> bool:
        """Whether ``rd`` applies a command of an outcome-only proposer (propose()) here."""
        waiting = self._waiting
        for e in rd.committed_entries:
            waiter = waiting.get(e.index)
            if waiter is not None and waiter[3]:
                return True
        return False

    def _commit_held(self, rd: Ready, later: list[Message], outcomes: list) -> None:
        """The transaction that applied ``rd``, a loop turn after its outcome-only proposers were
        answered (their handlers ran in between), then the rest of ``rd`` as for any applied Ready."""
        error = None
        if not self._closed:  # (closed: close() rolled it back)
            try:
                self.storage.commit_held()
            except BaseException as exc:  # noqa: BLE001 — the master stops (_persisted)
                error = exc
        self._persisted(rd, later, outcomes, error)

    def _write_and_acknowledge(self, rd: Ready, messages: list[Message]) -> list:
        """A follower's (or candidate's) fsynced Ready, written on the loop. Its acknowledgments are
        what the leader's commit waits for, and nothing on this master waits for the apply: persist in
        one transaction, send, then apply in another (a crash between re-applies from the durable log).
        On the loop, not the disk thread: at one write in flight the two thread hops cost more than the
        loop loses by blocking (peers' frames wait in the socket and become the next batch)."""
        if messages and rd.snapshot is None and rd.committed_entries:
            self._durably(dataclasses.replace(rd, committed_entries=[]))
            self._send(messages)
            outcomes = self.storage.write_ready(Ready(committed_entries=rd.committed_entries))
        else:
            outcomes = self._durably(rd)
            if messages:
                self._send(messages)
        self._checkpointer.maybe_inline()
        return outcomes

    def _disk_loop(self) -> None:
        """The raft-disk thread: one fsynced transaction at a time, results back to the loop."""
        while True:
            item = self._disk.get()
            if item is None:
                return
            rd, later = item
            try:
                written = rd
                if rd.entries and rd.snapshot is None and rd.committed_entries and \
                        rd.committed_entries[0].index < rd.entries[0].index:
                    # Entries committed before this Ready's new ones are durable already: apply them
                    # in a transaction of their own and answer their clients now, not after the fsync
                    # of the next batch (the old single transaction made every write wait for two).
                    cut = rd.entries[0].index
                    done = self.storage.write_ready(Ready(committed_entries=[e for e in rd.committed_entries
                                                                            if e.index < cut]))
                    self.loop.call_soon_threadsafe(self._applied_early, done)
                    written = dataclasses.replace(rd, committed_entries=[e for e in rd.committed_entries
                                                                         if e.index >= cut])
                outcomes = self._durably(written)
                self._checkpointer.maybe_inline()
                result: tuple = (rd, later, outcomes, None)
            except BaseException as exc:  # noqa: BLE001 — reported on the loop, where the master stops
                result = (rd, later, None, exc)
            try:
                self.loop.call_soon_threadsafe(self._persisted, *result)
            except RuntimeError:  # the loop is closed: we are shutting down
                return

    def _durably(self, rd: Ready) -> list:
        """``storage.write_ready`` of a Ready that is fsynced, timed (on either thread). Not one that
        installs a snapshot: that takes as long as the image is large, whatever the disk."""
        if rd.snapshot is not None:
            return self.storage.write_ready(rd)
        t0 = time.monotonic()
        outcomes = self.storage.write_ready(rd)
        now = time.monotonic()
        warning = self.disk_times.record(now - t0, now)
        if warning is not None:
            log.warning("%s", warning)
        return outcomes

    def _persisted(self, rd: Ready, later: list[Message], outcomes: list | None, error: BaseException | None) -> None:
        if self._closed:
            return
        try:
            if error is not None:
                raise error
            self._finish(rd, later, outcomes or [])
            self._outstanding = False
            self._pump()  # whatever arrived meanwhile, and anything the node owes now
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._failed = exc
        log.critical("replicated log stopped: %s", exc)
        for waiter in self._waiting.values():
            self._settle(waiter[1], exc, False)
        for proposal in self._proposals:
            self._settle(proposal[1], exc, False)
        if self._on_fatal is not None:
            self._on_fatal(exc)

    def _finish(self, rd: Ready, messages: list[Message], outcomes: list) -> None:
        """Steps 2 and 4-6 of the I/O contract in replog/DESIGN.md, once ``rd`` is written (1 and 3)."""
        node = self.node
        if messages:  # 2: after the fsync
            self._send(messages)
        node.advance(rd)  # 4
        # 5, beside the writer (storage.py). One at a time; a request made before the previous snapshot
        # compacted the log is stale (it would image again a few entries later) and is let go.
        if (rd.snapshot_request and self._imaging is None and self._compact_due is None
                and snapshot_due(rd.snapshot_request - node.log.offset, self._log_bytes, self._image_bytes,
                                 node.snapshot_threshold, self.snapshot_size_ratio)):
            index = rd.snapshot_request
            self._log_bytes = 0
            self._imaging = threading.Thread(target=self._image, args=(self.storage.pin_state(), index),
                                             name="raft-snapshot", daemon=True)
            self._imaging.start()
        self._deliver(outcomes)
        if rd.snapshot is not None:
            self._log_bytes, self._image_bytes = 0, image_size(rd.snapshot.data)
            release_free_memory()  # the log the snapshot replaced
            # proposals whose slots the snapshot covers: outcome unknown here
            for index in [i for i in self._waiting if i <= rd.snapshot.meta.index]:
                self._settle(self._waiting.pop(index)[1], NotLeader(leader=node.leader), False)
        self._advance_applied(node.log.applied)
        for rs in rd.read_states:  # 6: the caller then waits for applied >= index
            fut = self._reads.pop(rs.request_id, None)
            if fut is not None:
                self._settle(fut, rs.index, True)
        if rd.soft_state is not None and rd.soft_state.role != Role.LEADER:
            for fut in self._reads.values():  # dropped by the core: fail them now
                self._settle(fut, NotLeader(leader=rd.soft_state.leader), False)
            self._reads.clear()
        # Leader-only work starts once our no-op is applied (the state then holds every committed
        # write) and stops the moment we are deposed.
        announce = (node.role == Role.LEADER and self.storage.applied_term == node.term, node.leader, node.term)
        if announce != self._announced:
            self._announced = announce
            self.is_leader, self.leader, self.term = announce
            if self._on_leadership is not None:
                self._on_leadership(*announce)
            self._wake_watchers()

    def _deliver(self, outcomes: list) -> None:
        """Applied entries: answer the proposers, tell the listeners.

        The proposer's future is settled first: that only queues its task's wake-up, which runs after
        every listener here has run (so it sees what they did), but ahead of the tasks the listeners
        wake — an allocation cycle after every submitted task, event streams — which the answer need
        not wait for."""
        for e, ok, value, command in outcomes:
            self._log_bytes += len(e.data)
            self._answer(e, ok, value)  # (an outcome-only proposer was answered already)
            if ok and command is not None:
                for listener in list(self.listeners):
                    try:
                        listener(command, value)
                    except Exception:
                        log.exception("state listener failed")

    def _answer(self, e: Entry, ok: bool, value: Any) -> None:
        """The proposer of the command applied at ``e.index`` on this master, if it waits here."""
        waiter = self._waiting.pop(e.index, None)
        if waiter is None:
            return
        term, fut, entered, _ = waiter
        if term != e.term:  # our proposal lost its slot to another leader's entry: never committed
            if entered is not None and e.index in entered:
                entered.remove(e.index)
            self._settle(fut, NotLeader(leader=self.node.leader), False)
        else:
            self._settle(fut, value, ok)

    def _applied_early(self, outcomes: list) -> None:
        if self._closed:
            return
        self._deliver(outcomes)
        if outcomes:
            self._advance_applied(outcomes[-1][0].index)

    def _image(self, pinned: Any, index: int) -> None:
        """The raft-snapshot thread: image the state pinned at ``index`` and save it durably."""
        try:  # at a lower CPU priority than the threads serving writes (Linux: a nice value per thread)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 15)
        except (AttributeError, OSError):
            pass
        try:
            image = self.storage.save_image_file(index, self.storage.image_file_of(pinned, index))
            result: tuple = (index, image, None)
        except BaseException as exc:  # noqa: BLE001 — reported on the loop; the core asks again later
            result = (index, None, exc)
        try:
            self.loop.call_soon_threadsafe(self._imaged, *result)
        except RuntimeError:  # the loop is closed: we are shutting down
            pass

    def _imaged(self, index: int, image: ImageFile | None, error: BaseException | None) -> None:
        self._imaging = None
        if self._closed:
            return
        if error is not None:
            log.warning("snapshot at index %d failed (%s); the log is kept and the next one is tried later",
                        index, error)
            return
        self._compact_due = (index, image)
        self._image_bytes = image_size(image)
        self._schedule()

    def _advance_applied(self, applied: int) -> None:
        if applied <= self.applied:
            return
        self.applied = applied
        if self._applied_waiters:
            keep = []
            for index, f in self._applied_waiters:
                if index <= applied:
                    if not f.done():
                        f.set_result(None)
                else:
                    keep.append((index, f))
            self._applied_waiters = keep


__all__ = ["DcosdError", "RaftStore"]
