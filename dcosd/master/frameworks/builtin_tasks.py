"""The built-in framework behind dcosd's own task API (`dcosd run`, POST /dcosd/v1/tasks).

Submitted tasks wait in the ``queue`` table. This framework takes offers like
any other (role ``*``, framework id ``dcosd-tasks``): it packs queued tasks,
oldest first, into each offer (first fit), ACCEPTs them through
``Scheduling.accept`` — committed as ``task_place``, which moves a task from
the queue to TASK_STAGING on the offer's agent — and declines what it cannot
use. It suppresses offers while its queue is empty and revives when a task is
submitted. After every cycle it tells each task still queued why it waits
(``dcosd task show``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from dcosd.master.allocator import Offer, RoleResources
from dcosd.master.frameworks.scheduling import Operation, PlannedTask
from dcosd.master.placement import AgentView, PendingTask, _why_waiting
from dcosd.master.state import views
from dcosd.model.ids import BUILTIN_TASKS_FRAMEWORK, new_uuid
from dcosd.model.resources import Resources

if TYPE_CHECKING:
    from dcosd.master.frameworks.scheduling import Scheduling

log = logging.getLogger(__name__)

ROLE = "*"
# Leftovers of an offer are not offered back to this framework for this long, unless more
# becomes free there or a task is submitted (which revives).
REFUSE_SECONDS = 2.0
# Why tasks wait is written at most this often: a burst of submits then costs one replicated write,
# not one per submit (the first version doubled the writes of a steady trickle of submits).
REASONS_EVERY = 0.25


class BuiltinTasks:
    framework_id = BUILTIN_TASKS_FRAMEWORK

    def __init__(self) -> None:
        self.scheduling: "Scheduling | None" = None
        self._inflight: set[str] = set()
        self._reasons_due = True
        # Agents changed: every queued task's reason may have changed, not only new tasks'.
        self._reasons_all = True
        self._reasons_timer: asyncio.TimerHandle | None = None

    # -- attachment (every leadership) ----------------------------------------------
    def attach(self, scheduling: "Scheduling") -> None:
        self.scheduling = scheduling
        self._inflight.clear()
        scheduling.connect(self, [ROLE])
        self._wanted()
        scheduling.master.store.listeners.append(self._on_commit)

    def detach(self) -> None:
        if self._reasons_timer is not None:
            self._reasons_timer.cancel()
            self._reasons_timer = None
        s = self.scheduling
        if s is not None and self._on_commit in s.master.store.listeners:
            s.master.store.listeners.remove(self._on_commit)
        self.scheduling = None

    def _queue(self) -> list[dict[str, Any]]:
        assert self.scheduling is not None
        return views.queued_tasks(self.scheduling.master.store)

    def _wanted(self) -> None:
        s = self.scheduling
        if s is None:
            return
        # Runs on every submit and kill: an existence check, never a read of the whole queue.
        if not views.queue_is_empty(s.master.store):
            s.revive(self.framework_id)
        else:
            s.suppress(self.framework_id)

    def _on_commit(self, command: dict[str, Any], result: Any) -> None:
        if command["type"] == "task_submit" and self.scheduling is not None:
            self._reasons_due = True
            self.scheduling.revive(self.framework_id)  # the queue holds this task now: no need to look
        elif command["type"] == "task_kill" and self.scheduling is not None:
            self._reasons_due = True
            self._wanted()
        elif command["type"] in ("agent_register", "agent_unreachable", "agent_lost"):
            self._reasons_due = self._reasons_all = True

    # -- FrameworkClient -------------------------------------------------------------
    def offers(self, offers: list[Offer]) -> None:
        asyncio.get_running_loop().create_task(self._take(offers))

    def rescind(self, offer: Offer) -> None:
        pass  # offers are answered within the cycle that made them

    def updates_pending(self) -> None:
        pass  # the task API reads committed state directly

    def failure(self, agent_id: str) -> None:
        pass

    # -- packing -----------------------------------------------------------------------
    async def _take(self, offers: list[Offer]) -> None:
        s = self.scheduling
        if s is None:
            return
        queued = [q for q in self._queue() if q["id"] not in self._inflight]
        for offer in offers:
            free = offer.resources.flatten()
            picked: list[PlannedTask] = []
            for q in queued:
                need = Resources.from_dict(q["spec"]["resources"])
                if free.contains(need):
                    free = free - need
                    picked.append(PlannedTask(spec=q["spec"], resources=need))
            if not picked:
                s.decline(self.framework_id, [offer.offer_id], REFUSE_SECONDS)
                continue
            ids = {p.spec["task_id"] for p in picked}
            queued = [q for q in queued if q["id"] not in ids]
            self._inflight |= ids
            try:
                outcome = await s.accept(self.framework_id, [offer.offer_id], [Operation("launch", picked)],
                                         REFUSE_SECONDS, commit=self._commit)
                if not outcome.ok:
                    log.info("placing %d task(s) on %s refused: %s", len(picked), offer.agent_id, outcome.message)
            except Exception:
                log.exception("placing tasks on %s failed", offer.agent_id)
            finally:
                self._inflight -= ids
        self._reasons_due = self._reasons_all = True
        if views.queue_is_empty(s.master.store):
            s.suppress(self.framework_id)

    async def _commit(self, framework_id: str, agent_id: str,
                      tasks: list[tuple[PlannedTask, str, RoleResources]]) -> list[str]:
        s = self.scheduling
        assert s is not None
        now = time.time()
        return await s.record_and_launch(agent_id, [
            (t.spec["task_id"], {"type": "task_place", "task_id": t.spec["task_id"], "agent_id": agent_id,
                                 "resources": drawn.flatten().to_dict(), "time": now, "uuid": new_uuid()})
            for t, _, drawn in tasks])

    # -- why tasks wait ------------------------------------------------------------------
    def after_cycle(self) -> None:
        if not self._reasons_due or self.scheduling is None or self._reasons_timer is not None:
            return
        self._reasons_timer = asyncio.get_running_loop().call_later(REASONS_EVERY, self._reasons_now)

    def _reasons_now(self) -> None:
        self._reasons_timer = None
        if self.scheduling is None:
            return
        self._reasons_due = False
        asyncio.get_running_loop().create_task(self._update_reasons())

    async def _update_reasons(self) -> None:
        s = self.scheduling
        if s is None or s.alloc is None:
            return
        # New tasks only, unless agents or free resources changed since the last reasons were written.
        everything, self._reasons_all = self._reasons_all, False
        store = s.master.store
        queued = [q for q in views.queued_tasks(store, without_reason=not everything) if q["id"] not in self._inflight]
        if not queued:
            return
        sessions = s.master.agents.sessions
        agents = []
        for a in views.agents(s.master.store):
            if a["state"] != "ACTIVE" or a["id"] not in sessions or a["id"] not in s.alloc.agent_ids():
                continue
            total = Resources.from_dict(a["resources"])
            agents.append(AgentView(a["id"], a["hostname"], total, s.alloc.available(a["id"]).flatten()))
        changed = {}
        for q in queued:
            why = _why_waiting(PendingTask(q["id"], Resources.from_dict(q["spec"]["resources"])), agents)
            if q["pending_reason"] != why:
                changed[q["id"]] = why
        if changed:
            try:
                await s.master.store.propose({"type": "task_pending_reason", "reasons": changed})
            except Exception as exc:  # noqa: BLE001
                log.warning("pending reasons not recorded: %s", exc)
