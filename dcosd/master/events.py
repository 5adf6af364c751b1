"""Live events for the web UI: every committed command, summarised, over server-sent events.

Fed by the state store's commit listeners, so an event is only ever a committed
fact. Events are small (ids and states, never specs): the page patches its
views from them and fetches details itself. Each subscriber has a bounded
queue; a subscriber that falls behind gets one ``resync`` event instead of an
ever-growing backlog, and reloads its views.

    GET /dcosd/v1/events          text/event-stream; `data: {"seq", "kind", "time", ...}`
    GET /dcosd/v1/events/recent   the last RECENT events as JSON (the overview's list)
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dcosd.httputil import json_response

if TYPE_CHECKING:
    from dcosd.master.service import Master

RECENT = 200
QUEUE_LIMIT = 2000
KEEPALIVE = 15.0
# Commands too frequent or too internal to show: they change nothing an operator looks at.
QUIET = {"task_pending_reason", "framework_ack", "framework_updates_add", "cluster_init"}


def summarise(command: dict[str, Any], result: Any) -> dict[str, Any] | None:
    """The event a committed command makes, or None."""
    kind = command.get("type", "")
    if kind in QUIET or kind.startswith("raft_"):
        return None
    ev: dict[str, Any] = {"kind": kind}
    if kind == "task_submit":
        ev.update(task_id=command["spec"]["task_id"], name=command["spec"].get("name"))
    elif kind == "task_place":
        ev.update(task_id=command["task_id"], agent_id=command["agent_id"])
    elif kind == "task_status":
        applied = set(result.get("applied", [])) if isinstance(result, dict) else set()
        ups = [[u["task_id"], u["state"]] for u in command.get("updates", []) if u["task_id"] in applied]
        if not ups:
            return None
        ev.update(agent_id=command.get("agent_id"), updates=ups)
    elif kind == "task_master_status":
        changed = set(result) if isinstance(result, list) else set()
        ups = [[u["task_id"], u["state"]] for u in command.get("updates", []) if u["task_id"] in changed]
        if not ups:
            return None
        ev.update(updates=ups)
    elif kind == "task_kill":
        ev.update(task_id=command.get("task_id"))
    elif kind == "agent_register":
        ev.update(agent_id=command["agent"]["id"], hostname=command["agent"].get("hostname"))
    elif kind in ("agent_unreachable", "agent_lost", "node_drain", "node_undrain"):
        ev.update(agent_id=command.get("agent_id"))
        if isinstance(result, list):
            ev["tasks"] = len(result)
    elif kind == "exec_start":
        ev.update(id=command["id"], who=command.get("who"), command=command["command"],
                  targets=len(command.get("targets", [])))
    elif kind == "exec_finish":
        ev.update(id=command["id"], failed=result.get("failed") if isinstance(result, dict) else None)
    elif kind == "framework_launch":
        ev.update(framework_id=command.get("framework_id"), agent_id=command.get("agent_id"),
                  tasks=len(command.get("tasks", [])))
    else:
        # Commands of other parts (services, jobs, packages): their ids, whatever they are called.
        for key in ("app_id", "id", "job_id", "run_id", "deployment_id", "framework_id", "agent_id", "name"):
            v = command.get(key)
            if isinstance(v, (str, int, float)):
                ev[key] = v
    return ev


class EventHub:
    def __init__(self, master: "Master") -> None:
        self.master = master
        self.seq = 0
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT)
        self.subscribers: set[asyncio.Queue] = set()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/dcosd/v1/events", self.stream), web.get("/dcosd/v1/events/recent", self.list_recent)]

    def on_commit(self, command: dict[str, Any], result: Any) -> None:
        ev = summarise(command, result)
        if ev is None:
            return
        self.publish(ev, command.get("time"))

    def publish(self, ev: dict[str, Any], when: float | None = None) -> None:
        self.seq += 1
        ev = {"seq": self.seq, "time": when if isinstance(when, (int, float)) else time.time(), **ev}
        self.recent.append(ev)
        for q in list(self.subscribers):
            if q.qsize() >= QUEUE_LIMIT:
                while not q.empty():
                    q.get_nowait()
                q.put_nowait({"seq": self.seq, "kind": "resync"})
            else:
                q.put_nowait(ev)

    async def list_recent(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        try:
            limit = max(1, min(RECENT, int(request.query.get("limit", "50"))))
        except ValueError:
            limit = 50
        return json_response({"events": list(self.recent)[-limit:][::-1], "seq": self.seq})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.master.require_operator(request)
        q: asyncio.Queue = asyncio.Queue()
        self.subscribers.add(q)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        try:
            await resp.prepare(request)
            await resp.write(f"retry: 2000\ndata: {json.dumps({'seq': self.seq, 'kind': 'hello'})}\n\n".encode())
            while True:
                try:
                    ev = await asyncio.wait_for(q.get(), KEEPALIVE)
                except asyncio.TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                batch = [ev]
                while not q.empty() and len(batch) < 500:
                    batch.append(q.get_nowait())
                await resp.write("".join(f"data: {json.dumps(e)}\n\n" for e in batch).encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.subscribers.discard(q)
        return resp
