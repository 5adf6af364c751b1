"""The leader's scheduling loop: the DRF allocator fed from committed state, offers out, answers in.

One ``Scheduling`` object per master. Its ``run()`` is a leader-only task
(started by ``Master.become_leader``, cancelled by ``step_down``): it builds the
allocator from committed state, then every allocation interval — and promptly
after a release, a revive or a new agent — rescinds expired offers and hands
new ones to the frameworks' clients. Frameworks answer with ``accept``,
``decline``, ``revive``, ``suppress``, ``kill``; built-in frameworks (the task
queue of ``dcosd run``, later services and jobs) call the same methods
in-process that the scheduler API calls for external ones (see DESIGN.md).

Only committed facts leave this module: a launch goes to an agent after the
command recording the task is committed; the allocator holds the resources as
soon as it accepts (so nothing is offered twice) and gets them back if the
commit fails. Offers and filters are leader memory, as in Mesos.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, Sequence

from dcosd.master.allocator import (
    ALLOCATION_INTERVAL, AcceptError, Allocator, AllocatorConfig, AllocatorError, Launch, Offer, Reserve,
    RoleResources, Unreserve,
)
from dcosd.master.state import views
from dcosd.model.ids import new_uuid
from dcosd.model.resources import Resources
from dcosd.model.states import ACTIVE_STATES, TaskState

if TYPE_CHECKING:
    from dcosd.master.service import Master

log = logging.getLogger(__name__)

SYNC_INTERVAL = 5.0  # full check of which charged tasks ended (a safety net under the per-commit one)
_LIVE = tuple(s.value for s in ACTIVE_STATES)
_LIVE_SQL = ",".join("?" * len(_LIVE))
_TASK_COMMANDS = ("task_status", "task_master_status", "agent_unreachable", "agent_lost")


class FrameworkClient(Protocol):
    """Where a framework's offers and events go: a scheduler API stream, or a built-in framework."""

    framework_id: str

    def offers(self, offers: list[Offer]) -> None: ...

    def rescind(self, offer: Offer) -> None: ...

    def updates_pending(self) -> None:
        """Committed status updates may be waiting for this framework."""

    def failure(self, agent_id: str) -> None: ...


@dataclass
class PlannedTask:
    """A task of an ACCEPT, validated: its spec (as stored), what it draws, its executor if any."""

    spec: dict[str, Any]
    resources: Resources | RoleResources
    executor_id: str | None = None
    executor_resources: Resources | None = None
    executor_info: dict[str, Any] | None = None


@dataclass
class Operation:
    kind: str  # "launch", "reserve", "unreserve"
    tasks: list[PlannedTask] = field(default_factory=list)
    resources: Resources | None = None


@dataclass
class AcceptOutcome:
    ok: bool
    agent_id: str | None = None
    error: AcceptError | None = None
    message: str = ""
    launched: list[str] = field(default_factory=list)


Committer = Callable[[str, str, list[tuple[PlannedTask, str, RoleResources]]], Awaitable[list[str]]]


def _alloc_of(task_row: dict[str, Any]) -> tuple[str, RoleResources]:
    role = task_row.get("role") or "*"
    alloc = task_row.get("alloc")
    if alloc:
        return role, RoleResources.from_dict(alloc)
    return role, RoleResources.unreserved(Resources.from_dict(task_row["resources"]))


