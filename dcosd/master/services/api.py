"""The Marathon v2 REST API (/v2/...), /ping, /metrics, and the CLI's richer deployment view.

Every change is one ``app_deploy`` command: parsed and validated here (422
naming the field), decided and applied atomically by the state machine
(commands.py). Marathon API calls are operator calls: they need the operator
token when auth is on (marathon-python sends ``Authorization: token=…``).
App paths may arrive with doubled slashes (``/v2/apps//foo``): they are
normalised; booleans arrive as ``True``/``False``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dcosd import __version__
from dcosd.errors import NotFound
from dcosd.httputil import json_response, read_json
from dcosd.master.services import reads, render
from dcosd.master.services.appdef import AppInvalid, fmt_time, merge_update, normalise_id, parse_app
from dcosd.master.services.planner import AppPlan

if TYPE_CHECKING:
    from dcosd.master.service import Master
    from dcosd.master.services.events import EventBus
    from dcosd.master.services.framework import ServiceFramework

SSE_KEEPALIVE = 15.0


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() in ("true", "1", "yes")


def _segments(tail: str) -> list[str]:
    return [s for s in tail.split("/") if s]


class ServicesApi:
    def __init__(self, master: "Master", framework: "ServiceFramework", events: "EventBus") -> None:
        self.master = master
        self.framework = framework
        self.events = events
        self.started = time.time()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.route("*", "/v2/apps{tail:.*}", self.apps),
            web.get("/v2/tasks", self.list_tasks),
            web.post("/v2/tasks/delete", self.delete_tasks),
            web.get("/v2/deployments", self.list_deployments),
            web.delete("/v2/deployments/{id}", self.cancel_deployment),
            web.get("/v2/queue", self.queue),
            web.delete("/v2/queue/{tail:.+}/delay", self.reset_delay),
            web.route("*", "/v2/groups{tail:.*}", self.groups),
            web.get("/v2/info", self.info),
            web.get("/v2/leader", self.leader),
            web.get("/v2/events", self.event_stream),
            web.get("/ping", self.ping),
            web.get("/metrics", self.metrics),
            web.get("/dcosd/v1/services/deployments", self.dcosd_deployments),
            web.get("/dcosd/v1/services/apps/{tail:.+}", self.dcosd_app),
        ]

    # -- helpers -----------------------------------------------------------------------
    def _check(self, request: web.Request, write: bool = False) -> None:
        self.master.require_operator(request)
        if write:
            self.master.require_leader()

    async def _deploy(self, apps: dict[str, Any], *, force: bool, restart: list[str] = (),  # type: ignore[assignment]
                      groups: dict[str, Any] | None = None, keep: dict[str, str] | None = None,
                      create_only: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        now = time.time()
        cmd = {"type": "app_deploy", "time": now, "version": fmt_time(now), "deployment_id": str(uuid.uuid4()),
               "apps": apps, "force": force, "restart": list(restart), "groups": groups or {}}
        if create_only:
            cmd["create_only"] = list(create_only)
        result = await self.master.store.propose(cmd)
        self.framework.wake()
        return {"version": result["version"], "deploymentId": result["deploymentId"]}

    def _snapshot(self) -> tuple[dict[str, reads.AppRow], dict[str, list[reads.TaskRow]], list[dict[str, Any]]]:
        store = self.master.store
        by_app: dict[str, list[reads.TaskRow]] = {}
        for t in reads.live_tasks(store):
            by_app.setdefault(t.app_id, []).append(t)
        return reads.apps(store), by_app, reads.deployments(store)

    def _app_json(self, a: reads.AppRow, tasks: list[reads.TaskRow], deps: list[dict[str, Any]],
                  embed_tasks: bool) -> dict[str, Any]:
        agents = reads.agents(self.master.store) if embed_tasks else None
        started = reads.started_at(self.master.store, [t.id for t in tasks]) if embed_tasks else None
        return render.app_json(a, tasks, deps, self.framework.last_failure.get(a.id), embed_tasks=embed_tasks,
                               agents=agents, started=started)

    def _require_app(self, app_id: str) -> reads.AppRow:
        a = reads.app(self.master.store, app_id)
        if a is None:
            raise NotFound(f"App '{app_id}' does not exist")
        return a

    # -- /v2/apps ------------------------------------------------------------------------
    async def apps(self, request: web.Request) -> web.StreamResponse:
        segs = _segments(request.match_info["tail"])
        m = request.method
        if not segs:
            if m == "GET":
                return await self.list_apps(request)
            if m == "POST":
                return await self.create_app(request)
            if m == "PUT":
                return await self.update_apps(request)
        elif segs[-1] == "restart" and m == "POST":
            return await self.restart_app(request, normalise_id("/" + "/".join(segs[:-1])))
        elif "tasks" in segs and segs.index("tasks") > 0:
            i = len(segs) - 1 - segs[::-1].index("tasks")
            app_id = normalise_id("/" + "/".join(segs[:i]))
            task_id = segs[i + 1] if i + 1 < len(segs) else None
            if m == "GET" and task_id is None:
                return await self.app_tasks(request, app_id)
            if m == "DELETE":
                return await self.kill_app_tasks(request, app_id, task_id)
        elif "versions" in segs and segs.index("versions") > 0 and m == "GET":
            i = len(segs) - 1 - segs[::-1].index("versions")
            app_id = normalise_id("/" + "/".join(segs[:i]))
            return await self.app_versions(request, app_id, segs[i + 1] if i + 1 < len(segs) else None)
        else:
            app_id = normalise_id("/" + "/".join(segs))
            if m == "GET":
                return await self.get_app(request, app_id)
            if m == "PUT":
                return await self.put_app(request, app_id)
            if m == "DELETE":
                return await self.delete_app(request, app_id)
        raise web.HTTPMethodNotAllowed(m, ["GET", "POST", "PUT", "DELETE"])

    async def list_apps(self, request: web.Request) -> web.Response:
        self._check(request)
        apps, by_app, deps = self._snapshot()
        embed = set(request.query.getall("embed", []))
        want_id = request.query.get("id")
        cmd = request.query.get("cmd")
        label = request.query.get("label")
        out = []
        for a in apps.values():
            if want_id and want_id not in a.id:
                continue
            if cmd and cmd not in (a.spec["cmd"] or ""):
                continue
            if label:
                k, _, v = label.partition("==")
                if k.strip() not in a.spec["labels"] or (v and a.spec["labels"][k.strip()] != v.strip()):
                    continue
            out.append(self._app_json(a, by_app.get(a.id, []), deps, "apps.tasks" in embed))
        return json_response({"apps": out})

    async def create(self, raw: Any, *, force: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """POST /v2/apps's path for other parts (package install): validate, then create atomically —
        the app exists afterwards, or nothing was committed (409 when the id is taken)."""
        spec = parse_app(raw)
        if reads.app(self.master.store, spec["id"]) is not None:
            from dcosd.errors import Conflict

            raise Conflict(f"An app with id [{spec['id']}] already exists.")
        return spec, await self._deploy({spec["id"]: spec}, force=force, create_only=[spec["id"]])

    async def create_app(self, request: web.Request) -> web.Response:
        self._check(request, write=True)
        spec, _ = await self.create(await read_json(request), force=_flag(request, "force"))
        apps, by_app, deps = self._snapshot()
        a = apps[spec["id"]]
        return json_response(self._app_json(a, by_app.get(a.id, []), deps, False), status=201)

    async def get_app(self, request: web.Request, app_id: str) -> web.Response:
        self._check(request)
        a = self._require_app(app_id)
        _, by_app, deps = self._snapshot()
        embed = set(request.query.getall("embed", []))
        return json_response({"app": self._app_json(a, by_app.get(app_id, []), deps,
                                                    bool(embed & {"app.tasks", "apps.tasks"}))})

    async def put_app(self, request: web.Request, app_id: str) -> web.Response:
        self._check(request, write=True)
        body = await read_json(request)
        cur = reads.app(self.master.store, app_id)
        if isinstance(body, dict) and set(body) == {"version"} or (isinstance(body, dict) and "version" in body
                                                                    and len(body) == 1):
            if cur is None:
                raise NotFound(f"App '{app_id}' does not exist")
            spec = reads.version_spec(self.master.store, app_id, body["version"])
            if spec is None:
                raise NotFound(f"App '{app_id}' has no version {body['version']}")
            out = await self._deploy({app_id: spec}, force=_flag(request, "force"))
            return json_response(out)
        if cur is None:
            spec = parse_app(body, app_id=app_id)
            out = await self._deploy({app_id: spec}, force=_flag(request, "force"))
            return json_response(out, status=201)
        spec = merge_update(cur.spec, body)
        return json_response(await self._deploy({app_id: spec}, force=_flag(request, "force")))

    async def update_apps(self, request: web.Request) -> web.Response:
        self._check(request, write=True)
        body = await read_json(request)
        if not isinstance(body, list):
            raise AppInvalid("a list of app definitions was expected")
        targets = {}
        for raw in body:
            app_id = normalise_id(raw.get("id") if isinstance(raw, dict) else None)
            cur = reads.app(self.master.store, app_id)
            targets[app_id] = merge_update(cur.spec, raw) if cur else parse_app(raw, app_id=app_id)
        return json_response(await self._deploy(targets, force=_flag(request, "force")))

    async def delete_app(self, request: web.Request, app_id: str) -> web.Response:
        self._check(request, write=True)
        self._require_app(app_id)
        return json_response(await self._deploy({app_id: None}, force=_flag(request, "force")))

    async def restart_app(self, request: web.Request, app_id: str) -> web.Response:
        self._check(request, write=True)
        a = self._require_app(app_id)
        return json_response(await self._deploy({app_id: a.spec}, force=_flag(request, "force"), restart=[app_id]))

    async def app_versions(self, request: web.Request, app_id: str, version: str | None) -> web.Response:
        self._check(request)
        self._require_app(app_id)
        if version is None:
            return json_response({"versions": reads.versions(self.master.store, app_id)})
        spec = reads.version_spec(self.master.store, app_id, version)
        if spec is None:
            raise NotFound(f"App '{app_id}' has no version {version}")
        return json_response(render.app_json(reads.AppRow(app_id, spec, version, version), [], [],
                                             version_only=True))

    # -- tasks ---------------------------------------------------------------------------
    def _tasks_json(self, tasks: list[reads.TaskRow]) -> list[dict[str, Any]]:
        apps = reads.apps(self.master.store)
        agents = reads.agents(self.master.store)
        started = reads.started_at(self.master.store, [t.id for t in tasks])
        return [render.task_json(t, agents, started, bool(apps[t.app_id].spec["healthChecks"])
                                 if t.app_id in apps else False) for t in tasks]

    async def app_tasks(self, request: web.Request, app_id: str) -> web.Response:
        self._check(request)
        self._require_app(app_id)
        tasks = [t for t in reads.live_tasks(self.master.store) if t.app_id == app_id]
        return json_response({"tasks": self._tasks_json(tasks)})

    async def list_tasks(self, request: web.Request) -> web.Response:
        self._check(request)
        tasks = reads.live_tasks(self.master.store)
        status = request.query.get("status")
        if status:
            tasks = [t for t in tasks if t.state.removeprefix("TASK_").lower() == status.lower()]
        return json_response({"tasks": self._tasks_json(tasks)})

    async def _kill(self, tasks: list[reads.TaskRow], scale: bool, force: bool) -> None:
        if scale:
            by_app: dict[str, int] = {}
            for t in tasks:
                by_app[t.app_id] = by_app.get(t.app_id, 0) + 1
            targets = {}
            for app_id, n in by_app.items():
                a = reads.app(self.master.store, app_id)
                if a is not None:
                    targets[app_id] = {**a.spec, "instances": max(0, a.spec["instances"] - n)}
            if targets:
                await self._deploy(targets, force=True)  # killing with scale adjusts the target now
        await asyncio.gather(*(self.master.scheduling.kill(t.id) for t in tasks))
        self.framework.wake()

    async def kill_app_tasks(self, request: web.Request, app_id: str, task_id: str | None) -> web.Response:
        self._check(request, write=True)
        self._require_app(app_id)
        live = [t for t in reads.live_tasks(self.master.store) if t.app_id == app_id and not t.kill_requested]
        if task_id is not None:
            chosen = [t for t in live if t.id == task_id]
            if not chosen:
                raise NotFound(f"Task '{task_id}' of app '{app_id}' does not exist or is not running")
        else:
            host = request.query.get("host")
            agents = reads.agents(self.master.store)
            chosen = [t for t in live if host is None or agents.get(t.agent_id or "", {}).get("hostname") == host]
        rendered = self._tasks_json(chosen)
        await self._kill(chosen, _flag(request, "scale"), _flag(request, "force"))
        if task_id is not None:
            return json_response({"task": rendered[0]})
        return json_response({"tasks": rendered})

    async def delete_tasks(self, request: web.Request) -> web.Response:
        self._check(request, write=True)
        body = await read_json(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise AppInvalid("ids: a list of task ids was expected")
        chosen = [t for t in reads.tasks_by_id(self.master.store, ids) if not t.kill_requested]
        await self._kill(chosen, _flag(request, "scale"), _flag(request, "force"))
        return json_response({})

    # -- deployments and queue -------------------------------------------------------------
    async def list_deployments(self, request: web.Request) -> web.Response:
        self._check(request)
        return json_response([render.deployment_json(d) for d in reads.deployments(self.master.store)])

    async def cancel_deployment(self, request: web.Request) -> web.Response:
        self._check(request, write=True)
        did = request.match_info["id"]
        found = [d for d in reads.deployments(self.master.store) if d["id"] == did]
        if not found:
            raise NotFound(f"DeploymentPlan {did} does not exist")
        if _flag(request, "force"):
            await self.master.store.propose({"type": "deployment_finish", "deployment_id": did,
                                             "outcome": "cancelled", "time": time.time()})
            self.framework.wake()
            return web.Response(status=202)
        # Roll back: every affected app to what it was before, as a new deployment that replaces this one.
        d = found[0]
        cur_apps = reads.apps(self.master.store)
        targets = {}
        for app_id, spec in d["original"].items():
            if spec is None and app_id not in cur_apps:
                continue
            targets[app_id] = spec
        if not targets:
            await self.master.store.propose({"type": "deployment_finish", "deployment_id": did,
                                             "outcome": "cancelled", "time": time.time()})
            return json_response({}, status=200)
        out = await self._deploy(targets, force=True)
        return json_response(out)

    async def queue(self, request: web.Request) -> web.Response:
        self._check(request)
        apps, by_app, deps = self._snapshot()
        out = []
        for app_id, plan in self.framework.plans.items():
            a = apps.get(app_id)
            if a is None or plan.launch <= 0:
                continue
            left = self.framework.delay_left(app_id)
            out.append({"app": render.app_json(a, by_app.get(app_id, []), deps), "count": plan.launch,
                        "delay": {"timeLeftSeconds": round(left, 3), "overdue": left <= 0},
                        "since": fmt_time(time.time()),
                        "processedOffersSummary": {"reason": self.framework.waiting.get(app_id, "")}})
        return json_response({"queue": out})

    async def reset_delay(self, request: web.Request) -> web.Response:
        self._check(request, write=True)
        app_id = normalise_id("/" + request.match_info["tail"])
        self._require_app(app_id)
        self.framework.reset_delay(app_id)
        return web.Response(status=204)

    async def dcosd_deployments(self, request: web.Request) -> web.Response:
        """Deployments with progress (ready / target per app) and why instances wait — for the CLI."""
        self._check(request)
        apps, by_app, _ = self._snapshot()
        out = []
        for d in reads.deployments(self.master.store):
            j = render.deployment_json(d)
            j["apps"] = {a: self._progress(a, apps, by_app) for a in d["affectedApps"]}
            out.append(j)
        return json_response({"deployments": out})

    def _progress(self, app_id: str, apps: dict[str, reads.AppRow],
                  by_app: dict[str, list[reads.TaskRow]]) -> dict[str, Any]:
        a = apps.get(app_id)
        plan = self.framework.plans.get(app_id) or AppPlan()
        live = [t for t in by_app.get(app_id, []) if not t.kill_requested]
        return {"target": a.spec["instances"] if a else 0, "ready": plan.ready, "live": len(live),
                "note": plan.note, "waiting": self.framework.waiting.get(app_id, "")}

    async def dcosd_app(self, request: web.Request) -> web.Response:
        self._check(request)
        app_id = normalise_id("/" + request.match_info["tail"])
        a = self._require_app(app_id)
        apps, by_app, deps = self._snapshot()
        j = self._app_json(a, by_app.get(app_id, []), deps, True)
        return json_response({"app": j, "progress": self._progress(app_id, apps, by_app),
                              "queueDelaySeconds": round(self.framework.delay_left(app_id), 3)})

    # -- groups --------------------------------------------------------------------------
    async def groups(self, request: web.Request) -> web.Response:
        segs = _segments(request.match_info["tail"])
        gid = normalise_id("/" + "/".join(segs)) if segs else "/"
        m = request.method
        if m == "GET":
            self._check(request)
            apps, by_app, deps = self._snapshot()
            rendered = [self._app_json(a, by_app.get(a.id, []), deps, False) for a in apps.values()]
            groups = reads.groups(self.master.store)
            if gid != "/" and gid not in groups and not any(a.startswith(gid + "/") for a in apps):
                raise NotFound(f"Group '{gid}' does not exist")
            return json_response(render.group_tree(rendered, groups, gid, fmt_time(self.started)))
        self._check(request, write=True)
        force = _flag(request, "force")
        if m == "DELETE":
            apps = reads.apps(self.master.store)
            groups = reads.groups(self.master.store)
            under = {a: None for a in apps if gid == "/" or a.startswith(gid + "/")}
            gone = {g: None for g in groups if g == gid or g.startswith(gid.rstrip("/") + "/")}
            if not under and not gone:
                raise NotFound(f"Group '{gid}' does not exist")
            return json_response(await self._deploy(under, force=force, groups=gone))
        if m in ("POST", "PUT"):
            body = await read_json(request)
            if not isinstance(body, dict):
                raise AppInvalid("a group definition must be a JSON object")
            if m == "PUT" and "scaleBy" in body:
                factor = body["scaleBy"]
                if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 0:
                    raise AppInvalid("scaleBy: must be a non-negative number")
                apps = reads.apps(self.master.store)
                targets = {a.id: {**a.spec, "instances": int(round(a.spec["instances"] * factor))}
                           for a in apps.values() if gid == "/" or a.id.startswith(gid + "/")}
                return json_response(await self._deploy(targets, force=force))
            base = normalise_id(body.get("id", gid), "/" if m == "POST" else gid, "id") if m == "POST" else gid
            apps_t: dict[str, Any] = {}
            groups_t: dict[str, Any] = {}
            self._collect(body, base, apps_t, groups_t)
            if not apps_t and not groups_t:
                raise AppInvalid("a group needs apps or groups")
            out = await self._deploy(apps_t, force=force, groups=groups_t)
            return json_response(out, status=201 if m == "POST" else 200)
        raise web.HTTPMethodNotAllowed(m, ["GET", "POST", "PUT", "DELETE"])

    def _collect(self, body: dict[str, Any], gid: str, apps: dict[str, Any], groups: dict[str, Any]) -> None:
        unknown = set(body) - {"id", "apps", "groups", "dependencies", "version", "pods", "enforceRole"}
        if unknown:
            raise AppInvalid(f"unknown field(s) in group {gid}: {', '.join(sorted(unknown))}")
        deps = body.get("dependencies") or []
        if not isinstance(deps, list):
            raise AppInvalid(f"{gid}.dependencies: must be a list")
        groups[gid] = [normalise_id(d, gid, "dependencies") for d in deps]
        for i, raw in enumerate(body.get("apps") or []):
            if not isinstance(raw, dict) or "id" not in raw:
                raise AppInvalid(f"{gid}.apps[{i}]: an app with an id was expected")
            app_id = normalise_id(raw["id"], gid, f"apps[{i}].id")
            cur = reads.app(self.master.store, app_id)
            spec = merge_update(cur.spec, {**raw, "id": app_id}) if cur else parse_app({**raw, "id": app_id})
            spec["dependencies"] = sorted(set(spec["dependencies"]) | set(
                d for d in groups[gid] if d != app_id))
            apps[app_id] = spec
        for i, sub in enumerate(body.get("groups") or []):
            if not isinstance(sub, dict) or "id" not in sub:
                raise AppInvalid(f"{gid}.groups[{i}]: a group with an id was expected")
            self._collect(sub, normalise_id(sub["id"], gid, f"groups[{i}].id"), apps, groups)

    # -- info, leader, events, metrics -------------------------------------------------------
    def _leader_hostport(self) -> str:
        url = self.master.advertise_url if self.master.is_leader else (self.master.leader_url or "")
        return url.split("://", 1)[-1]

    async def info(self, request: web.Request) -> web.Response:
        self._check(request)
        leader = self._leader_hostport()
        return json_response({
            "name": "marathon", "version": "1.11.0", "buildref": __version__, "elected": self.master.is_leader,
            "leader": leader, "frameworkId": reads.FRAMEWORK_ID,
            "marathon_config": {"framework_name": "marathon", "hostname": leader.split(":")[0], "ha":
                                self.master.ha is not None, "master": self.master.advertise_url,
                                "mesos_role": "*", "checkpoint": True, "failover_timeout": 604800,
                                "task_launch_timeout": 60000},
            "zookeeper_config": {}, "http_config": {}, "event_subscriber": None,
        })

    async def leader(self, request: web.Request) -> web.Response:
        self._check(request)
        leader = self._leader_hostport()
        if not leader:
            raise NotFound("There is no leader")
        return json_response({"leader": leader})

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def metrics(self, request: web.Request) -> web.Response:
        self._check(request)
        apps, by_app, deps = self._snapshot()
        running = sum(t.state == "TASK_RUNNING" for ts in by_app.values() for t in ts)
        gauges = {"marathon.apps.active.gauge": {"value": len(apps)},
                  "marathon.deployments.active.gauge": {"value": len(deps)},
                  "marathon.instances.running.gauge": {"value": running},
                  "marathon.instances.launch-queue.gauge": {"value": sum(p.launch for p in
                                                                        self.framework.plans.values())},
                  "marathon.uptime.gauge": {"value": int((time.time() - self.started) * 1000)}}
        return json_response({"version": "4.0.0", "gauges": gauges, "counters": {}, "histograms": {}, "meters": {},
                              "timers": {}})

    async def event_stream(self, request: web.Request) -> web.StreamResponse:
        self._check(request)
        wanted = set(request.query.getall("event_type", []))
        q = self.events.subscribe()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            attached = {"eventType": "event_stream_attached", "timestamp": fmt_time(time.time()),
                        "remoteAddress": request.remote or ""}
            await resp.write(f"event: event_stream_attached\ndata: {json.dumps(attached)}\n\n".encode())
            while True:
                try:
                    ev = await asyncio.wait_for(q.get(), SSE_KEEPALIVE)
                except asyncio.TimeoutError:
                    await resp.write(b"\r\n")
                    continue
                if wanted and ev["eventType"] not in wanted:
                    continue
                await resp.write(f"event: {ev['eventType']}\ndata: {json.dumps(ev)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.events.unsubscribe(q)
        return resp

