"""The built-in job framework on the leader: fires schedules, launches runs from offers, watches them.

Framework id ``metronome``, role ``*``. Like the task queue's framework
(frameworks/builtin_tasks.py) it is attached by ``Scheduling.run`` on every
leadership (which ``Master.become_leader`` starts) and detached on step-down;
it takes offers through ``Scheduling.accept`` with its own commit —
``job_run_launch``, which records the task in TASK_STAGING and the run's
attempt in one command — and the agent is told only after that committed.

Its leader loop ticks on the job clock (clock.py) and, for each tick, reads
committed state and proposes what follows from it:

- due schedules → ``job_schedule_fire`` (start a run, or record a skip), the next fire time computed
  by the pure cron module;
- a waiting run past maxLaunchDelay → ``job_run_stop`` (LAUNCH_DEADLINE);
- a launched run past activeDeadlineSeconds → ``job_run_stop`` (ACTIVE_DEADLINE), then its task is killed;
- a run whose task is terminal → ``job_run_task_ended`` (the handler decides retry/success/failure).

Everything it proposes is idempotent or guarded (expected next-fire time, expected attempt, expected
task), so a loop that runs twice — or a new leader redoing the last tick — changes nothing twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import string
import time
from typing import TYPE_CHECKING, Any

from dcosd.errors import DcosdError
from dcosd.master.allocator import Offer, RoleResources
from dcosd.master.frameworks.scheduling import Operation, PlannedTask
from dcosd.master.jobs import cron, spec as jobspec
from dcosd.master.jobs import views
from dcosd.master.jobs.clock import Clock, from_env
from dcosd.master.jobs.runs import (
    RunStatus, StopReason, decide_fires, past_active_deadline, past_launch_deadline,
)
from dcosd.model.ids import new_uuid
from dcosd.model.states import TaskState

if TYPE_CHECKING:
    from dcosd.master.frameworks.scheduling import Scheduling
    from dcosd.master.service import Master

log = logging.getLogger(__name__)

ROLE = "*"
REFUSE_SECONDS = 2.0
_RUN_ID_CHARS = string.ascii_lowercase + string.digits
# Fire times enumerated per schedule per tick after a long pause; older ones than these are MISSED anyway.
_MAX_DUE = 1000


def new_run_id(now: float) -> str:
    """Metronome-style: the UTC time of creation and five random characters (20240615030000abcde)."""
    stamp = dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y%m%d%H%M%S")
    return stamp + "".join(secrets.choice(_RUN_ID_CHARS) for _ in range(5))


def next_fire_after(schedule: dict[str, Any], now: float) -> float | None:
    return cron.next_fire(schedule["cron"], schedule["timezone"], now)


class JobFramework:
    framework_id = jobspec.FRAMEWORK_ID

    def __init__(self, master: "Master", clock: Clock | None = None) -> None:
        self.master = master
        self.clock = clock or from_env()
        self.scheduling: "Scheduling | None" = None
        self._inflight: set[str] = set()  # run ids being launched
        self._loop: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self.ticks = 0

    # -- attachment (every leadership) ----------------------------------------------
    def attach(self, scheduling: "Scheduling") -> None:
        self.scheduling = scheduling
        self._inflight.clear()
        scheduling.connect(self, [ROLE])
        scheduling.master.store.listeners.append(self._on_commit)
        self._loop = asyncio.get_running_loop().create_task(self._run(), name="jobs")
        self._wanted()

    def detach(self) -> None:
        s = self.scheduling
        if s is not None and self._on_commit in s.master.store.listeners:
            s.master.store.listeners.remove(self._on_commit)
        if self._loop is not None:
            self._loop.cancel()
            self._loop = None
        self.scheduling = None

    def wake(self) -> None:
        self._wake.set()

    def _on_commit(self, command: dict[str, Any], result: Any) -> None:
        kind = command["type"]
        if kind in ("job_run_start", "job_schedule_fire", "job_run_task_ended", "job_run_stop", "job_remove"):
            self._wanted()
        if kind in ("task_status", "task_master_status", "agent_lost", "task_kill", "job_run_stop"):
            self.wake()

    def _waiting(self) -> list[dict[str, Any]]:
        return [r for r in views.unfinished_runs(self.master.store)
                if r["status"] == RunStatus.INITIAL.value and r["id"] not in self._inflight]

    def _wanted(self) -> None:
        s = self.scheduling
        if s is None:
            return
        if self._waiting():
            s.revive(self.framework_id)
        else:
            s.suppress(self.framework_id)

    # -- the leader loop -------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.clock.tick)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job loop tick failed; retrying next tick")

    async def tick(self) -> None:
        now = self.clock.now()
        self.ticks += 1
        await self._fire_schedules(now)
        await self._watch_runs(now)
        self._wanted()

    async def _fire_schedules(self, now: float) -> None:
        store = self.master.store
        for job_id, sid, sched, expected in views.due_schedules(store, now):
            due = [expected] + cron.fires_between(sched["cron"], sched["timezone"], expected, now, limit=_MAX_DUE)
            fires = decide_fires(due, now, sched["startingDeadlineSeconds"], sched["concurrencyPolicy"],
                                 views.active_run_count(store, job_id))
            nxt = next_fire_after(sched, max(now, due[-1]))
            try:
                result = await store.propose({
                    "type": "job_schedule_fire", "job_id": job_id, "schedule_id": sid, "expected_next": expected,
                    "next_fire_at": nxt, "fires": [{"due_at": f.due_at, "action": f.action.value} for f in fires],
                    "run_id": new_run_id(now), "time": now})
            except DcosdError as exc:
                log.info("schedule %s/%s not fired: %s", job_id, sid, exc)
                continue
            log.info("schedule %s/%s fired for %s: %s", job_id, sid, views.iso(due[-1]),
                     f"run {result['run_id']}" if result["run_id"] else fires[-1].action.value)

    async def _watch_runs(self, now: float) -> None:
        for r in views.unfinished_runs(self.master.store):
            spec = r["spec"]
            if r["status"] == RunStatus.INITIAL.value:
                if r["id"] not in self._inflight and past_launch_deadline(r["waiting_since"], spec["maxLaunchDelay"], now):
                    await self._stop(r["id"], StopReason.LAUNCH_DEADLINE, now)
                continue
            state = r["task_state"]
            if state is not None and TaskState(state).terminal:
                await self._propose({"type": "job_run_task_ended", "run_id": r["id"], "task_id": r["task_id"],
                                     "time": now})
            elif r["stop_reason"] is None and past_active_deadline(r["started_at"], spec.get("activeDeadlineSeconds"),
                                                                   now):
                log.info("run %s of %s exceeded its active deadline (%gs): killing %s", r["id"], r["job_id"],
                         spec["activeDeadlineSeconds"], r["task_id"])
                await self._stop(r["id"], StopReason.ACTIVE_DEADLINE, now)
            elif r["stop_reason"] is not None and not r["kill_requested"] and r["task_id"]:
                await self._kill(r["task_id"])  # stop committed, kill not (leader changed in between)

    async def _propose(self, cmd: dict[str, Any]) -> Any:
        try:
            return await self.master.store.propose(cmd)
        except DcosdError as exc:
            log.info("%s for run %s not applied: %s", cmd["type"], cmd.get("run_id"), exc)
            return None

    async def _stop(self, run_id: str, reason: StopReason, now: float) -> Any:
        result = await self._propose({"type": "job_run_stop", "run_id": run_id, "reason": reason.value, "time": now})
        if result and result.get("kill"):
            await self._kill(result["kill"]["task_id"])
        return result

    async def _kill(self, task_id: str) -> None:
        s = self.scheduling
        if s is None:
            return
        try:
            await s.kill(task_id)
        except DcosdError as exc:
            log.info("kill of %s not done: %s", task_id, exc)

    async def stop_run(self, run_id: str, reason: StopReason = StopReason.STOPPED) -> Any:
        """An operator's stop (API): committed, then the task (if launched) is killed."""
        result = await self.master.store.propose({"type": "job_run_stop", "run_id": run_id, "reason": reason.value,
                                                  "time": self.clock.now()})
        if result.get("kill"):
            await self._kill(result["kill"]["task_id"])
        return result

    async def kill_tasks(self, kills: list[dict[str, Any]]) -> None:
        for k in kills:
            await self._kill(k["task_id"])

    # -- FrameworkClient ---------------------------------------------------------------
    def offers(self, offers: list[Offer]) -> None:
        asyncio.get_running_loop().create_task(self._take(offers))

    def rescind(self, offer: Offer) -> None:
        pass  # offers are answered within the cycle that made them

    def updates_pending(self) -> None:
        pass  # runs read committed task state directly

    def failure(self, agent_id: str) -> None:
        self.wake()

    def after_cycle(self) -> None:
        pass

    async def _take(self, offers: list[Offer]) -> None:
        s = self.scheduling
        if s is None:
            return
        waiting = self._waiting()
        for offer in offers:
            free = offer.resources.flatten()
            picked: list[tuple[dict[str, Any], PlannedTask]] = []
            for r in waiting:
                try:
                    need = jobspec.resources_of(r["spec"])
                    task = jobspec.task_spec(r["job_id"], r["id"], r["attempts"] + 1, r["spec"])
                except DcosdError as exc:
                    log.warning("run %s cannot be launched: %s", r["id"], exc)
                    continue
                if free.contains(need):
                    free = free - need
                    picked.append((r, PlannedTask(spec=task.to_dict(), resources=need)))
            if not picked:
                s.decline(self.framework_id, [offer.offer_id], REFUSE_SECONDS)
                continue
            ids = {r["id"] for r, _ in picked}
            waiting = [r for r in waiting if r["id"] not in ids]
            self._inflight |= ids
            try:
                outcome = await s.accept(self.framework_id, [offer.offer_id], [Operation("launch", [p for _, p in picked])],
                                         REFUSE_SECONDS, commit=self._commit)
                if not outcome.ok:
                    log.info("launching %d job run(s) on %s refused: %s", len(picked), offer.agent_id, outcome.message)
            except Exception:
                log.exception("launching job runs on %s failed", offer.agent_id)
            finally:
                self._inflight -= ids
        self._wanted()

    async def _commit(self, framework_id: str, agent_id: str,
                      tasks: list[tuple[PlannedTask, str, RoleResources]]) -> list[str]:
        s = self.scheduling
        assert s is not None
        now = self.clock.now()
        commands = []
        for t, role, drawn in tasks:
            spec = t.spec
            commands.append((spec["task_id"], {
                "type": "job_run_launch", "run_id": spec["labels"]["job_run_id"],
                "attempt": int(spec["env"]["DCOSD_JOB_ATTEMPT"]), "agent_id": agent_id,
                "task": {"spec": spec, "resources": drawn.flatten().to_dict(), "role": role, "alloc": drawn.to_dict()},
                "time": now, "task_time": time.time(), "uuid": new_uuid()}))
        return await s.record_and_launch(agent_id, commands)
