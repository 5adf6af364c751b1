"""The built-in service framework (Marathon's role): keeps every app at its target, runs deployments.

A leader-only object, attached by ``Scheduling`` on every leadership like the
task queue's framework (builtin_tasks.py): framework id ``marathon``, role ``*``.
Its reconcile loop runs after every relevant commit and at least every second:

1. read the committed apps, deployments and the framework's live instances;
2. for each app ask the planner (pure) what to launch and what to kill;
   launches wait out the crash-loop backoff; kills go through Scheduling.kill;
3. advance deployments whose current step has converged (committed steps);
4. revive offers while anything needs launching, suppress otherwise.

Offers are answered by the matcher (pure): resources, host ports and
constraints; accepted through ``Scheduling.accept`` — committed as
``framework_launch`` before any agent hears of it. Everything that decides
what should run is committed state; what is kept only in memory (in-flight
launches, backoff, why instances wait, the last failure) is rebuilt or simply
restarts on a new leader.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid as uuidlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dcosd.master.allocator import Offer
from dcosd.master.frameworks.scheduling import Operation, PlannedTask
from dcosd.master.services import reads
from dcosd.master.services.appdef import discovery_name, fmt_time, task_health_checks
from dcosd.master.services.constraints import Place
from dcosd.master.services.matcher import Need, OfferView, match, waiting_reason
from dcosd.master.services.planner import AppPlan, Instance, backoff_delay, plan_app
from dcosd.model.ids import new_uuid
from dcosd.model.resources import Resources
from dcosd.model.states import TaskState
from dcosd.vips.table import LABEL as VIPS_LABEL, VipError, vips_from_port_definitions

if TYPE_CHECKING:
    from dcosd.master.frameworks.scheduling import Scheduling
    from dcosd.master.services.events import EventBus

log = logging.getLogger(__name__)

FRAMEWORK_ID = reads.FRAMEWORK_ID
ROLE = "*"
REFUSE_SECONDS = 1.0
RECONCILE_INTERVAL = 1.0
COALESCE = 0.02
# A launch that never reached TASK_RUNNING (agent never got it, or died with it) is given up after this.
LAUNCH_TIMEOUT = 60.0
# A task that ran at least this long before failing does not count as a crash loop.
BACKOFF_RESET_AFTER = 60.0
NOTED_KEEP = 10_000  # task ids whose failure was noted (once each), most recent
_RELEVANT = ("task_status", "task_master_status", "task_kill", "agent_unreachable", "agent_lost", "agent_register",
             "app_deploy", "deployment_step", "deployment_finish", "framework_launch", "node_drain", "node_undrain")


@dataclass
class Backoff:
    config_version: str
    failures: int = 0
    last_failure: float = 0.0  # monotonic


def task_spec(app: dict[str, Any], config_version: str, resources: Resources) -> dict[str, Any]:
    app_id = app["id"]
    tid = f"{app_id.strip('/').replace('/', '_')}.{uuidlib.uuid4()}"
    grace = app["taskKillGracePeriodSeconds"]
    spec: dict[str, Any] = {
        "task_id": tid, "name": discovery_name(app_id), "resources": resources.to_dict(),
        "env": {**app["env"], "MARATHON_APP_ID": app_id, "MARATHON_APP_VERSION": config_version,
                "MARATHON_APP_RESOURCE_CPUS": f"{app['cpus']:g}", "MARATHON_APP_RESOURCE_MEM": f"{app['mem']:g}"},
        "kill_grace_seconds": 3.0 if grace is None else float(grace), "framework_id": FRAMEWORK_ID,
        "labels": {**app["labels"], reads.LABEL_APP: app_id, reads.LABEL_VERSION: config_version,
                   "DCOSD_DISCOVERY_NAME": discovery_name(app_id)},
    }
    try:  # VIP_n labels → the i-th host port (validated on submit; an app stored before that has none)
        vips = vips_from_port_definitions(app["portDefinitions"])
    except VipError as exc:
        log.warning("app %s: VIP labels ignored: %s", app_id, exc)
        vips = None
    if vips is not None:
        spec["labels"][VIPS_LABEL] = vips
    if app["cmd"] is not None:
        spec["cmd"] = app["cmd"]
    else:
        spec["argv"] = list(app["args"])
    if app["user"]:
        spec["user"] = app["user"]
    if app["healthChecks"]:
        spec["health_checks"] = task_health_checks(app)
    uris = list(app["uris"]) + [f["uri"] if isinstance(f, dict) else f for f in app["fetch"]]
    if uris:
        spec["uris"] = uris
    return spec


class ServiceFramework:
    framework_id = FRAMEWORK_ID

    def __init__(self, events: "EventBus") -> None:
        self.events = events
        self.scheduling: "Scheduling | None" = None
        self._loop: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._inflight: dict[str, int] = {}
        self._needs: dict[str, int] = {}
        self._delays: dict[str, float] = {}  # app -> monotonic time its next launch is allowed
        self._backoff: dict[str, Backoff] = {}
        self.waiting: dict[str, str] = {}  # app -> why instances wait
        self.last_failure: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, AppPlan] = {}
        self._reasons_at = 0.0
        self._advancing: set[str] = set()
        # Failures are noted once per task: by the commit listener, or by reconcile() when it finds a
        # task gone from the live ones first. The listener runs a loop turn after the commit (the
        # single-master store commits on its writer thread), and a reconcile pass woken in between read
        # the failed task as gone with no backoff noted yet: it relaunched at once, mid crash loop.
        self._noted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._live_seen: set[str] = set()

    # -- attachment (every leadership) ----------------------------------------------
    def attach(self, scheduling: "Scheduling") -> None:
        self.scheduling = scheduling
        self._inflight.clear()
        self._live_seen = set()
        scheduling.connect(self, [ROLE])
        scheduling.master.store.listeners.append(self._on_commit)
        self._loop = asyncio.get_running_loop().create_task(self._run(), name="services-reconcile")

    def detach(self) -> None:
        s = self.scheduling
        if s is not None and self._on_commit in s.master.store.listeners:
            s.master.store.listeners.remove(self._on_commit)
        if self._loop is not None:
            self._loop.cancel()
            self._loop = None
        self.scheduling = None

    @property
    def store(self) -> Any:
        assert self.scheduling is not None
        return self.scheduling.master.store

    def wake(self) -> None:
        self._wake.set()

    def _on_commit(self, command: dict[str, Any], result: Any) -> None:
        kind = command["type"]
        if kind not in _RELEVANT:
            return
        if kind == "task_status" and isinstance(result, dict) and result.get("applied"):
            self._note_failures(result["applied"])
        elif kind in ("task_master_status", "agent_lost") and isinstance(result, list):
            self._note_failures(result)
        self._wake.set()

    def _note_failures(self, task_ids: list[str]) -> None:
        if self.scheduling is None:
            return
        now = time.monotonic()
        apps = None
        for t in reads.tasks_by_id(self.store, task_ids):
            state = TaskState(t.state)
            if not state.terminal or t.kill_requested or t.id in self._noted:
                continue
            self._noted[t.id] = None
            if len(self._noted) > NOTED_KEEP:
                self._noted.popitem(last=False)
            apps = apps if apps is not None else reads.apps(self.store)
            a = apps.get(t.app_id)
            if a is None:
                continue
            b = self._backoff.get(t.app_id)
            if b is None or b.config_version != a.config_version:
                b = self._backoff[t.app_id] = Backoff(a.config_version)
            ran = t.updated_at - t.created_at
            b.failures = 1 if ran >= BACKOFF_RESET_AFTER else b.failures + 1
            b.last_failure = now
            delay = backoff_delay(b.failures, a.spec["backoffSeconds"], a.spec["backoffFactor"],
                                  a.spec["maxLaunchDelaySeconds"])
            self._delays[t.app_id] = now + delay
            self.last_failure[t.app_id] = {
                "appId": t.app_id, "host": "", "message": t.message, "taskId": t.id, "instanceId": t.id,
                "slaveId": t.agent_id, "state": t.state, "timestamp": fmt_time(t.updated_at),
                "version": t.config_version}
            log.info("app %s: task %s ended %s (%d consecutive failure(s)); next launch in %.2fs", t.app_id, t.id,
                     t.state, b.failures, delay)

    def reset_delay(self, app_id: str) -> None:
        self._backoff.pop(app_id, None)
        self._delays.pop(app_id, None)
        self.wake()

    def delay_left(self, app_id: str) -> float:
        return max(0.0, self._delays.get(app_id, 0.0) - time.monotonic())

    # -- the reconcile loop ------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), RECONCILE_INTERVAL)
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(COALESCE)  # a burst of commits (status updates) makes one pass
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("service reconcile failed; retrying")
                await asyncio.sleep(0.5)

    async def reconcile(self) -> None:
        s = self.scheduling
        if s is None:
            return
        store = self.store
        apps = reads.apps(store)
        live = reads.live_tasks(store)
        live_ids = {t.id for t in live}
        ended, self._live_seen = self._live_seen - live_ids, live_ids
        if ended:  # before their commit listener, maybe: their failures count before any relaunch
            self._note_failures(sorted(ended))
        deployments = reads.deployments(store)
        draining = reads.draining_agents(store)
        held: set[str] = set()  # apps of a deployment step not reached yet: left as they are
        for d in deployments:
            for step in d["steps"][d["current_step"] + 1:]:
                held.update(a["app"] for a in step if a["action"] in ("StartApplication", "RestartApplication",
                                                                      "ScaleApplication"))
        by_app: dict[str, list[reads.TaskRow]] = {}
        for t in live:
            by_app.setdefault(t.app_id, []).append(t)
        kills: list[str] = []
        needs: dict[str, int] = {}
        now_wall, now = time.time(), time.monotonic()
        plans: dict[str, AppPlan] = {}
        stuck = []
        for t in live:
            if t.state in (TaskState.STAGING.value, TaskState.STARTING.value) and now_wall - t.created_at > LAUNCH_TIMEOUT:
                stuck.append(t.id)
        for app_id, a in apps.items():
            tasks = by_app.get(app_id, [])
            instances = [Instance(t.id, t.config_version, t.state, t.healthy, t.created_at, t.agent_id in draining)
                         for t in tasks
                         if not t.kill_requested and t.state != TaskState.UNREACHABLE.value and t.id not in stuck]
            if app_id in held:
                continue
            plan = plan_app(a.spec, a.config_version, instances)
            plans[app_id] = plan
            if plan.kill or plan.launch:
                log.debug("app %s: %s; launch %d, kill %s", app_id, plan.note, plan.launch, plan.kill)
            kills.extend(plan.kill)
            want = max(0, plan.launch - self._inflight.get(app_id, 0))
            if want:
                b = self._backoff.get(app_id)
                if b is not None and b.config_version != a.config_version:
                    self.reset_delay(app_id)
                left = self._delays.get(app_id, 0.0) - now
                if left > 0:
                    asyncio.get_running_loop().call_later(left + 0.01, self._wake.set)
                    want_now = 0
                else:
                    want_now = want
                needs[app_id] = want_now
                if not want_now:
                    self.waiting[app_id] = f"{want} instance(s) delayed {left:.1f}s (backoff after task failures)"
            else:
                self.waiting.pop(app_id, None)
        for t in live:  # instances of removed apps
            if t.app_id not in apps and not t.kill_requested:
                kills.append(t.id)
        self.plans = plans
        self._needs = needs
        if stuck:
            await self._give_up(stuck)
        if kills:
            await asyncio.gather(*(self._kill(k) for k in kills), return_exceptions=True)
        await self._advance(deployments, apps, plans, by_app)
        if any(needs.values()):
            s.revive(self.framework_id)
            if now - self._reasons_at > 1.0:
                self._reasons_at = now
                self._explain(apps, needs, by_app)
        else:
            s.suppress(self.framework_id)

    async def _kill(self, task_id: str) -> None:
        assert self.scheduling is not None
        try:
            await self.scheduling.kill(task_id)
        except Exception as exc:  # noqa: BLE001 — retried by the next reconcile
            log.warning("kill of %s not committed: %s", task_id, exc)

    async def _give_up(self, task_ids: list[str]) -> None:
        log.warning("giving up %d launch(es) that never started: %s", len(task_ids), ", ".join(task_ids[:5]))
        await self.store.propose({"type": "task_master_status", "time": time.time(), "uuid": new_uuid(),
                                  "updates": [{"task_id": t, "state": TaskState.LOST.value,
                                               "reason": "REASON_TASK_UNKNOWN",
                                               "message": f"did not start within {LAUNCH_TIMEOUT:g}s"}
                                              for t in task_ids]})
        assert self.scheduling is not None
        for t in reads.tasks_by_id(self.store, task_ids):
            if t.agent_id:
                self.scheduling.master.agents.send(t.agent_id, {"type": "kill", "task_id": t.id, "grace": 0.0})

    async def _advance(self, deployments: list[dict[str, Any]], apps: dict[str, reads.AppRow],
                       plans: dict[str, AppPlan], by_app: dict[str, list[reads.TaskRow]]) -> None:
        for d in deployments:
            if d["id"] in self._advancing:
                continue
            step_no = d["current_step"]
            step = d["steps"][step_no] if step_no < len(d["steps"]) else []
            if not all(self._action_done(a, apps, plans, by_app) for a in step):
                continue
            last = step_no + 1 >= len(d["steps"])
            self._advancing.add(d["id"])
            try:
                if last:
                    await self.store.propose({"type": "deployment_finish", "deployment_id": d["id"],
                                              "outcome": "success", "time": time.time()})
                else:
                    await self.store.propose({"type": "deployment_step", "deployment_id": d["id"], "step": step_no,
                                              "time": time.time()})
            except Exception as exc:  # noqa: BLE001
                log.warning("deployment %s not advanced: %s", d["id"], exc)
            finally:
                self._advancing.discard(d["id"])

    @staticmethod
    def _action_done(action: dict[str, Any], apps: dict[str, reads.AppRow], plans: dict[str, AppPlan],
                     by_app: dict[str, list[reads.TaskRow]]) -> bool:
        app_id = action["app"]
        tasks = [t for t in by_app.get(app_id, []) if t.state != TaskState.UNREACHABLE.value]
        if action["action"] == "StopApplication":
            return app_id in apps or not tasks  # re-created meanwhile: another deployment owns it
        a = apps.get(app_id)
        plan = plans.get(app_id)
        if a is None or plan is None:
            return a is None
        if not plan.done:
            return False
        return all(t.config_version == a.config_version and not t.kill_requested for t in tasks)

    # -- why instances wait ------------------------------------------------------------
    def _need_of(self, a: reads.AppRow, count: int, tasks: list[reads.TaskRow],
                 agents: dict[str, dict[str, Any]]) -> Need:
        spec = a.spec
        scalars = Resources.of(cpus=spec["cpus"], mem=spec["mem"], disk=spec["disk"], gpus=spec["gpus"])
        placed = [Place(agents[t.agent_id]["hostname"], agents[t.agent_id]["attributes"]) for t in tasks
                  if t.agent_id in agents and not t.kill_requested]
        return Need(a.id, count, scalars, [pd["port"] for pd in spec["portDefinitions"]], spec["requirePorts"],
                    spec["constraints"], placed)

    def _explain(self, apps: dict[str, reads.AppRow], needs: dict[str, int],
                 by_app: dict[str, list[reads.TaskRow]]) -> None:
        s = self.scheduling
        if s is None or s.alloc is None:
            return
        agents = reads.agents(self.store)
        views = []
        for aid, info in agents.items():
            if info["state"] != "ACTIVE" or aid not in s.alloc.agent_ids():
                continue
            views.append(OfferView("", aid, Place(info["hostname"], info["attributes"]),
                                   s.alloc.available(aid).flatten()))
        for app_id, count in needs.items():
            if count and app_id in apps:
                need = self._need_of(apps[app_id], count, by_app.get(app_id, []), agents)
                self.waiting[app_id] = waiting_reason(need, views, count)

    # -- FrameworkClient -----------------------------------------------------------------
    def offers(self, offers: list[Offer]) -> None:
        asyncio.get_running_loop().create_task(self._take(offers))

    def rescind(self, offer: Offer) -> None:
        pass

    def updates_pending(self) -> None:
        pass  # the framework reads committed state directly

    def failure(self, agent_id: str) -> None:
        self._wake.set()

    def after_cycle(self) -> None:
        pass

    async def _take(self, offers: list[Offer]) -> None:
        s = self.scheduling
        if s is None:
            return
        needs = {a: n for a, n in self._needs.items() if n > 0}
        if not needs:
            s.decline(self.framework_id, [o.offer_id for o in offers], REFUSE_SECONDS)
            return
        apps = reads.apps(self.store)
        agents = reads.agents(self.store)
        by_app: dict[str, list[reads.TaskRow]] = {}
        for t in reads.live_tasks(self.store):
            by_app.setdefault(t.app_id, []).append(t)
        wanted = [self._need_of(apps[a], n, by_app.get(a, []), agents) for a, n in sorted(needs.items())
                  if a in apps]
        views = [OfferView(o.offer_id, o.agent_id, Place(o.hostname, dict(o.attributes)), o.resources.flatten())
                 for o in offers]
        matches, left = match(wanted, views)
        log.debug("%d offer(s) for %s: %d instance(s) placed", len(offers), needs,
                  sum(len(m.launches) for m in matches))
        for a, n in needs.items():
            self._needs[a] = left.get(a, 0)
        jobs = []
        for m in matches:
            if not m.launches:
                s.decline(self.framework_id, [m.offer_id], REFUSE_SECONDS)
                continue
            planned, counts = [], {}
            for app_id, res, _ports in m.launches:
                a = apps[app_id]
                planned.append(PlannedTask(spec=task_spec(a.spec, a.config_version, res), resources=res))
                counts[app_id] = counts.get(app_id, 0) + 1
            for a, n in counts.items():  # counted before any await: the reconcile loop must not launch them again
                self._inflight[a] = self._inflight.get(a, 0) + n
            jobs.append(self._launch(m.offer_id, m.agent_id, planned, counts))
        if jobs:
            await asyncio.gather(*jobs)
            self._wake.set()

    async def _launch(self, offer_id: str, agent_id: str, planned: list[PlannedTask], counts: dict[str, int]) -> None:
        s = self.scheduling
        assert s is not None
        try:
            outcome = await s.accept(self.framework_id, [offer_id], [Operation("launch", planned)], REFUSE_SECONDS)
            if not outcome.ok:
                log.info("launching %d instance(s) on %s refused: %s", len(planned), agent_id, outcome.message)
        except Exception:
            log.exception("launching instances on %s failed", agent_id)
        finally:
            for a, n in counts.items():
                self._inflight[a] = max(0, self._inflight.get(a, 0) - n)
