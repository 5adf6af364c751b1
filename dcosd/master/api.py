"""dcosd's own operator API (/dcosd/v1/...): tasks, nodes, cluster — what the CLI calls."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from dcosd import __version__
from dcosd.errors import NotFound, Unavailable, ValidationError
from dcosd.httputil import json_response, read_json
from dcosd.master.state import views
from dcosd.model.ids import new_uuid
from dcosd.model.resources import Resources
from dcosd.model.states import TaskState
from dcosd.model.task import TaskSpec

if TYPE_CHECKING:
    from dcosd.master.service import Master

log = logging.getLogger(__name__)

MAX_WAIT = 300.0
LOG_STREAMS = ("stdout", "stderr")


def _float_arg(request: web.Request, name: str, default: float, lo: float, hi: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(f"query parameter {name} must be a number, not {raw!r}") from None
    if not lo <= value <= hi:
        raise ValidationError(f"query parameter {name} must be between {lo:g} and {hi:g}")
    return value


class OperatorApi:
    def __init__(self, master: "Master") -> None:
        self.master = master

    def routes(self) -> list[web.RouteDef]:
        p = "/dcosd/v1"
        return [
            web.get("/health", self.health),
            web.get("/version", self.version),
            web.get(f"{p}/tasks", self.list_tasks),
            web.post(f"{p}/tasks", self.submit_task),
            web.get(f"{p}/tasks/{{task_id}}", self.show_task),
            web.post(f"{p}/tasks/{{task_id}}/kill", self.kill_task),
            web.get(f"{p}/tasks/{{task_id}}/logs/{{stream}}", self.task_logs),
            web.get(f"{p}/nodes", self.list_nodes),
            web.get(f"{p}/nodes/{{agent_id}}", self.show_node),
            web.get(f"{p}/cluster", self.cluster),
            web.get(f"{p}/cluster/backup", self.cluster_backup),
            web.post(f"{p}/cluster/leader", self.transfer_leader),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def version(self, request: web.Request) -> web.Response:
        # pymesos int()s every dotted part of "version": keep it Mesos-shaped.
        return json_response({"version": "1.11.0", "dcosd_version": __version__, "build_user": "dcosd"})

    # -- tasks ---------------------------------------------------------------------
    async def submit_task(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        self.master.require_leader()
        spec = TaskSpec.from_dict(await read_json(request), assign_id=True)
        answer = json_response({"task_id": spec.task_id}, status=201)  # ready before the write: it waits for that alone
        # Placement is woken by the commit itself (Master._on_commit), on whichever path it is applied.
        # Only the outcome is needed here (nothing is read after it): see RaftStore.propose.
        await self.master.store.propose({"type": "task_submit", "time": time.time(), "spec": spec.to_dict()},
                                        outcome_only=True)
        return answer

    async def list_tasks(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        state = request.query.get("state")
        if state is not None and state != "QUEUED" and state not in TaskState._value2member_map_:
            raise ValidationError(f"unknown state {state!r}")
        store = self.master.store
        out: list[dict[str, Any]] = []
        if state in (None, "QUEUED"):
            out.extend(views.queued_tasks(store))
        if state != "QUEUED":
            active_only = request.query.get("all") not in ("1", "true", "True") and state is None
            out.extend(views.tasks(store, state=state, agent_id=request.query.get("agent_id"),
                                   active_only=active_only, limit=int(_float_arg(request, "limit", 1000, 1, 100000))))
        return json_response({"tasks": out})

    async def show_task(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        task_id = request.match_info["task_id"]
        wait = _float_arg(request, "wait", 0.0, 0.0, MAX_WAIT)
        deadline = time.monotonic() + wait
        while True:
            t = views.task(self.master.store, task_id, waiting_reason=True)
            if t is None:
                raise NotFound(f"no task {task_id}")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (t["state"] != "QUEUED" and TaskState(t["state"]).terminal):
                return json_response(t)
            await self.master.wait_task_change(remaining)

    async def kill_task(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        self.master.require_leader()
        task_id = request.match_info["task_id"]
        result = await self.master.store.propose({"type": "task_kill", "task_id": task_id, "time": time.time(),
                                                  "uuid": new_uuid()})
        if result["agent_id"] and not TaskState(result["state"]).terminal:
            t = views.task(self.master.store, task_id, history=False)
            grace = t["spec"].get("kill_grace_seconds", 3.0) if t else 3.0
            self.master.agents.send(result["agent_id"], {"type": "kill", "task_id": task_id, "grace": grace})
        return json_response(result, status=202)

    async def task_logs(self, request: web.Request) -> web.StreamResponse:
        """Proxy a task's stdout/stderr from its agent (offset, follow)."""
        self.master.require_operator(request)
        task_id, stream = request.match_info["task_id"], request.match_info["stream"]
        if stream not in LOG_STREAMS:
            raise ValidationError(f"stream must be one of {', '.join(LOG_STREAMS)}")
        t = views.task(self.master.store, task_id, history=False)
        if t is None:
            raise NotFound(f"no task {task_id}")
        if not t.get("agent_id"):
            raise NotFound(f"task {task_id} has not been placed on an agent yet; it has no output")
        agent = views.agent(self.master.store, t["agent_id"])
        if agent is None:
            raise NotFound(f"agent {t['agent_id']} of task {task_id} is unknown")
        offset = int(_float_arg(request, "offset", 0, 0, 1 << 62))
        follow = request.query.get("follow") in ("1", "true", "True")
        url = f"{agent['address']}/dcosd/agent/v1/sandboxes/{task_id}/{stream}"
        params = {"offset": str(offset), "follow": "1" if follow else "0"}
        headers = {"Authorization": f"Bearer {self.master.cluster_secret}"}
        try:
            async with self.master.http.get(url, params=params, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)) as up:
                if up.status != 200:
                    body = await up.text()
                    raise Unavailable(f"agent {agent['hostname']} answered {up.status}: {body[:200]}")
                resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                                   "X-Dcosd-Offset": up.headers.get("X-Dcosd-Offset", str(offset))})
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise Unavailable(f"cannot reach agent {agent['hostname']} at {agent['address']}: {exc}") from exc

    # -- nodes and cluster ---------------------------------------------------------
    def _node(self, a: dict[str, Any], allocated: Resources) -> dict[str, Any]:
        total = Resources.from_dict(a["resources"])
        return {**a, "used": allocated.to_dict(), "free": (total - allocated).to_dict(),
                "connected": a["id"] in self.master.agents.sessions}

    async def list_nodes(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        alloc = views.allocated_by_agent(self.master.store)
        return json_response({"nodes": [self._node(a, alloc.get(a["id"], Resources()))
                                        for a in views.agents(self.master.store)]})

    async def show_node(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        agent_id = request.match_info["agent_id"]
        a = views.agent(self.master.store, agent_id)
        if a is None:
            matches = [x for x in views.agents(self.master.store) if x["hostname"] == agent_id]
            if len(matches) != 1:
                raise NotFound(f"no node {agent_id}")
            a = matches[0]
        alloc = views.allocated_by_agent(self.master.store).get(a["id"], Resources())
        node = self._node(a, alloc)
        node["tasks"] = views.live_tasks_on_agent(self.master.store, a["id"])
        # The allocator's view (leader memory): offered, allocated, reserved by role, available.
        node["allocation"] = self.master.scheduling.agent_view(a["id"])
        return json_response(node)

    async def cluster_backup(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        if self.master.ha is None:
            raise ValidationError("a backup is of replicated masters (--peers); a one-master cluster's state is "
                                  "its data directory: stop the master and copy it")
        path, index, term = await self.master.ha.backup()
        try:
            f = open(path, "rb")
        finally:
            os.unlink(path)  # the open file is read to its end; nothing is left behind, whatever happens
        loop = asyncio.get_running_loop()
        with f:
            resp = web.StreamResponse(headers={"X-Dcosd-Backup-Index": str(index), "X-Dcosd-Backup-Term": str(term)})
            resp.content_type = "application/octet-stream"
            resp.content_length = os.fstat(f.fileno()).st_size  # a client can tell a backup cut short
            await resp.prepare(request)
            while piece := await loop.run_in_executor(None, f.read, 1 << 20):  # the state may be large
                await resp.write(piece)
            await resp.write_eof()
        return resp

    async def transfer_leader(self, request: web.Request) -> web.Response:
        """``{"to": "m2"}`` (or ``{}``: the follower with the longest log) — reached on the leader (a
        follower answers 307 to it, as for any write). Answers once the new leader leads."""
        self.master.require_operator(request)
        if self.master.ha is None:
            raise ValidationError("a one-master cluster has no other master to hand leadership to")
        body = await read_json(request) if request.body_exists else {}
        if not isinstance(body, dict) or set(body) - {"to"}:
            raise ValidationError('expected {"to": "<master id>"} or {}')
        to = body.get("to")
        if to is not None and not isinstance(to, str):
            raise ValidationError('"to" must be a master id')
        return json_response(await self.master.ha.transfer_leadership(to))

    async def cluster(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        store = self.master.store
        agents = views.agents(store)
        total = Resources()
        for a in agents:
            if a["state"] == "ACTIVE":
                total = total + Resources.from_dict(a["resources"])
        used = Resources()
        for r in views.allocated_by_agent(store).values():
            used = used + r
        return json_response({
            "version": __version__,
            "masters": self.master.describe_masters(),
            "leader": self.master.advertise_url if self.master.ha is None else self.master.leader_url,
            "cluster_id": self.master.ha.cluster_id() if self.master.ha is not None else None,
            "agents": {"total": len(agents), "active": sum(a["state"] == "ACTIVE" for a in agents)},
            "tasks": views.task_counts(store),
            "resources": {"total": total.to_dict(), "used": used.to_dict()},
            "auth": self.master.config.auth,
        })
