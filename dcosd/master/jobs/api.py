"""The jobs HTTP API, modelled on Metronome's /v1 (https://dcos.github.io/metronome/docs/generated/api.html).

    GET    /v1/jobs[?embed=activeRuns|schedules|history|historySummary]   POST /v1/jobs (schedules may be inline)
    GET    /v1/jobs/{id}[?embed=...]      PUT /v1/jobs/{id}      DELETE /v1/jobs/{id}[?stopCurrentJobRuns=true]
    GET    /v1/jobs/{id}/runs[?all=true]  POST /v1/jobs/{id}/runs   (run now)
    GET    /v1/jobs/{id}/runs/{runId}     POST /v1/jobs/{id}/runs/{runId}/actions/stop
    GET    /v1/jobs/{id}/schedules        POST /v1/jobs/{id}/schedules
    GET|PUT|DELETE /v1/jobs/{id}/schedules/{scheduleId}

Every call needs the operator token when auth is on; writes need the leader. Bad input is refused with
422 naming the field before anything is proposed, and each write is one command: nothing half-applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from dcosd.errors import NotFound, ValidationError
from dcosd.httputil import json_response, read_json
from dcosd.master.jobs import spec as jobspec
from dcosd.master.jobs import views
from dcosd.master.jobs.cron import CronError
from dcosd.master.jobs.framework import new_run_id, next_fire_after

if TYPE_CHECKING:
    from dcosd.master.jobs.framework import JobFramework
    from dcosd.master.service import Master

EMBEDS = {"activeRuns", "schedules", "history", "historySummary"}
_TRUE = ("1", "true", "True", "yes")


def _embed(request: web.Request) -> set[str]:
    out: set[str] = set()
    for raw in request.query.getall("embed", []):
        for e in raw.split(","):
            e = e.strip()
            if e and e not in EMBEDS:
                raise ValidationError(f"embed must be among {', '.join(sorted(EMBEDS))} (got {e!r})")
            if e:
                out.add(e)
    return out


class JobsApi:
    def __init__(self, master: "Master", framework: "JobFramework") -> None:
        self.master = master
        self.jobs = framework

    def routes(self) -> list[web.RouteDef]:
        j = "/v1/jobs"
        return [
            web.get(j, self.list_jobs),
            web.post(j, self.create_job),
            web.get(j + "/{job_id}", self.show_job),
            web.put(j + "/{job_id}", self.replace_job),
            web.delete(j + "/{job_id}", self.remove_job),
            web.get(j + "/{job_id}/runs", self.list_runs),
            web.post(j + "/{job_id}/runs", self.start_run),
            web.get(j + "/{job_id}/runs/{run_id}", self.show_run),
            web.post(j + "/{job_id}/runs/{run_id}/actions/stop", self.stop_run),
            web.get(j + "/{job_id}/schedules", self.list_schedules),
            web.post(j + "/{job_id}/schedules", self.create_schedule),
            web.get(j + "/{job_id}/schedules/{schedule_id}", self.show_schedule),
            web.put(j + "/{job_id}/schedules/{schedule_id}", self.replace_schedule),
            web.delete(j + "/{job_id}/schedules/{schedule_id}", self.remove_schedule),
        ]

    # -- helpers -----------------------------------------------------------------------
    def _read(self, request: web.Request) -> None:
        self.master.require_operator(request)

    def _write(self, request: web.Request) -> None:
        self.master.require_operator(request)
        self.master.require_leader()

    def _job_or_404(self, job_id: str, embed: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
        job = views.job(self.master.store, job_id, embed)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def _with_next(self, schedule: dict[str, Any]) -> dict[str, Any]:
        try:
            nxt = next_fire_after(schedule, self.jobs.clock.now())
        except CronError as exc:  # parse_schedule checked it; a zone vanishing in between is still input
            raise jobspec.InvalidJob(f"schedule {schedule['id']}: {exc}") from None
        return {"schedule": schedule, "next_fire_at": nxt}

    # -- jobs --------------------------------------------------------------------------
    async def list_jobs(self, request: web.Request) -> web.Response:
        self._read(request)
        embed = _embed(request)
        store = self.master.store
        return json_response([views.job(store, jid, embed) for jid in views.job_ids(store)])

    async def create_job(self, request: web.Request) -> web.Response:
        self._write(request)
        job, schedules = jobspec.parse_job(await read_json(request))
        await self.master.store.propose({
            "type": "job_put", "create": True, "job": job, "time": self.jobs.clock.now(),
            "schedules": [self._with_next(s) for s in schedules or []]})
        return json_response(self._job_or_404(job["id"], {"schedules"}), status=201)

    async def show_job(self, request: web.Request) -> web.Response:
        self._read(request)
        return json_response(self._job_or_404(request.match_info["job_id"], _embed(request)))

    async def replace_job(self, request: web.Request) -> web.Response:
        self._write(request)
        job_id = request.match_info["job_id"]
        job, schedules = jobspec.parse_job(await read_json(request), job_id=job_id)
        await self.master.store.propose({
            "type": "job_put", "create": False, "job": job, "time": self.jobs.clock.now(),
            "schedules": None if schedules is None else [self._with_next(s) for s in schedules]})
        return json_response(self._job_or_404(job_id, {"schedules"}))

    async def remove_job(self, request: web.Request) -> web.Response:
        self._write(request)
        job_id = request.match_info["job_id"]
        stop = request.query.get("stopCurrentJobRuns", "false") in _TRUE
        result = await self.master.store.propose({"type": "job_remove", "job_id": job_id, "stop_runs": stop,
                                                  "time": self.jobs.clock.now()})
        await self.jobs.kill_tasks(result["kill"])
        return json_response({"id": job_id, "removed": True, "killedTasks": [k["task_id"] for k in result["kill"]]})

    # -- runs --------------------------------------------------------------------------
    async def list_runs(self, request: web.Request) -> web.Response:
        self._read(request)
        job_id = request.match_info["job_id"]
        self._job_or_404(job_id)
        everything = request.query.get("all", "false") in _TRUE
        return json_response(views.runs(self.master.store, job_id, active_only=not everything))

    async def start_run(self, request: web.Request) -> web.Response:
        self._write(request)
        job_id = request.match_info["job_id"]
        now = self.jobs.clock.now()
        run_id = new_run_id(now)
        await self.master.store.propose({"type": "job_run_start", "job_id": job_id, "run_id": run_id, "time": now})
        self.jobs.wake()
        return json_response(views.run(self.master.store, job_id, run_id), status=201)

    async def show_run(self, request: web.Request) -> web.Response:
        self._read(request)
        job_id, run_id = request.match_info["job_id"], request.match_info["run_id"]
        run = views.run(self.master.store, job_id, run_id)
        if run is None:
            raise NotFound(f"job {job_id} has no run {run_id}")
        return json_response(run)

    async def stop_run(self, request: web.Request) -> web.Response:
        self._write(request)
        job_id, run_id = request.match_info["job_id"], request.match_info["run_id"]
        if views.run(self.master.store, job_id, run_id) is None:
            raise NotFound(f"job {job_id} has no run {run_id}")
        await self.jobs.stop_run(run_id)
        return json_response(views.run(self.master.store, job_id, run_id))

    # -- schedules ---------------------------------------------------------------------
    async def list_schedules(self, request: web.Request) -> web.Response:
        self._read(request)
        job_id = request.match_info["job_id"]
        self._job_or_404(job_id)
        return json_response(views.schedules(self.master.store, job_id))

    async def _put_schedule(self, request: web.Request, create: bool) -> dict[str, Any]:
        self._write(request)
        job_id = request.match_info["job_id"]
        sid = request.match_info.get("schedule_id")
        sched = jobspec.parse_schedule(await read_json(request), schedule_id=sid)
        await self.master.store.propose({"type": "job_schedule_put", "job_id": job_id, "create": create,
                                         "time": self.jobs.clock.now(), **self._with_next(sched)})
        return views.schedule(self.master.store, job_id, sched["id"]) or {}

    async def create_schedule(self, request: web.Request) -> web.Response:
        return json_response(await self._put_schedule(request, True), status=201)

    async def replace_schedule(self, request: web.Request) -> web.Response:
        return json_response(await self._put_schedule(request, False))

    async def show_schedule(self, request: web.Request) -> web.Response:
        self._read(request)
        job_id, sid = request.match_info["job_id"], request.match_info["schedule_id"]
        s = views.schedule(self.master.store, job_id, sid)
        if s is None:
            raise NotFound(f"job {job_id} has no schedule {sid}")
        return json_response(s)

    async def remove_schedule(self, request: web.Request) -> web.Response:
        self._write(request)
        job_id, sid = request.match_info["job_id"], request.match_info["schedule_id"]
        await self.master.store.propose({"type": "job_schedule_remove", "job_id": job_id, "schedule_id": sid,
                                         "time": self.jobs.clock.now()})
        return json_response({"id": sid, "removed": True})
