"""Mesos v1 executor API on the agent: ``POST /api/v1/executor`` for custom executors (pymesos').

A task whose spec carries a Mesos ``executor`` (``spec["mesos"]``, set by the
master's scheduler API) is not run by the backend directly: it goes to that
framework's executor on this agent. The first such task starts the executor —
itself launched like a task through the executor backend (own sandbox, own
process group, limits = executor + first task resources) with the Mesos
environment (MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID,
MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD, MESOS_CHECKPOINT only when true). Later
tasks for the same executor id go to the running executor; the master charged
its resources once.

The executor subscribes (RecordIO stream, as the scheduler API) and gets
SUBSCRIBED, then LAUNCH / LAUNCH_GROUP for its tasks, KILL, MESSAGE,
ACKNOWLEDGED (once the master committed an update) and SHUTDOWN. Its UPDATE
calls lack ``agent_id``: the agent adds it, checkpoints the update and forwards
it like its own (until acknowledged). An executor with no live task left is
shut down; one that exits takes its live tasks with it (TASK_FAILED, or
TASK_KILLED when a kill was asked). Executors do not survive an agent restart
(pymesos executors without MESOS_CHECKPOINT end themselves when the agent goes).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dcosd.errors import DcosdError, ValidationError
from dcosd.executor.base import LaunchFailed, LaunchRequest, TaskEnded
from dcosd.httputil import read_json
from dcosd.model import mesos
from dcosd.model.ids import sanitize_name
from dcosd.model.mesos import value_of, wrap
from dcosd.model.resources import Resources
from dcosd.model.states import Reason, Source, TaskState
from dcosd.model.task import TaskSpec

if TYPE_CHECKING:
    from dcosd.agent.service import Agent

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5.0  # MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD
IDLE_SHUTDOWN = 2.0  # an executor with no live task is shut down after this long
KILL_ESCALATION = 5.0  # a task not ended this long after its kill grace takes its executor down
HEARTBEAT = 30.0


def _record(event: dict[str, Any]) -> bytes:
    data = json.dumps(event).encode()
    return str(len(data)).encode() + b"\n" + data


@dataclass
class ExecutorRun:
    framework_id: str
    executor_id: str
    backend_id: str
    info: dict[str, Any]
    framework_info: dict[str, Any]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # live task id -> its launch event
    pending: list[dict[str, Any]] = field(default_factory=list)  # events waiting for SUBSCRIBE
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    subscribed: bool = False
    stream_id: str = ""
    ended: bool = False
    shutting_down: bool = False
    killed: set[str] = field(default_factory=set)

    def send(self, event: dict[str, Any]) -> None:
        if self.subscribed:
            self.queue.put_nowait(event)
        else:
            self.pending.append(event)


class ExecutorManager:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self.runs: dict[tuple[str, str], ExecutorRun] = {}
        self._by_backend: dict[str, ExecutorRun] = {}
        self._unacked: dict[str, tuple[ExecutorRun, str]] = {}  # update uuid -> run, task id
        self._timers: set[asyncio.Task] = set()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/v1/executor", self.handle), web.post("/slave(1)/api/v1/executor", self.handle)]

    # -- questions from the agent ---------------------------------------------------
    @staticmethod
    def is_executor_task(spec: dict[str, Any]) -> bool:
        return bool(spec.get("executor_id")) and isinstance(spec.get("mesos"), dict)

    def owns(self, backend_id: str) -> bool:
        return backend_id in self._by_backend

    def run_of(self, task_id: str) -> ExecutorRun | None:
        for run in self.runs.values():
            if task_id in run.tasks:
                return run
        return None

    def _later(self, delay: float, coro_fn: Any, *args: Any) -> None:
        async def go() -> None:
            await asyncio.sleep(delay)
            await coro_fn(*args)

        t = asyncio.get_running_loop().create_task(go())
        self._timers.add(t)
        t.add_done_callback(self._timers.discard)

    async def close(self) -> None:
        for t in list(self._timers):
            t.cancel()
        for run in self.runs.values():
            run.queue.put_nowait(None)

    # -- launch ----------------------------------------------------------------------
    async def launch(self, task_id: str, spec: dict[str, Any], resources: dict[str, Any]) -> None:
        m = spec["mesos"]
        fid, eid = spec["framework_id"], spec["executor_id"]
        run = self.runs.get((fid, eid))
        if run is None or run.ended or run.shutting_down:
            run = await self._start(fid, eid, m, spec, resources)
            if run is None:
                return
        task_info = {**m["task"], "agent_id": wrap(self.agent.agent_id or "")}
        if m.get("group"):
            event = {"type": "LAUNCH_GROUP", "launch_group": {"executor_info": run.info,
                                                              "task_group": {"tasks": [task_info]}}}
        else:
            event = {"type": "LAUNCH", "launch": {"task": task_info}}
        run.tasks[task_id] = event
        run.send(event)

    async def _start(self, fid: str, eid: str, m: dict[str, Any], spec: dict[str, Any],
                     resources: dict[str, Any]) -> ExecutorRun | None:
        agent = self.agent
        info = dict(m["executor"])
        digest = hashlib.sha1(f"{fid}/{eid}".encode()).hexdigest()[:8]
        backend_id = f"executor.{sanitize_name(eid)[:60]}.{digest}.{uuidlib.uuid4().hex[:6]}"
        run = ExecutorRun(fid, eid, backend_id, info, {**m.get("framework", {}), "id": wrap(fid)})
        self.runs[(fid, eid)] = run
        self._by_backend[backend_id] = run
        try:
            cmd = mesos.command_fields(info.get("command") or {}, "executor.command")
            ex_res = mesos.flatten(mesos.parse_resources(info.get("resources"), "executor resources"))
            limits = ex_res + Resources.from_dict(resources)
            user = spec.get("user")
            tspec = TaskSpec.from_dict({"task_id": backend_id, "name": f"executor {eid}"[:200],
                                        "resources": limits.to_dict(), "kill_grace_seconds": SHUTDOWN_GRACE,
                                        "framework_id": fid, **({"cmd": cmd["cmd"]} if "cmd" in cmd else
                                                                {"argv": cmd["argv"]}),
                                        **({"user": cmd.get("user") or user} if (cmd.get("user") or user) else {})})
            run_user = agent._task_user(tspec)
            if run_user == "root" and not agent.config.allow_root_tasks:
                raise LaunchFailed("executors may not run as root on this agent (start it with --allow-root-tasks)",
                                   Reason.TASK_INVALID)
            from dcosd.agent.service import _make_sandbox

            sandbox = agent.backend.sandbox_path(backend_id)
            await asyncio.get_running_loop().run_in_executor(None, _make_sandbox, sandbox, run_user)
            env = agent._task_env(tspec, limits.to_dict(), sandbox)
            for k in ("MESOS_TASK_ID", "DCOSD_TASK_ID"):
                env.pop(k, None)
            host = agent.config.host if agent.config.host not in ("0.0.0.0", "", "::") else "127.0.0.1"
            env.update({
                "MESOS_AGENT_ENDPOINT": f"{host}:{agent.bound_port}", "MESOS_FRAMEWORK_ID": fid,
                "MESOS_EXECUTOR_ID": eid, "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{SHUTDOWN_GRACE:g}secs",
                "MESOS_DIRECTORY": str(sandbox), "MESOS_SLAVE_ID": agent.agent_id or "",
                "MESOS_SLAVE_PID": f"slave(1)@{host}:{agent.bound_port}",
                "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            })
            if run.framework_info.get("checkpoint"):
                env["MESOS_CHECKPOINT"] = "1"
            env.update(cmd.get("env", {}))
            await agent.backend.launch(LaunchRequest(spec=tspec, sandbox=sandbox, env=env, user=run_user))
        except (LaunchFailed, ValidationError, DcosdError, OSError) as exc:
            reason = getattr(exc, "reason", Reason.CONTAINER_LAUNCH_FAILED)
            log.warning("executor %s of %s could not start: %s", eid, fid, exc)
            run.ended = True
            self._forget(run)
            await self.agent.executor_task_update(spec["task_id"], TaskState.FAILED, reason=reason,
                                                  message=f"executor could not start: {exc}")
            return None
        log.info("executor %s of framework %s started as %s", eid, fid, backend_id)
        return run

    def _forget(self, run: ExecutorRun) -> None:
        if self.runs.get((run.framework_id, run.executor_id)) is run:
            del self.runs[(run.framework_id, run.executor_id)]
        self._by_backend.pop(run.backend_id, None)

    # -- kill, shutdown, exit -----------------------------------------------------------
    async def kill(self, task_id: str, grace: float) -> None:
        run = self.run_of(task_id)
        if run is None:
            return
        run.killed.add(task_id)
        if not run.subscribed:
            run.pending = [e for e in run.pending if _event_task(e) != task_id]
            run.tasks.pop(task_id, None)
            await self.agent.executor_task_update(task_id, TaskState.KILLED, message="killed before the executor"
                                                  " took it", reason=Reason.TASK_KILLED_DURING_LAUNCH)
            self._idle_check(run)
            return
        run.send({"type": "KILL", "kill": {"task_id": wrap(task_id)}})
        self._later(grace + KILL_ESCALATION, self._escalate, run, task_id)

    async def _escalate(self, run: ExecutorRun, task_id: str) -> None:
        if task_id in run.tasks and not run.ended:
            log.warning("task %s outlived its kill by %gs: shutting its executor %s down", task_id, KILL_ESCALATION,
                        run.executor_id)
            await self.shutdown(run)

    async def shutdown(self, run: ExecutorRun) -> None:
        if run.ended or run.shutting_down:
            return
        run.shutting_down = True
        run.send({"type": "SHUTDOWN"})
        self._later(SHUTDOWN_GRACE + 1.0, self._force, run)

    async def _force(self, run: ExecutorRun) -> None:
        if not run.ended:
            await self.agent.backend.kill(run.backend_id, 0.0)

    def _idle_check(self, run: ExecutorRun) -> None:
        if not run.tasks and not run.ended:
            async def maybe() -> None:
                if not run.tasks:
                    await self.shutdown(run)

            self._later(IDLE_SHUTDOWN, maybe)

    async def on_exit(self, ended: TaskEnded) -> None:
        run = self._by_backend.get(ended.task_id)
        if run is None:
            return
        run.ended = True
        run.queue.put_nowait(None)
        self._forget(run)
        log.info("executor %s of %s ended: %s", run.executor_id, run.framework_id, ended.message)
        for task_id in list(run.tasks):
            if task_id in run.killed:
                await self.agent.executor_task_update(task_id, TaskState.KILLED, message="killed (executor ended)")
            else:
                await self.agent.executor_task_update(task_id, TaskState.FAILED, reason=Reason.EXECUTOR_TERMINATED,
                                                      message=f"executor ended: {ended.message}")
        run.tasks.clear()

    # -- the master's side ----------------------------------------------------------
    def acked(self, uuids: list[str]) -> None:
        for u in uuids:
            hit = self._unacked.pop(u, None)
            if hit is not None:
                run, task_id = hit
                if not run.ended:
                    run.send({"type": "ACKNOWLEDGED", "acknowledged": {"task_id": wrap(task_id), "uuid": u}})

    async def on_master_message(self, msg: dict[str, Any]) -> None:
        run = self.runs.get((msg.get("framework_id", ""), msg.get("executor_id", "")))
        if run is None:
            return
        if msg["type"] == "framework_message":
            run.send({"type": "MESSAGE", "message": {"data": msg.get("data", "")}})
        elif msg["type"] == "shutdown_executor":
            await self.shutdown(run)

    # -- HTTP ------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise ValidationError("an executor call must be a JSON object with a 'type'")
        fid = value_of(body.get("framework_id"), "framework_id")
        eid = value_of(body.get("executor_id"), "executor_id")
        run = self.runs.get((fid or "", eid or ""))
        if run is None or run.ended:
            return web.json_response({"message": f"no executor {eid} of framework {fid} on this agent"}, status=403)
        kind = body["type"]
        if kind == "SUBSCRIBE":
            return await self._subscribe(request, run)
        if kind == "UPDATE":
            await self._update(run, body.get("update"))
        elif kind == "MESSAGE":
            data = (body.get("message") or {}).get("data", "")
            await self.agent.forward_framework_message(run.framework_id, run.executor_id, data)
        else:
            raise ValidationError(f"unknown executor call type {kind!r}")
        return web.Response(status=202)

    async def _subscribe(self, request: web.Request, run: ExecutorRun) -> web.StreamResponse:
        if run.subscribed:
            run.queue.put_nowait(None)  # end the previous stream
            run.queue = asyncio.Queue()
        run.stream_id = str(uuidlib.uuid4())
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Mesos-Stream-Id": run.stream_id})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        agent = self.agent
        agent_info = {"id": wrap(agent.agent_id or ""), "hostname": agent.config.hostname or "localhost",
                      "port": agent.bound_port}
        info = {**run.info, "executor_id": wrap(run.executor_id), "framework_id": wrap(run.framework_id)}
        await resp.write(_record({"type": "SUBSCRIBED", "subscribed": {
            "executor_info": info, "framework_info": run.framework_info, "agent_info": agent_info,
            "container_id": {"value": run.backend_id}}}))
        run.subscribed = True
        for event in run.pending:
            run.queue.put_nowait(event)
        run.pending = []
        queue = run.queue
        last = time.monotonic()
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), 1.0)
                except asyncio.TimeoutError:
                    event = {}
                if request.transport is None or request.transport.is_closing():
                    break
                if event is None:
                    await resp.write_eof()
                    break
                if not event:
                    if time.monotonic() - last < HEARTBEAT:
                        continue
                    event = {"type": "HEARTBEAT"}
                await resp.write(_record(event))
                last = time.monotonic()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            if run.queue is queue:
                run.subscribed = False
        return resp

    async def _update(self, run: ExecutorRun, update: Any) -> None:
        if not isinstance(update, dict) or not isinstance(update.get("status"), dict):
            raise ValidationError("UPDATE needs update.status")
        st = update["status"]
        task_id = value_of(st.get("task_id"), "status.task_id")
        state = st.get("state")
        if not mesos.is_state(state):
            raise ValidationError(f"status.state {state!r} is not a task state")
        if task_id not in run.tasks:
            raise ValidationError(f"task {task_id} is not a live task of this executor")
        uuid = st.get("uuid") if isinstance(st.get("uuid"), str) and st["uuid"] else str(uuidlib.uuid4())
        reason = st.get("reason") if st.get("reason") in Reason._value2member_map_ else None
        msg = st.get("message") if isinstance(st.get("message"), str) else ""
        ts = st.get("timestamp")
        ts = float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else time.time()
        healthy = st.get("healthy") if isinstance(st.get("healthy"), bool) else None
        self._unacked[uuid] = (run, task_id or "")
        new = TaskState(state)
        await self.agent.executor_task_update(task_id or "", new, reason=Reason(reason) if reason else None,
                                              message=msg, uuid=uuid, timestamp=ts, source=Source.EXECUTOR,
                                              healthy=healthy)
        if new.terminal:
            run.tasks.pop(task_id or "", None)
            self._idle_check(run)


def _event_task(event: dict[str, Any]) -> str | None:
    if event["type"] == "LAUNCH":
        return event["launch"]["task"]["task_id"]["value"]
    if event["type"] == "LAUNCH_GROUP":
        return event["launch_group"]["task_group"]["tasks"][0]["task_id"]["value"]
    return None
