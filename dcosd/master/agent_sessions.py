"""The master's side of the agent protocol: registration, heartbeats, the work stream, status updates.

Agents dial out to the master; nothing here dials an agent. An agent registers
(reporting what it runs), then holds a long-lived GET stream on which the
master pushes work as JSON lines — launch and kill messages stamped with the
master's term — and posts heartbeats and status updates. Registration is also
reconciliation: the master compares what the agent reports with what it
recorded and resends launches, orders kills and declares lost tasks so both
sides converge. Which agents are connected, and when each was last heard from,
is soft state of the leading master; everything else is committed state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dcosd.errors import NotFound, ValidationError
from dcosd.httputil import json_response, read_json
from dcosd.master.state import views
from dcosd.master.state.machine import AGENT_ACTIVE
from dcosd.model.ids import new_agent_id, new_uuid
from dcosd.model.resources import ResourceError, Resources
from dcosd.model.states import Reason, TaskState
from dcosd.model.task import TaskStatus

if TYPE_CHECKING:
    from dcosd.master.service import Master

log = logging.getLogger(__name__)

STREAM_KEEPALIVE = 5.0
STREAM_BATCH = 1000  # messages in one write of the work stream at most
_LAST = ("replaced", "closing")  # a stream ends after these


@dataclass
class AgentSession:
    agent_id: str
    last_seen: float
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    streams: int = 0  # open work streams; a newer stream replaces an older one

    def send(self, message: dict[str, Any]) -> None:
        self.queue.put_nowait(message)


def _validate_registration(body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not isinstance(body, dict) or not isinstance(body.get("agent"), dict):
        raise ValidationError("registration must be an object with an 'agent' object")
    a = body["agent"]
    for key in ("hostname", "ip", "address"):
        if not isinstance(a.get(key), str) or not a[key]:
            raise ValidationError(f"agent.{key} must be a non-empty string")
    try:
        Resources.from_dict(a.get("resources", {}))
    except ResourceError as exc:
        raise ValidationError(f"agent.resources: {exc}") from exc
    if a.get("id") is not None and not isinstance(a["id"], str):
        raise ValidationError("agent.id must be a string")
    if not isinstance(a.get("attributes", {}), dict):
        raise ValidationError("agent.attributes must be an object")
    tasks = body.get("tasks", [])
    if not isinstance(tasks, list) or not all(
            isinstance(t, dict) and isinstance(t.get("task_id"), str) and t.get("state") in TaskState._value2member_map_
            for t in tasks):
        raise ValidationError("tasks must be a list of {task_id, state}")
    return a, tasks


class AgentSessions:
    def __init__(self, master: "Master") -> None:
        self.master = master
        self.sessions: dict[str, AgentSession] = {}

    def routes(self) -> list[web.RouteDef]:
        p = "/dcosd/internal/v1/agents"
        return [
            web.post(f"{p}/register", self.register),
            web.get(f"{p}/{{agent_id}}/stream", self.stream),
            web.post(f"{p}/{{agent_id}}/heartbeat", self.heartbeat),
            web.post(f"{p}/{{agent_id}}/status", self.status),
        ]

    def _session(self, agent_id: str) -> AgentSession:
        s = self.sessions.get(agent_id)
        if s is None:
            raise NotFound(f"agent {agent_id} is not registered with this master; register again")
        return s

    def send(self, agent_id: str | None, message: dict[str, Any]) -> bool:
        s = self.sessions.get(agent_id) if agent_id else None
        if s is None:
            return False
        s.send({**message, "term": self.master.term})
        return True

    # -- handlers ------------------------------------------------------------------
    async def register(self, request: web.Request) -> web.Response:
        self.master.require_agent_secret(request)
        self.master.require_leader()
        agent, reported = _validate_registration(await read_json(request))
        agent_id = agent.get("id") or new_agent_id()
        now = time.time()
        await self.master.store.propose({"type": "agent_register", "time": now, "agent": {**agent, "id": agent_id}})
        session = AgentSession(agent_id, time.monotonic())
        old = self.sessions.get(agent_id)
        self.sessions[agent_id] = session
        if old is not None:
            old.send({"type": "replaced"})  # ends the stream of the agent's previous incarnation
        await self._reconcile(session, {t["task_id"]: TaskState(t["state"]) for t in reported})
        self.master.placement_wanted()
        log.info("agent %s (%s) registered with %d task(s)", agent_id, agent["hostname"], len(reported))
        return json_response({"agent_id": agent_id, "term": self.master.term,
                              "heartbeat_interval": self.master.config.heartbeat_interval})

    async def _reconcile(self, session: AgentSession, reported: dict[str, TaskState]) -> None:
        store = self.master.store
        recorded = {t["id"]: t for t in views.live_tasks_on_agent(store, session.agent_id)}
        lost, back = [], []
        for task_id, t in recorded.items():
            state = TaskState(t["state"])
            if task_id not in reported:
                if state is TaskState.STAGING:
                    session.send(self._launch_message(t))
                else:
                    lost.append({"task_id": task_id, "state": TaskState.LOST.value,
                                 "reason": Reason.AGENT_RESTARTED.value,
                                 "message": "the agent no longer knows this task"})
                continue
            if t["kill_requested"]:
                session.send({"type": "kill", "task_id": task_id,
                              "grace": t["spec"].get("kill_grace_seconds", 3.0), "term": self.master.term})
            agent_state = reported[task_id]
            if state is TaskState.UNREACHABLE and not agent_state.terminal:
                back.append({"task_id": task_id, "state": agent_state.value,
                             "reason": Reason.RECONCILIATION.value, "message": "agent re-registered"})
        for task_id, agent_state in reported.items():
            if task_id not in recorded and not agent_state.terminal:
                # Unknown or already terminal here (e.g. declared lost): it must not keep running.
                session.send({"type": "kill", "task_id": task_id, "grace": 0.0, "term": self.master.term,
                              "reason": "the master does not know this task as live"})
        if lost or back:
            await store.propose({"type": "task_master_status", "time": time.time(), "uuid": new_uuid(),
                                 "updates": lost + back})

    def _launch_message(self, t: dict[str, Any]) -> dict[str, Any]:
        return {"type": "launch", "task": t["spec"], "resources": t["resources"], "term": self.master.term}

    def launch(self, task: dict[str, Any]) -> None:
        s = self.sessions.get(task["agent_id"])
        if s is not None:
            s.send(self._launch_message(task))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.master.require_agent_secret(request)
        self.master.require_leader()
        session = self._session(request.match_info["agent_id"])
        session.streams += 1
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        try:
            while self.sessions.get(session.agent_id) is session:
                try:
                    msg = await asyncio.wait_for(session.queue.get(), STREAM_KEEPALIVE)
                except asyncio.TimeoutError:
                    msg = {"type": "ping", "term": self.master.term}
                session.last_seen = time.monotonic()
                # Everything already queued goes in the same write: a deployment queues hundreds of
                # launches at once, and one write per loop turn would pace them by the loop's load.
                batch = [msg]
                while len(batch) < STREAM_BATCH and batch[-1]["type"] not in _LAST and not session.queue.empty():
                    batch.append(session.queue.get_nowait())
                await resp.write(b"".join(json.dumps(m).encode() + b"\n" for m in batch))
                if batch[-1]["type"] in _LAST:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            session.streams -= 1
        return resp

    async def heartbeat(self, request: web.Request) -> web.Response:
        self.master.require_agent_secret(request)
        self.master.require_leader()
        agent_id = request.match_info["agent_id"]
        session = self._session(agent_id)
        row = views.agent(self.master.store, agent_id)
        if row is None or row["state"] != AGENT_ACTIVE:
            raise NotFound(f"agent {agent_id} was marked {row['state'] if row else 'unknown'}; register again")
        session.last_seen = time.monotonic()
        return json_response({"term": self.master.term})

    async def status(self, request: web.Request) -> web.Response:
        self.master.require_agent_secret(request)
        self.master.require_leader()
        agent_id = request.match_info["agent_id"]
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("updates"), list):
            raise ValidationError("status must be an object with a list of 'updates'")
        updates = [TaskStatus.from_dict(u).to_dict() for u in body["updates"]]
        if agent_id in self.sessions:
            self.sessions[agent_id].last_seen = time.monotonic()
        result = await self.master.store.propose(
            {"type": "task_status", "time": time.time(), "agent_id": agent_id, "updates": updates})
        return json_response({"acked": result["acked"]})

    def close_all(self) -> None:
        """End every work stream now (this master stops leading or stops): agents re-register elsewhere."""
        for s in self.sessions.values():
            s.send({"type": "closing"})
        self.sessions.clear()

    # -- liveness ------------------------------------------------------------------
    async def monitor(self) -> None:
        """Mark silent agents unreachable, then their tasks lost after the grace period."""
        cfg = self.master.config
        while True:
            await asyncio.sleep(min(1.0, cfg.agent_timeout / 4))
            now_mono, now = time.monotonic(), time.time()
            for a in views.agents(self.master.store):
                s = self.sessions.get(a["id"])
                if a["state"] == AGENT_ACTIVE:
                    last = s.last_seen if s else self.master.leader_since
                    if now_mono - last > cfg.agent_timeout:
                        log.warning("agent %s (%s) missed heartbeats for %.0fs: unreachable",
                                    a["id"], a["hostname"], now_mono - last)
                        self.sessions.pop(a["id"], None)
                        await self.master.store.propose(
                            {"type": "agent_unreachable", "agent_id": a["id"], "time": now, "uuid": new_uuid()})
                elif a["unreachable_since"] and now - a["unreachable_since"] > cfg.unreachable_grace:
                    if views.tasks(self.master.store, agent_id=a["id"], state=TaskState.UNREACHABLE.value, limit=1):
                        log.warning("agent %s unreachable past the grace period: its tasks are lost", a["id"])
                        await self.master.store.propose(
                            {"type": "agent_lost", "agent_id": a["id"], "time": now, "uuid": new_uuid()})