class Scheduling:
    def __init__(self, master: "Master") -> None:
        self.master = master
        self.alloc: Allocator | None = None
        self.clients: dict[str, FrameworkClient] = {}
        self.builtins: list[Any] = []  # built-in frameworks: attach(scheduling) on every leadership
        self._wake = asyncio.Event()
        self._charged: dict[str, tuple[str, str, str, RoleResources]] = {}  # task -> agent, fw, role, res
        self._exec_charged: dict[tuple[str, str, str], tuple[str, RoleResources]] = {}  # fw, exec, agent
        self._removed: set[str] = set()  # torn down, waiting for their tasks to end
        self._last_sync = 0.0
        self._leader_wall = time.time()
        self.cycles = 0
        self.offers_sent = 0

    # -- leadership ----------------------------------------------------------------
    async def run(self) -> None:
        store = self.master.store
        self._leader_wall = time.time()
        self._build()
        store.listeners.append(self._on_commit)
        for b in self.builtins:
            b.attach(self)
        try:
            loop = asyncio.get_running_loop()
            while True:
                if not self._wake.is_set():
                    # A timer that sets the event, not wait_for(): this wakes on every submitted task,
                    # and wait_for() wraps each wait in a Task of its own.
                    timer = loop.call_later(ALLOCATION_INTERVAL, self._wake.set)
                    try:
                        await self._wake.wait()
                    finally:
                        timer.cancel()
                self._wake.clear()
                try:
                    await self.cycle()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("allocation cycle failed; retrying next cycle")
        finally:
            if self._on_commit in store.listeners:
                store.listeners.remove(self._on_commit)
            for b in self.builtins:
                b.detach()
            for c in list(self.clients.values()):
                close = getattr(c, "close", None)
                if close is not None:
                    close()
            self.clients.clear()
            self.alloc = None

    def wake(self) -> None:
        self._wake.set()

    def _build(self) -> None:
        """A fresh allocator over the committed state (tasks, executors, reservations, roles)."""
        store = self.master.store
        cfg = AllocatorConfig(offer_timeout=self.master.config.offer_timeout,
                              offer_id_prefix=f"{self.master.term}-{uuidlib.uuid4().hex[:8]}")
        alloc = Allocator(cfg)
        for role, w in store.query("SELECT role, weight FROM role_weights"):
            alloc.set_weight(role, w)
        for role, limits in store.query("SELECT role, limits FROM role_quotas"):
            alloc.set_quota(role, json.loads(limits))
        removed = set()
        for fid, roles, info, removed_at in store.query("SELECT id, roles, info, removed_at FROM frameworks"):
            if removed_at is not None:
                removed.add(fid)
                continue
            caps = [c.get("type") for c in json.loads(info).get("capabilities", []) if isinstance(c, dict)]
            alloc.add_framework(fid, json.loads(roles), capabilities=[c for c in caps if c], active=False)
        dynamic: dict[str, dict[str, Resources]] = {}
        for agent_id, role, res in store.query("SELECT agent_id, role, resources FROM reservations"):
            dynamic.setdefault(agent_id, {})[role] = Resources.from_dict(json.loads(res))
        used: dict[str, list[tuple[str, str, RoleResources]]] = {}
        self._charged.clear()
        self._exec_charged.clear()
        for t in store.query(f"SELECT id, agent_id, framework_id, role, alloc, resources FROM tasks"
                             f" WHERE agent_id IS NOT NULL AND state IN ({_LIVE_SQL})", _LIVE):
            tid, agent_id, fid, role, a, res = t
            role, rr = _alloc_of({"role": role, "alloc": json.loads(a) if a else None,
                                  "resources": json.loads(res)})
            used.setdefault(agent_id, []).append((fid, role, rr))
            self._charged[tid] = (agent_id, fid, role, rr)
        for fid, eid, agent_id, role, a in store.query(
                "SELECT framework_id, executor_id, agent_id, role, alloc FROM executors"):
            rr = RoleResources.from_dict(json.loads(a))
            used.setdefault(agent_id, []).append((fid, role, rr))
            self._exec_charged[(fid, eid, agent_id)] = (role, rr)
        sessions = self.master.agents.sessions
        drained = {r[0] for r in store.query("SELECT agent_id FROM node_maintenance")}
        for a in views.agents(store):
            try:
                alloc.add_agent(a["id"], Resources.from_dict(a["resources"]), hostname=a["hostname"],
                                attributes=a["attributes"],
                                dynamic=RoleResources(dynamic.get(a["id"], {})) if a["id"] in dynamic else None,
                                used=used.get(a["id"], []),
                                active=a["state"] == "ACTIVE" and a["id"] in sessions and a["id"] not in drained)
            except AllocatorError as exc:
                log.error("agent %s left out of allocation: %s", a["id"], exc)
        self._removed = {fid for fid in removed if any(c[1] == fid for c in self._charged.values())}
        self.alloc = alloc
        log.info("allocator built: %d agents, %d frameworks, %d live tasks", len(alloc.agent_ids()),
                 len(alloc.framework_ids()), len(self._charged))

    # -- framework registry --------------------------------------------------------
    def connect(self, client: FrameworkClient, roles: Sequence[str], capabilities: Sequence[str] = (),
                suppressed_roles: Sequence[str] = ()) -> None:
        """A framework subscribed (or a built-in attached): it gets offers from now on."""
        alloc = self._require()
        fid = client.framework_id
        old = self.clients.get(fid)
        if old is not None and old is not client:
            close = getattr(old, "close", None)
            if close is not None:
                close()
        self.clients[fid] = client
        if fid in alloc.framework_ids():
            self._rescind(alloc.update_framework(fid, roles, capabilities))
        alloc.add_framework(fid, roles, capabilities=capabilities, active=True, suppressed_roles=suppressed_roles)
        self.wake()

    def disconnect(self, client: FrameworkClient) -> None:
        fid = client.framework_id
        if self.clients.get(fid) is client:
            del self.clients[fid]
            if self.alloc is not None and fid in self.alloc.framework_ids():
                self.alloc.deactivate_framework(fid)  # its offers are void; nobody to tell
                self.wake()

    def _require(self) -> Allocator:
        if self.alloc is None:
            from dcosd.errors import NotLeader

            raise NotLeader("the allocator is not running on this master")
        return self.alloc

    # -- the cycle -----------------------------------------------------------------
    async def cycle(self) -> None:
        alloc = self._require()
        now = time.monotonic()
        if time.time() - self._last_sync > SYNC_INTERVAL:
            self._last_sync = time.time()
            self._sync_ended()
            await self._expire_failovers()
        self._rescind(alloc.rescind_expired(now))
        offers = alloc.allocate(now)
        self.cycles += 1
        by_fw: dict[str, list[Offer]] = {}
        for o in offers:
            by_fw.setdefault(o.framework_id, []).append(o)
        for fid, lst in by_fw.items():
            client = self.clients.get(fid)
            if client is None:
                alloc.decline(fid, [o.offer_id for o in lst], now, 0.0)
                continue
            self.offers_sent += len(lst)
            try:
                client.offers(lst)
            except Exception:
                log.exception("framework %s could not take its offers", fid)
                alloc.decline(fid, [o.offer_id for o in lst], now, 0.0)
        for b in self.builtins:
            b.after_cycle()

    def _rescind(self, offers: Sequence[Offer]) -> None:
        for o in offers:
            c = self.clients.get(o.framework_id)
            if c is not None:
                c.rescind(o)

    # -- answers from frameworks ---------------------------------------------------
    def offer_agent(self, framework_id: str, offer_ids: Sequence[str]) -> str | None:
        alloc = self._require()
        mine = {o.offer_id: o for o in alloc.offers(framework_id)} if framework_id in alloc.framework_ids() else {}
        for oid in offer_ids:
            if oid in mine:
                return mine[oid].agent_id
        return None

    async def accept(self, framework_id: str, offer_ids: Sequence[str], operations: Sequence[Operation],
                     refuse_seconds: float | None, commit: Committer | None = None) -> AcceptOutcome:
        """ACCEPT: allocator first (atomic), then commit, then launch on the agent."""
        alloc = self._require()
        if framework_id not in alloc.framework_ids():
            return AcceptOutcome(False, error=AcceptError.UNKNOWN_OFFER, message="framework holds no offers")
        agent_id = self.offer_agent(framework_id, offer_ids)
        ops: list[Any] = []
        plan: list[tuple[str, Any]] = []  # ("task", PlannedTask) | ("executor", PlannedTask) | ("other", None)
        new_execs: set[str] = set()
        for op in operations:
            if op.kind == "launch":
                for t in op.tasks:
                    if t.executor_id and agent_id is not None and \
                            (framework_id, t.executor_id, agent_id) not in self._exec_charged and \
                            t.executor_id not in new_execs:
                        new_execs.add(t.executor_id)
                        if t.executor_resources is not None and not t.executor_resources.is_empty():
                            ops.append(Launch(t.executor_resources))
                            plan.append(("executor", t))
                    ops.append(Launch(t.resources, task_id=t.spec["task_id"]))
                    plan.append(("task", t))
            elif op.kind == "reserve":
                ops.append(Reserve(op.resources or Resources()))
                plan.append(("other", None))
            elif op.kind == "unreserve":
                ops.append(Unreserve(op.resources or Resources()))
                plan.append(("other", None))
        result = alloc.accept(framework_id, list(offer_ids), ops, time.monotonic(), refuse_seconds)
        if not result.ok:
            self.wake()
            return AcceptOutcome(False, agent_id=result.agent_id, error=result.error, message=result.message)
        agent_id = result.agent_id
        assert agent_id is not None
        launched_iter = iter(result.launched)
        tasks: list[tuple[PlannedTask, str, RoleResources]] = []
        execs: list[tuple[PlannedTask, str, RoleResources]] = []
        for kind, t in plan:
            if kind == "other":
                continue
            role, drawn = next(launched_iter)
            (tasks if kind == "task" else execs).append((t, role, drawn))
        for t, role, drawn in tasks:
            self._charged[t.spec["task_id"]] = (agent_id, framework_id, role, drawn)
        for t, role, drawn in execs:
            self._exec_charged[(framework_id, t.executor_id or "", agent_id)] = (role, drawn)
        if result.returned and not result.returned.is_empty():
            self.wake()
        try:
            if commit is not None:
                ok_ids = await commit(framework_id, agent_id, tasks)
            else:
                ok_ids = await self._commit_launch(framework_id, agent_id, tasks, execs,
                                                   result.reserved, result.unreserved)
        except Exception as exc:  # noqa: BLE001 — nothing committed: give everything back
            log.warning("launch on %s for %s not committed: %s", agent_id, framework_id, exc)
            ok_ids = []
            for t, role, drawn in execs:
                self._uncharge_executor(framework_id, t.executor_id or "", agent_id)
            msg = str(exc)
        else:
            msg = ""
        for t, role, drawn in tasks:
            if t.spec["task_id"] not in ok_ids:
                self._uncharge(t.spec["task_id"])
        if not ok_ids and tasks:
            return AcceptOutcome(False, agent_id=agent_id, error=AcceptError.INVALID_OPERATION,
                                 message=msg or "the launch could not be recorded")
        if commit is None:
            for t, _, _ in tasks:
                if t.spec["task_id"] in ok_ids:
                    row = views.task(self.master.store, t.spec["task_id"], history=False)
                    if row is not None and row["state"] == TaskState.STAGING.value:
                        self.master.agents.launch(row)
        return AcceptOutcome(True, agent_id=agent_id, launched=ok_ids)

    async def record_and_launch(self, agent_id: str, commands: list[tuple[str, dict[str, Any]]]) -> list[str]:
        """For built-in frameworks: commit one command per (task id, command) placing that task on
        ``agent_id``, then send the agent a launch for each task now STAGING — only after its command is
        committed. Returns the ids whose command committed."""
        outcomes = await asyncio.gather(*(self.master.store.propose(cmd) for _, cmd in commands),
                                        return_exceptions=True)
        ok = []
        for (tid, cmd), outcome in zip(commands, outcomes):
            if isinstance(outcome, BaseException):
                log.warning("%s of %s on %s not recorded: %s", cmd["type"], tid, agent_id, outcome)
                continue
            ok.append(tid)
            row = views.task(self.master.store, tid, history=False)
            if row is not None and row["state"] == TaskState.STAGING.value:
                self.master.agents.launch(row)
        return ok

    async def _commit_launch(self, fid: str, agent_id: str, tasks: list[tuple[PlannedTask, str, RoleResources]],
                             execs: list[tuple[PlannedTask, str, RoleResources]],
                             reserved: Sequence[tuple[str, Resources]],
                             unreserved: Sequence[tuple[str, Resources]]) -> list[str]:
        cmd = {
            "type": "framework_launch", "time": time.time(), "uuid": new_uuid(), "framework_id": fid,
            "agent_id": agent_id,
            "tasks": [{"spec": t.spec, "resources": drawn.flatten().to_dict(), "role": role,
                       "alloc": drawn.to_dict()} for t, role, drawn in tasks],
            "executors": [{"executor_id": t.executor_id, "role": role, "alloc": drawn.to_dict(),
                           "info": t.executor_info or {}} for t, role, drawn in execs],
            "reserved": [{"role": r, "resources": res.to_dict()} for r, res in reserved],
            "unreserved": [{"role": r, "resources": res.to_dict()} for r, res in unreserved],
        }
        await self.master.store.propose(cmd)
        return [t.spec["task_id"] for t, _, _ in tasks]

    def decline(self, framework_id: str, offer_ids: Sequence[str], refuse_seconds: float | None) -> None:
        alloc = self._require()
        if framework_id in alloc.framework_ids():
            alloc.decline(framework_id, list(offer_ids), time.monotonic(), refuse_seconds)
            self.wake()

    def revive(self, framework_id: str, roles: Sequence[str] | None = None) -> None:
        alloc = self._require()
        if framework_id in alloc.framework_ids():
            alloc.revive(framework_id, roles or None)
            self.wake()

    def suppress(self, framework_id: str, roles: Sequence[str] | None = None) -> None:
        alloc = self._require()
        if framework_id in alloc.framework_ids():
            alloc.suppress(framework_id, roles or None)

    async def kill(self, task_id: str) -> dict[str, Any]:
        """Kill a task (queued or launched): committed first, then the agent is told."""
        result = await self.master.store.propose({"type": "task_kill", "task_id": task_id, "time": time.time(),
                                                  "uuid": new_uuid()})
        if result["agent_id"] and not TaskState(result["state"]).terminal:
            t = views.task(self.master.store, task_id, history=False)
            grace = t["spec"].get("kill_grace_seconds", 3.0) if t else 3.0
            self.master.agents.send(result["agent_id"], {"type": "kill", "task_id": task_id, "grace": grace})
        return result

    async def teardown(self, framework_id: str) -> None:
        """The framework is removed: its offers rescinded, its tasks killed; resources return as they end."""
        kills = await self.master.store.propose({"type": "framework_remove", "framework_id": framework_id,
                                                 "time": time.time(), "uuid": new_uuid()})
        for k in kills:
            if k["agent_id"]:
                self.master.agents.send(k["agent_id"], {"type": "kill", "task_id": k["task_id"],
                                                        "grace": k["grace"]})
        client = self.clients.pop(framework_id, None)
        if client is not None:
            close = getattr(client, "close", None)
            if close is not None:
                close("Framework has been removed")
        if self.alloc is not None and framework_id in self.alloc.framework_ids():
            self.alloc.deactivate_framework(framework_id)
            self._removed.add(framework_id)
            self._forget_removed()
        log.info("framework %s torn down; %d task(s) to kill", framework_id, len(kills))

    # -- roles ---------------------------------------------------------------------
    def set_weight(self, role: str, weight: float) -> None:
        if self.alloc is not None:
            self.alloc.set_weight(role, weight)

    def set_quota(self, role: str, limits: dict[str, float] | None) -> None:
        if self.alloc is not None:
            self.alloc.set_quota(role, limits)
            self.wake()

    # -- committed changes -----------------------------------------------------------
    def _on_commit(self, command: dict[str, Any], result: Any) -> None:
        alloc = self.alloc
        if alloc is None:
            return
        kind = command["type"]
        try:
            if kind == "agent_register":
                self._agent_registered(command["agent"])
            elif kind == "agent_unreachable":
                if command["agent_id"] in alloc.agent_ids():
                    self._rescind(alloc.deactivate_agent(command["agent_id"]))
            elif kind == "node_drain":
                if command["agent_id"] in alloc.agent_ids():
                    self._rescind(alloc.deactivate_agent(command["agent_id"]))
            elif kind == "node_undrain":
                if command["agent_id"] in alloc.agent_ids() and command["agent_id"] in self.master.agents.sessions:
                    alloc.activate_agent(command["agent_id"])
                    self.wake()
            elif kind == "agent_lost":
                for c in self.clients.values():
                    c.failure(command["agent_id"])
            elif kind == "role_weights":
                for role, w in command["weights"].items():
                    alloc.set_weight(role, w)
            elif kind == "role_quota":
                alloc.set_quota(command["role"], command.get("limits") or None)
                self.wake()
        except AllocatorError as exc:
            log.error("allocator refused %s: %s", kind, exc)
        if kind in _TASK_COMMANDS or kind == "task_kill":
            ids = result.get("applied", []) if isinstance(result, dict) else result
            if kind == "task_kill":
                ids = [result["task_id"]] if isinstance(result, dict) else []
            if isinstance(ids, list) and ids:
                self._check_ended(ids)
            for c in self.clients.values():
                c.updates_pending()

    def _agent_registered(self, a: dict[str, Any]) -> None:
        alloc = self.alloc
        assert alloc is not None
        res = Resources.from_dict(a["resources"])
        if a["id"] in alloc.agent_ids():
            if alloc.total(a["id"]).flatten() != res:
                self._rescind(alloc.update_agent(a["id"], res, hostname=a["hostname"],
                                                 attributes=a.get("attributes", {})))
            if not self.master.store.query("SELECT 1 FROM node_maintenance WHERE agent_id = ?", (a["id"],)):
                alloc.activate_agent(a["id"])  # a drained node stays out of offers when it comes back
        else:
            alloc.add_agent(a["id"], res, hostname=a["hostname"], attributes=a.get("attributes", {}))
        self.wake()

    def _check_ended(self, task_ids: Sequence[str]) -> None:
        charged = [t for t in task_ids if t in self._charged]
        if not charged:
            return
        marks = ",".join("?" * len(charged))
        live = {r[0] for r in self.master.store.query(
            f"SELECT id FROM tasks WHERE id IN ({marks}) AND state IN ({_LIVE_SQL})", (*charged, *_LIVE))}
        ended = [t for t in charged if t not in live]
        for t in ended:
            self._uncharge(t)
        if ended:
            self._executors_idle()
            self._forget_removed()
            self.wake()

    def _sync_ended(self) -> None:
        """Safety net: anything charged that is no longer live in committed state is given back."""
        live = {r[0] for r in self.master.store.query(f"SELECT id FROM tasks WHERE state IN ({_LIVE_SQL})", _LIVE)}
        ended = [t for t in self._charged if t not in live]
        for t in ended:
            self._uncharge(t)
        self._executors_idle()
        self._forget_removed()

    def _uncharge(self, task_id: str) -> None:
        c = self._charged.pop(task_id, None)
        if c is None or self.alloc is None:
            return
        agent_id, fid, role, rr = c
        try:
            self.alloc.recover(agent_id, fid, role, rr)
        except AllocatorError as exc:
            log.error("cannot return the resources of %s: %s", task_id, exc)

    def _uncharge_executor(self, fid: str, eid: str, agent_id: str) -> None:
        c = self._exec_charged.pop((fid, eid, agent_id), None)
        if c is None or self.alloc is None:
            return
        try:
            self.alloc.recover(agent_id, fid, c[0], c[1])
        except AllocatorError as exc:
            log.error("cannot return the resources of executor %s: %s", eid, exc)

    def _executors_idle(self) -> None:
        """An executor with no live task left ends (the agent shuts it down): its resources return."""
        if not self._exec_charged:
            return
        busy = {(r[0], r[1], r[2]) for r in self.master.store.query(
            f"SELECT framework_id, executor_id, agent_id FROM tasks WHERE executor_id IS NOT NULL"
            f" AND state IN ({_LIVE_SQL})", _LIVE)}
        for key in [k for k in self._exec_charged if k not in busy]:
            self._uncharge_executor(*key)
            asyncio.get_running_loop().create_task(self._propose_quietly(
                {"type": "executor_remove", "framework_id": key[0], "executor_id": key[1], "agent_id": key[2]}))

    async def _propose_quietly(self, cmd: dict[str, Any]) -> None:
        try:
            await self.master.store.propose(cmd)
        except Exception as exc:  # noqa: BLE001 — the next leader rebuilds from what is committed
            log.warning("%s not committed: %s", cmd["type"], exc)

    def _forget_removed(self) -> None:
        if self.alloc is None:
            return
        holding = {c[1] for c in self._charged.values()} | {k[0] for k in self._exec_charged}
        for fid in [f for f in self._removed if f not in holding]:
            self._removed.discard(fid)
            if fid in self.alloc.framework_ids():
                try:
                    self.alloc.remove_framework(fid)
                except AllocatorError as exc:
                    log.error("cannot remove framework %s from the allocator: %s", fid, exc)

    async def _expire_failovers(self) -> None:
        """Frameworks disconnected for longer than their failover_timeout are torn down."""
        now = time.time()
        for fid, timeout, disconnected_at, active in self.master.store.query(
                "SELECT id, failover_timeout, disconnected_at, active FROM frameworks WHERE removed_at IS NULL"):
            if fid in self.clients:
                continue
            since = max(disconnected_at or 0.0, self._leader_wall) if not active else self._leader_wall
            if now - since > timeout:
                log.warning("framework %s did not re-subscribe within its failover timeout (%gs): tearing it down",
                            fid, timeout)
                try:
                    await self.teardown(fid)
                except Exception as exc:  # noqa: BLE001
                    log.warning("teardown of %s failed: %s", fid, exc)

    def check_failovers_soon(self) -> None:
        self._last_sync = 0.0
        self.wake()

    # -- introspection (operator API, node show) ---------------------------------------
    def agent_view(self, agent_id: str) -> dict[str, Any] | None:
        alloc = self.alloc
        if alloc is None or agent_id not in alloc.agent_ids():
            return None
        offered = Resources()
        for o in alloc.offers():
            if o.agent_id == agent_id:
                offered = offered + o.resources.flatten()
        used = Resources()
        for rr in alloc.used(agent_id).values():
            used = used + rr.flatten()
        total = alloc.total(agent_id)
        reserved = {role: r.to_dict() for role, r in total.items() if role != "*"}
        return {"offered": offered.to_dict(), "allocated": used.to_dict(), "reserved": reserved,
                "available": alloc.available(agent_id).flatten().to_dict()}

    def role_view(self) -> list[dict[str, Any]]:
        alloc = self.alloc
        if alloc is None:
            return []
        weights = alloc.weights()
        quotas = alloc.quotas()
        out = []
        for role in sorted(set(alloc.role_order()) | set(weights) | set(quotas)):
            out.append({"name": role, "weight": weights.get(role, 1.0), "quota": quotas.get(role, {}),
                        "share": round(alloc.role_share(role), 6), "consumed": alloc.consumption(role)})
        return out
