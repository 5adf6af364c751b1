"""Operating the machines from the master: `node exec`, `task exec`, drain/undrain.

The master dials agents here only to proxy an operator's request (the design's
one exception to "agents dial out"). Every exec is recorded in committed state
before any agent is dialled (exec_start: who, what, where) and its outcome
after (exec_finish: each node's exit code and the tail of its output).

    POST /dcosd/v1/exec                     {"command": [..], "all"|"nodes"|"attributes", "parallel", "timeout"}
                                            → NDJSON: start, output (node-labelled), exit per node, summary
    GET  /dcosd/v1/exec/history             past runs, newest first
    POST /dcosd/v1/tasks/{task_id}/exec     {"command": [..], "timeout"} → NDJSON output, exit
    POST /dcosd/v1/nodes/{node}/drain       stop new placements there (committed)
    POST /dcosd/v1/nodes/{node}/undrain
    GET  /dcosd/v1/maintenance              nodes in maintenance
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import TYPE_CHECKING, Any, AsyncIterator

import aiohttp
from aiohttp import web

from dcosd.errors import Conflict, NotFound, Unavailable, ValidationError
from dcosd.httputil import bearer_token, json_response, read_json
from dcosd.master.state import views
from dcosd.model.ids import new_uuid

if TYPE_CHECKING:
    from dcosd.master.service import Master

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 3600.0
OUTPUT_TAIL = 2000


def who(request: web.Request) -> str:
    """The operator behind a request: the token's fingerprint (never the token) and the peer address."""
    token = bearer_token(request)
    ident = "token:" + hashlib.sha256(token.encode()).hexdigest()[:8] if token else "no-auth"
    return f"{ident}@{request.remote or '?'}"


def select_nodes(agents: list[dict[str, Any]], *, all_nodes: bool, nodes: list[str],
                 attributes: dict[str, str]) -> list[dict[str, Any]]:
    """The agents an exec targets: every one, the named ones (id or hostname), or those with every attribute."""
    if sum(bool(x) for x in (all_nodes, nodes, attributes)) != 1:
        raise ValidationError("choose exactly one of all, nodes, attributes")
    if all_nodes:
        return [a for a in agents if a["state"] == "ACTIVE"]
    if nodes:
        out = []
        for n in nodes:
            match = [a for a in agents if a["id"] == n or a["hostname"] == n]
            if not match:
                raise NotFound(f"no node {n}")
            out.extend(m for m in match if m not in out)
        return out
    return [a for a in agents if a["state"] == "ACTIVE"
            and all(str(a["attributes"].get(k)) == v for k, v in attributes.items())]


def resolve_node(store: Any, node: str) -> dict[str, Any]:
    a = views.agent(store, node)
    if a is not None:
        return a
    matches = [x for x in views.agents(store) if x["hostname"] == node]
    if len(matches) != 1:
        raise NotFound(f"no node {node}" if not matches else f"{len(matches)} nodes are called {node}; use the id")
    return matches[0]


def maintenance(store: Any) -> dict[str, dict[str, Any]]:
    return {aid: {"since": since, "who": w, "reason": reason}
            for aid, since, w, reason in store.query("SELECT agent_id, since, who, reason FROM node_maintenance")}


def _command(body: dict[str, Any]) -> list[str]:
    command = body.get("command")
    if isinstance(command, str):
        command = [command]
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise ValidationError("command must be a non-empty list of strings")
    return command


def _timeout(body: dict[str, Any]) -> float:
    try:
        t = float(body.get("timeout") or DEFAULT_TIMEOUT)
    except (TypeError, ValueError):
        raise ValidationError("timeout must be a number of seconds") from None
    if not 0 < t <= MAX_TIMEOUT:
        raise ValidationError(f"timeout must be in (0, {MAX_TIMEOUT:g}] seconds")
    return t


