"""The built-in framework behind dcosd's own task API (`dcosd run`, POST /dcosd/v1/tasks).

Submitted tasks wait in the ``queue`` table. This framework takes offers like
any other (role ``*``, framework id ``dcosd-tasks``): it packs queued tasks,
oldest first, into each offer (first fit), ACCEPTs them through
``Scheduling.accept`` — committed as ``task_place``, which moves a task from
the queue to TASK_STAGING on the offer's agent — and declines what it cannot
use. It suppresses offers while its queue is empty and revives when a task is
submitted. Why a task still waits (``dcosd task show``) is computed when it
is read (state/views.py), from the agents and their live tasks: nothing is
replicated for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from dcosd.master.allocator import Offer, RoleResources
from dcosd.master.frameworks.scheduling import Operation, PlannedTask
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


class BuiltinTasks:
    framework_id = BUILTIN_TASKS_FRAMEWORK

    def __init__(self) -> None:
        self.scheduling: "Scheduling | None" = None
        self._inflight: set[str] = set()

    # -- attachment (every leadership) ----------------------------------------------
    def attach(self, scheduling: "Scheduling") -> None:
        self.scheduling = scheduling
        self._inflight.clear()
        scheduling.connect(self, [ROLE])
        self._wanted()
        scheduling.master.store.listeners.append(self._on_commit)

    def detach(self) -> None:
        s = self.scheduling
        if s is not None and self._on_commit in s.master.store.listeners:
            s.master.store.listeners.remove(self._on_commit)
        self.scheduling = None

    def _queue(self) -> list[dict[str, Any]]:
        assert self.scheduling is not None
        return views.queued_tasks(self.scheduling.master.store, reasons=False)

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
            self.scheduling.revive(self.framework_id)  # the queue holds this task now: no need to look
        elif command["type"] == "task_kill" and self.scheduling is not None:
            self._wanted()

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

    def after_cycle(self) -> None:
        pass  # why tasks wait is computed on read (state/views.py)