class NodeOps:
    def __init__(self, master: "Master") -> None:
        self.master = master

    def routes(self) -> list[web.RouteDef]:
        p = "/dcosd/v1"
        return [
            web.post(f"{p}/exec", self.node_exec),
            web.get(f"{p}/exec/history", self.history),
            web.post(f"{p}/tasks/{{task_id}}/exec", self.task_exec),
            web.post(f"{p}/nodes/{{node}}/drain", self.drain),
            web.post(f"{p}/nodes/{{node}}/undrain", self.undrain),
            web.get(f"{p}/maintenance", self.list_maintenance),
        ]

    # -- talking to one agent ------------------------------------------------------
    async def _agent_exec(self, agent: dict[str, Any], body: dict[str, Any], timeout: float) -> AsyncIterator[dict]:
        url = f"{agent['address']}/dcosd/agent/v1/exec"
        headers = {"Authorization": f"Bearer {self.master.cluster_secret}"}
        try:
            async with self.master.http.post(url, json=body, headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=timeout + 15, sock_connect=5)) as up:
                if up.status != 200:
                    text = await up.text()
                    try:
                        text = json.loads(text).get("message", text)
                    except (ValueError, AttributeError):
                        pass
                    yield {"error": f"agent answered {up.status}: {text[:300]}"}
                    return
                while True:
                    line = await up.content.readline()
                    if not line:
                        return
                    yield json.loads(line)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            yield {"error": f"cannot reach agent at {agent['address']}: {exc or type(exc).__name__}"}

    # -- node exec -----------------------------------------------------------------
    async def node_exec(self, request: web.Request) -> web.StreamResponse:
        self.master.require_operator(request)
        self.master.require_leader()
        body = await read_json(request)
        command, timeout = _command(body), _timeout(body)
        try:
            parallel = int(body.get("parallel") or 16)
        except (TypeError, ValueError):
            raise ValidationError("parallel must be an integer") from None
        if parallel < 1:
            raise ValidationError("parallel must be at least 1")
        attrs = body.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise ValidationError("attributes must be an object of key: value")
        targets = select_nodes(views.agents(self.master.store), all_nodes=bool(body.get("all")),
                               nodes=list(body.get("nodes") or []), attributes={str(k): str(v) for k, v in attrs.items()})
        if not targets:
            raise NotFound("no node matches")
        run_id = new_uuid()
        await self.master.store.propose({
            "type": "exec_start", "id": run_id, "who": who(request), "command": command, "time": time.time(),
            "targets": [{"agent_id": a["id"], "hostname": a["hostname"]} for a in targets]})
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "X-Dcosd-Exec-Id": run_id})
        await resp.prepare(request)
        lock = asyncio.Lock()

        async def emit(obj: dict[str, Any]) -> None:
            async with lock:
                try:
                    await resp.write((json.dumps(obj) + "\n").encode())
                except ConnectionResetError:
                    pass  # the operator went away; the run goes on and is recorded

        await emit({"type": "start", "id": run_id, "nodes": [{"agent_id": a["id"], "node": a["hostname"]}
                                                             for a in targets]})
        sem = asyncio.Semaphore(parallel)
        results: dict[str, dict[str, Any]] = {}

        async def one(agent: dict[str, Any]) -> None:
            label = agent["hostname"]
            tail: list[str] = []
            res: dict[str, Any] = {"node": label, "exit_code": None, "timed_out": False, "error": None}
            async with sem:
                if agent["state"] != "ACTIVE" or agent["id"] not in self.master.agents.sessions:
                    res["error"] = f"node is {agent['state'].lower()} (not connected)"
                else:
                    async for msg in self._agent_exec(agent, {"command": command, "timeout": timeout}, timeout):
                        if "stream" in msg:
                            tail.append(msg["data"])
                            await emit({"type": "output", "agent_id": agent["id"], "node": label,
                                        "stream": msg["stream"], "data": msg["data"]})
                        elif "error" in msg:
                            res["error"] = msg["error"]
                        elif "exit_code" in msg:
                            res["exit_code"], res["timed_out"] = msg["exit_code"], bool(msg.get("timed_out"))
            res["output"] = "".join(tail)[-OUTPUT_TAIL:]
            results[agent["id"]] = res
            await emit({"type": "exit", "agent_id": agent["id"], **{k: v for k, v in res.items() if k != "output"}})

        await asyncio.gather(*(one(a) for a in targets))
        failed = sum(1 for r in results.values() if r["exit_code"] != 0)
        await self.master.store.propose({"type": "exec_finish", "id": run_id, "results": results, "time": time.time()})
        await emit({"type": "summary", "id": run_id, "failed": failed,
                    "results": {aid: {k: v for k, v in r.items() if k != "output"} for aid, r in results.items()}})
        await resp.write_eof()
        return resp

    async def history(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "50"))))
        except ValueError:
            raise ValidationError("limit must be an integer") from None
        runs = []
        for rid, w, cmd, targets, started, finished, results, failed in self.master.store.query(
                "SELECT id, who, command, targets, started_at, finished_at, results, failed FROM exec_runs"
                " ORDER BY started_at DESC LIMIT ?", (limit,)):
            runs.append({"id": rid, "who": w, "command": json.loads(cmd), "targets": json.loads(targets),
                         "started_at": started, "finished_at": finished,
                         "results": json.loads(results) if results else None, "failed": failed})
        return json_response({"runs": runs})

    # -- task exec -----------------------------------------------------------------
    async def task_exec(self, request: web.Request) -> web.StreamResponse:
        self.master.require_operator(request)
        self.master.require_leader()
        task_id = request.match_info["task_id"]
        body = await read_json(request)
        command, timeout = _command(body), _timeout(body)
        t = views.task(self.master.store, task_id, history=False)
        if t is None:
            raise NotFound(f"no task {task_id}")
        if t["state"] != "TASK_RUNNING" or not t.get("agent_id"):
            raise Conflict(f"task {task_id} is {t['state']}; exec needs a running task")
        agent = views.agent(self.master.store, t["agent_id"])
        if agent is None or agent["id"] not in self.master.agents.sessions:
            raise Unavailable(f"the agent of task {task_id} is not connected")
        run_id = new_uuid()
        await self.master.store.propose({
            "type": "exec_start", "id": run_id, "who": who(request), "command": command, "time": time.time(),
            "targets": [{"agent_id": agent["id"], "hostname": agent["hostname"], "task_id": task_id}]})
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "X-Dcosd-Exec-Id": run_id})
        await resp.prepare(request)
        res: dict[str, Any] = {"node": agent["hostname"], "task_id": task_id, "exit_code": None, "error": None}
        tail: list[str] = []
        async for msg in self._agent_exec(agent, {"command": command, "timeout": timeout, "task_id": task_id}, timeout):
            if "stream" in msg:
                tail.append(msg["data"])
            elif "error" in msg:
                res["error"] = msg["error"]
            elif "exit_code" in msg:
                res["exit_code"] = msg["exit_code"]
                res["timed_out"] = bool(msg.get("timed_out"))
            try:
                await resp.write((json.dumps(msg) + "\n").encode())
            except ConnectionResetError:
                pass
        res["output"] = "".join(tail)[-OUTPUT_TAIL:]
        await self.master.store.propose({"type": "exec_finish", "id": run_id, "results": {agent["id"]: res},
                                         "time": time.time()})
        await resp.write_eof()
        return resp

    # -- maintenance -----------------------------------------------------------------
    async def drain(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        self.master.require_leader()
        a = resolve_node(self.master.store, request.match_info["node"])
        body = await read_json(request) if request.can_read_body else {}
        result = await self.master.store.propose({"type": "node_drain", "agent_id": a["id"], "time": time.time(),
                                                  "who": who(request), "reason": str(body.get("reason", ""))})
        moving = await self._move_services(a["id"]) if result.get("changed") else {}
        return json_response({**result, "hostname": a["hostname"], "services": moving})

    async def _move_services(self, agent_id: str) -> dict[str, Any]:
        """A deployment of each app with an instance on the drained node, to show and lock the move.

        The move itself is the services planner's (planner.py): instances on a node in maintenance
        are replaced elsewhere (the node takes no offers) and each is killed only once its
        replacement is ready, so the app keeps its ready count, let alone its minimumHealthCapacity;
        the other instances are left alone. The deployment carries the app's unchanged definition
        (a ScaleApplication action: no new config version) and finishes when no instance of the app
        is left on a draining node. If another deployment holds the app, the instances move all the
        same; the answer says so.
        """
        services = getattr(self.master, "services", None)
        if services is None:
            return {}
        from dcosd.master.services import reads

        apps = sorted({t.app_id for t in reads.live_tasks(self.master.store) if t.agent_id == agent_id and t.app_id})
        out: dict[str, Any] = {}
        for app_id in apps:
            row = reads.app(self.master.store, app_id)
            if row is None:
                continue
            try:
                out[app_id] = await services.api._deploy({app_id: row.spec}, force=False)
            except Exception as exc:  # noqa: BLE001 — e.g. a deployment already running: say so, keep going
                out[app_id] = {"error": getattr(exc, "message", str(exc))}
        services.framework.wake()
        return out

    async def undrain(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        self.master.require_leader()
        a = resolve_node(self.master.store, request.match_info["node"])
        result = await self.master.store.propose({"type": "node_undrain", "agent_id": a["id"], "time": time.time()})
        return json_response({**result, "hostname": a["hostname"]})

    async def list_maintenance(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        return json_response({"nodes": maintenance(self.master.store)})
