"""Mesos v1 scheduler API: ``POST /api/v1/scheduler`` (also under ``/master/``).

SUBSCRIBE answers ``200`` with a chunked RecordIO stream (``<length>\\n<json>``
records) and a ``Mesos-Stream-Id`` header; every other call names the
framework, carries that header, and is answered ``202`` — even an ACCEPT of a
stale offer, whose tasks are then reported TASK_DROPPED/REASON_INVALID_OFFERS
(pymesos aborts on any other status). A call from a framework that is not
subscribed is ``403``; a malformed body or unknown call type is ``400``.

Frameworks and their unacknowledged status updates are committed state
(``state/frameworks.py``): a re-subscribing framework — to this leader or the
next — gets every update it has not acknowledged, again, until it does.
Wire facts: ../../shared COMPAT.md §1; pymesos 0.3.15 is the reference client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
import uuid as uuidlib
from typing import TYPE_CHECKING, Any, Mapping

from aiohttp import web

from dcosd.errors import Conflict, DcosdError, NotLeader, Unauthorized, ValidationError
from dcosd.httputil import bearer_token, read_json
from dcosd.master.allocator import Offer, RoleResources
from dcosd.master.frameworks.scheduling import Operation, PlannedTask
from dcosd.master.state import views
from dcosd.model import mesos
from dcosd.model.ids import BUILTIN_TASKS_FRAMEWORK, new_framework_id, new_uuid, valid_task_id
from dcosd.model.mesos import value_of, wrap
from dcosd.model.resources import Resources
from dcosd.model.states import ACTIVE_STATES, Reason, Source, TaskState
from dcosd.model.task import TaskSpec

if TYPE_CHECKING:
    from dcosd.master.service import Master

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 15.0
RESEND_INTERVAL = 10.0  # unacknowledged status updates are sent again this often
_CALLS = {"SUBSCRIBE", "TEARDOWN", "ACCEPT", "DECLINE", "ACCEPT_INVERSE_OFFERS", "DECLINE_INVERSE_OFFERS", "REVIVE",
          "KILL", "SHUTDOWN", "ACKNOWLEDGE", "ACKNOWLEDGE_OPERATION_STATUS", "RECONCILE", "RECONCILE_OPERATIONS",
          "MESSAGE", "REQUEST", "SUPPRESS", "UPDATE_FRAMEWORK"}


def check_operator(master: "Master", request: web.Request) -> None:
    """The operator token, as a Bearer token or as the password of Basic auth (pymesos' principal/secret)."""
    expected = master.operator_token
    if expected is None:
        return
    got = bearer_token(request)
    auth = request.headers.get("Authorization", "")
    if got is None and auth.startswith("Basic "):
        try:
            got = base64.b64decode(auth[6:].strip()).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            got = None
    if got is None:
        raise Unauthorized("operator token required: 'Authorization: Bearer <token>' or Basic with it as secret")
    if not hmac.compare_digest(got.encode(), expected.encode()):
        raise Unauthorized("wrong operator token")


def record(event: dict[str, Any]) -> bytes:
    data = json.dumps(event).encode()
    return str(len(data)).encode() + b"\n" + data


def offer_json(o: Offer, executor_ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": wrap(o.offer_id), "framework_id": wrap(o.framework_id), "agent_id": wrap(o.agent_id),
        "hostname": o.hostname, "resources": mesos.resources_to_mesos(dict(o.resources), o.role),
        "attributes": [{"name": k, "type": "TEXT", "text": {"value": str(v)}} for k, v in o.attributes.items()],
        "allocation_info": {"role": o.role},
    }
    if executor_ids:
        out["executor_ids"] = [wrap(e) for e in executor_ids]
    return out


class SchedulerStream:
    """One framework's subscription: the FrameworkClient the scheduling loop talks to."""

    def __init__(self, api: "SchedulerApi", framework_id: str, info: dict[str, Any]) -> None:
        self.api = api
        self.framework_id = framework_id
        self.info = info
        self.stream_id = str(uuidlib.uuid4())
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.closed = False
        self.last_seq = 0
        self._flushing = False
        self._again = False

    @property
    def partition_aware(self) -> bool:
        return any(isinstance(c, dict) and c.get("type") == "PARTITION_AWARE" for c in self.info.get("capabilities", []))

    def send(self, event: dict[str, Any]) -> None:
        if not self.closed:
            self.queue.put_nowait(event)

    def close(self, message: str | None = None) -> None:
        if message:
            self.send({"type": "ERROR", "error": {"message": message}})
        if not self.closed:
            self.queue.put_nowait(None)
        self.closed = True

    # FrameworkClient
    def offers(self, offers: list[Offer]) -> None:
        execs = self.api.executors_by_agent(self.framework_id)
        self.send({"type": "OFFERS", "offers": {"offers": [offer_json(o, execs.get(o.agent_id, [])) for o in offers]}})

    def rescind(self, offer: Offer) -> None:
        self.send({"type": "RESCIND", "rescind": {"offer_id": wrap(offer.offer_id)}})

    def failure(self, agent_id: str) -> None:
        self.send({"type": "FAILURE", "failure": {"agent_id": wrap(agent_id)}})

    def updates_pending(self) -> None:
        if self._flushing:
            self._again = True
            return
        self._flushing = True
        try:
            while True:
                self._again = False
                if not self._flush_once():
                    break
                if not self._again:
                    break
        finally:
            self._flushing = False

    def _flush_once(self) -> bool:
        """Send committed, unacknowledged updates newer than the last one sent. True if any were."""
        rows = self.api.master.store.query(
            "SELECT fu.seq, fu.uuid, fu.task_id, fu.status, ts.state, ts.reason, ts.message, ts.source, ts.timestamp,"
            " ts.healthy, t.agent_id, t.executor_id FROM framework_updates fu"
            " LEFT JOIN task_statuses ts ON ts.uuid = fu.uuid LEFT JOIN tasks t ON t.id = fu.task_id"
            " WHERE fu.framework_id = ? AND fu.seq > ? ORDER BY fu.seq LIMIT 1000", (self.framework_id, self.last_seq))
        for seq, uuid, task_id, status, state, reason, message, source, ts, healthy, agent_id, executor_id in rows:
            self.last_seq = seq
            if status is not None:
                self.send({"type": "UPDATE", "update": {"status": json.loads(status)}})
            elif state is not None:
                self.send({"type": "UPDATE", "update": {"status": mesos.status_to_mesos(
                    task_id=task_id, state=state, agent_id=agent_id, uuid=uuid, timestamp=ts, source=source,
                    reason=reason, message=message or "", executor_id=executor_id,
                    healthy=None if healthy is None else bool(healthy))}})
        return bool(rows)


class SchedulerApi:
    def __init__(self, master: "Master") -> None:
        self.master = master
        self.streams: dict[str, SchedulerStream] = {}
        self.calls = 0

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/v1/scheduler", self.handle), web.post("/master/api/v1/scheduler", self.handle),
                web.post("/dcosd/internal/v1/agents/{agent_id}/framework-message", self.agent_message)]

    async def agent_message(self, request: web.Request) -> web.Response:
        """An executor's MESSAGE, relayed by its agent, goes to the framework as a MESSAGE event."""
        self.master.require_agent_secret(request)
        body = await read_json(request)
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("framework_id", "executor_id")):
            raise ValidationError("framework-message needs framework_id, executor_id and data")
        stream = self.streams.get(body["framework_id"])
        if stream is not None:
            stream.send({"type": "MESSAGE", "message": {"agent_id": wrap(request.match_info["agent_id"]),
                                                        "executor_id": wrap(body["executor_id"]),
                                                        "data": body.get("data", "")}})
        return web.Response(status=202)

    @property
    def scheduling(self) -> Any:
        return self.master.scheduling

    def executors_by_agent(self, framework_id: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for eid, agent_id in self.master.store.query(
                "SELECT executor_id, agent_id FROM executors WHERE framework_id = ?", (framework_id,)):
            out.setdefault(agent_id, []).append(eid)
        return out

    # -- entry ---------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        check_operator(self.master, request)
        try:
            self.master.require_leader()
            if self.scheduling.alloc is None:
                raise NotLeader("this master is becoming the leader; retry")
        except NotLeader as exc:
            if exc.leader:
                loc = exc.leader.split("://", 1)[-1].rstrip("/")
                return web.Response(status=307, headers={"Location": f"//{loc}/api/v1/scheduler"})
            return web.json_response({"message": exc.message}, status=503)
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ValidationError("a call must be a JSON object")
        kind = body.get("type")
        if kind not in _CALLS:
            raise ValidationError(f"unknown call type {kind!r}")
        self.calls += 1
        if kind == "SUBSCRIBE":
            return await self.subscribe(request, body)
        fid = value_of(body.get("framework_id"), "framework_id")
        assert fid is not None
        stream = self.streams.get(fid)
        if stream is None or stream.closed:
            return web.json_response({"message": f"framework {fid} is not subscribed"}, status=403)
        sid = request.headers.get("Mesos-Stream-Id")
        if sid != stream.stream_id:
            raise ValidationError("the Mesos-Stream-Id header does not match this framework's subscription")
        handler = getattr(self, "call_" + kind.lower())
        await handler(stream, body)
        return web.Response(status=202)

    # -- SUBSCRIBE -----------------------------------------------------------------
    def _framework_info(self, body: dict[str, Any]) -> tuple[str | None, dict[str, Any], list[str]]:
        sub = body.get("subscribe")
        if not isinstance(sub, dict) or not isinstance(sub.get("framework_info"), dict):
            raise ValidationError("SUBSCRIBE needs subscribe.framework_info")
        info = dict(sub["framework_info"])
        if not isinstance(info.get("name"), str) or not info["name"]:
            raise ValidationError("framework_info.name must be a non-empty string")
        if not isinstance(info.get("user", ""), str):
            raise ValidationError("framework_info.user must be a string")
        roles = info.get("roles")
        if roles is None:
            roles = [info.get("role") or "*"]
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and r and "/" not in r[:1]
                                                                for r in roles):
            raise ValidationError("framework_info.roles must be a non-empty list of role names")
        ft = info.get("failover_timeout", 0.0)
        if isinstance(ft, bool) or not isinstance(ft, (int, float)) or ft < 0 or ft != ft:
            raise ValidationError("framework_info.failover_timeout must be a non-negative number of seconds")
        fid = value_of(body.get("framework_id"), "framework_id", required=False) or \
            value_of(info.get("id"), "framework_info.id", required=False)
        if fid == BUILTIN_TASKS_FRAMEWORK:
            raise ValidationError(f"framework id {fid} is reserved")
        return fid, info, list(dict.fromkeys(roles))

    async def subscribe(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        fid, info, roles = self._framework_info(body)
        fid = fid or new_framework_id()
        info["id"] = wrap(fid)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        stream = SchedulerStream(self, fid, info)
        resp.headers["Mesos-Stream-Id"] = stream.stream_id
        resp.enable_chunked_encoding()
        try:
            await self.master.store.propose({"type": "framework_subscribe", "time": time.time(), "framework": {
                "id": fid, "name": info["name"], "user": info.get("user", ""), "roles": roles,
                "failover_timeout": float(info.get("failover_timeout", 0.0)), "info": info}})
        except Conflict:
            await resp.prepare(request)
            await resp.write(record({"type": "ERROR", "error": {"message": "Framework has been removed"}}))
            await resp.write_eof()
            return resp
        await resp.prepare(request)
        old = self.streams.get(fid)
        self.streams[fid] = stream
        if old is not None:
            old.close()
        await resp.write(record({"type": "SUBSCRIBED", "subscribed": {
            "framework_id": wrap(fid), "heartbeat_interval_seconds": HEARTBEAT_INTERVAL,
            "master_info": self._master_info()}}))
        caps = [c.get("type") for c in info.get("capabilities", []) if isinstance(c, dict) and c.get("type")]
        suppressed = (body.get("subscribe") or {}).get("suppressed_roles") or []
        self.scheduling.connect(stream, roles, caps, [r for r in suppressed if isinstance(r, str)])
        stream.updates_pending()
        log.info("framework %s (%s) subscribed, roles %s", fid, info["name"], ",".join(roles))
        try:
            await self._pump(request, resp, stream)
        finally:
            if self.streams.get(fid) is stream:
                del self.streams[fid]
                self.scheduling.disconnect(stream)
                stream.closed = True
                if self.scheduling.alloc is not None:
                    try:
                        await self.master.store.propose({"type": "framework_disconnect", "framework_id": fid,
                                                         "time": time.time()})
                    except DcosdError as exc:
                        log.info("framework %s disconnect not recorded: %s", fid, exc)
                log.info("framework %s disconnected", fid)
        return resp

    async def _pump(self, request: web.Request, resp: web.StreamResponse, stream: SchedulerStream) -> None:
        last_beat = last_resend = time.monotonic()
        while True:
            try:
                event = await asyncio.wait_for(stream.queue.get(), 1.0)
            except asyncio.TimeoutError:
                event = {}
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            now = time.monotonic()
            if event is None:
                try:
                    await resp.write_eof()
                except (ConnectionError, RuntimeError):
                    pass
                return
            if not event and now - last_beat >= HEARTBEAT_INTERVAL:
                event = {"type": "HEARTBEAT"}
            if now - last_resend >= RESEND_INTERVAL:
                last_resend = now
                stream.last_seq = 0  # everything not yet acknowledged goes again
                stream.updates_pending()
            if not event:
                continue
            try:
                await resp.write(record(event))
            except (ConnectionError, RuntimeError):
                return
            last_beat = now

    def _master_info(self) -> dict[str, Any]:
        m = self.master
        host = m.advertise_url.split("://", 1)[-1]
        hostname, _, port = host.rpartition(":")
        return {"id": f"dcosd-master-{m.term}", "ip": 0, "port": int(port or 5050), "hostname": hostname,
                "version": mesos.MESOS_VERSION, "address": {"hostname": hostname, "port": int(port or 5050)}}

    # -- calls ----------------------------------------------------------------------
    async def call_teardown(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        await self.scheduling.teardown(stream.framework_id)

    async def call_update_framework(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        upd = body.get("update_framework")
        if not isinstance(upd, dict):
            raise ValidationError("UPDATE_FRAMEWORK needs update_framework.framework_info")
        _, info, roles = self._framework_info({"subscribe": upd})
        info["id"] = wrap(stream.framework_id)
        await self.master.store.propose({"type": "framework_subscribe", "time": time.time(), "framework": {
            "id": stream.framework_id, "name": info["name"], "user": info.get("user", ""), "roles": roles,
            "failover_timeout": float(info.get("failover_timeout", 0.0)), "info": info}})
        stream.info = info
        caps = [c.get("type") for c in info.get("capabilities", []) if isinstance(c, dict) and c.get("type")]
        self.scheduling.connect(stream, roles, caps)

    async def call_decline(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        d = body.get("decline")
        if not isinstance(d, dict) or not isinstance(d.get("offer_ids"), list):
            raise ValidationError("DECLINE needs decline.offer_ids")
        ids = [value_of(o, "offer_id") for o in d["offer_ids"]]
        self.scheduling.decline(stream.framework_id, ids, _refuse(d))

    async def call_revive(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        self.scheduling.revive(stream.framework_id, _roles(body.get("revive")))

    async def call_suppress(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        self.scheduling.suppress(stream.framework_id, _roles(body.get("suppress")))

    async def call_acknowledge(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        a = body.get("acknowledge")
        if not isinstance(a, dict) or not isinstance(a.get("uuid"), str):
            raise ValidationError("ACKNOWLEDGE needs acknowledge.uuid (and task_id, agent_id)")
        value_of(a.get("task_id"), "acknowledge.task_id")
        await self.master.store.propose({"type": "framework_ack", "framework_id": stream.framework_id,
                                         "uuid": mesos.decode_uuid(a["uuid"])})

    async def call_reconcile(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        r = body.get("reconcile") or {}
        wanted = r.get("tasks") or []
        if not isinstance(wanted, list):
            raise ValidationError("reconcile.tasks must be a list")
        store = self.master.store
        fid = stream.framework_id
        if not wanted:  # implicit: every live task of the framework
            live = tuple(s.value for s in ACTIVE_STATES)
            rows = store.query(f"SELECT id FROM tasks WHERE framework_id = ? AND state IN ({','.join('?' * len(live))})",
                               (fid, *live))
            ids = [row[0] for row in rows]
        else:
            ids = [value_of(t.get("task_id") if isinstance(t, dict) else None, "reconcile.tasks[].task_id")
                   for t in wanted]
        for tid in ids:
            t = views.task(store, tid, history=False) if tid else None
            if t is None or t.get("framework_id") != fid or t["state"] == "QUEUED":
                state = TaskState.UNKNOWN if stream.partition_aware else TaskState.LOST
                stream.send(_update(tid or "", state.value, None, reason=Reason.RECONCILIATION.value,
                                    message="reconciliation: task is unknown to the master"))
            else:
                stream.send(_update(tid, t["state"], t["agent_id"], reason=Reason.RECONCILIATION.value,
                                    message="reconciliation", executor_id=t.get("executor_id")))

    async def call_kill(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        k = body.get("kill")
        if not isinstance(k, dict):
            raise ValidationError("KILL needs kill.task_id")
        tid = value_of(k.get("task_id"), "kill.task_id")
        t = views.task(self.master.store, tid or "", history=False)
        if t is None or t.get("framework_id") != stream.framework_id or t["state"] == "QUEUED":
            state = TaskState.UNKNOWN if stream.partition_aware else TaskState.LOST
            stream.send(_update(tid or "", state.value, None, reason=Reason.RECONCILIATION.value,
                                message="kill: task is unknown to the master"))
            return
        if TaskState(t["state"]).terminal:
            return
        await self.scheduling.kill(tid)

    async def call_message(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        m = body.get("message")
        if not isinstance(m, dict) or not isinstance(m.get("data", ""), str):
            raise ValidationError("MESSAGE needs message.agent_id, message.executor_id and base64 message.data")
        agent_id = value_of(m.get("agent_id"), "message.agent_id")
        executor_id = value_of(m.get("executor_id"), "message.executor_id")
        self.master.agents.send(agent_id, {"type": "framework_message", "framework_id": stream.framework_id,
                                           "executor_id": executor_id, "data": m.get("data", "")})

    async def call_shutdown(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        s = body.get("shutdown")
        if not isinstance(s, dict):
            raise ValidationError("SHUTDOWN needs shutdown.executor_id and shutdown.agent_id")
        agent_id = value_of(s.get("agent_id"), "shutdown.agent_id")
        executor_id = value_of(s.get("executor_id"), "shutdown.executor_id")
        self.master.agents.send(agent_id, {"type": "shutdown_executor", "framework_id": stream.framework_id,
                                           "executor_id": executor_id})

    async def call_request(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        pass  # Mesos ignores resource requests too

    call_accept_inverse_offers = call_decline_inverse_offers = call_request
    call_reconcile_operations = call_acknowledge_operation_status = call_request

    # -- ACCEPT ----------------------------------------------------------------------
    async def call_accept(self, stream: SchedulerStream, body: dict[str, Any]) -> None:
        a = body.get("accept")
        if not isinstance(a, dict) or not isinstance(a.get("offer_ids"), list):
            raise ValidationError("ACCEPT needs accept.offer_ids")
        offer_ids = [value_of(o, "accept.offer_ids[]") for o in a["offer_ids"]]
        raw_ops = a.get("operations") or []
        if not isinstance(raw_ops, list) or not all(isinstance(o, dict) for o in raw_ops):
            raise ValidationError("accept.operations must be a list of objects")
        fid = stream.framework_id
        agent_id = self.scheduling.offer_agent(fid, offer_ids)
        ops: list[Operation] = []
        invalid: list[tuple[str, str | None, str]] = []  # task id, agent id, why
        seen: set[str] = set()
        for op in raw_ops:
            kind = op.get("type")
            if kind == "LAUNCH":
                infos = (op.get("launch") or {}).get("task_infos") or []
                planned = self._plan_tasks(stream, infos, None, agent_id, seen, invalid)
                ops.append(Operation("launch", planned))
            elif kind == "LAUNCH_GROUP":
                lg = op.get("launch_group") or {}
                infos = (lg.get("task_group") or {}).get("tasks") or []
                executor = lg.get("executor")
                if not isinstance(executor, dict):
                    for ti in infos:
                        invalid.append((_tid(ti), agent_id, "LAUNCH_GROUP needs an executor"))
                    continue
                ops.append(Operation("launch", self._plan_tasks(stream, infos, executor, agent_id, seen, invalid)))
            elif kind in ("RESERVE", "UNRESERVE"):
                key = kind.lower()
                by_role = mesos.parse_resources((op.get(key) or {}).get("resources"), f"{key}.resources")
                ops.append(Operation(key, resources=mesos.flatten(by_role)))
            else:
                log.info("framework %s: operation %r is not supported; ignored", fid, kind)
        refuse = _refuse(a)
        for tid, aid, why in invalid:
            await self._report(stream, tid, aid, TaskState.ERROR, Reason.TASK_INVALID, why)
        if not ops or not any(o.tasks or o.kind != "launch" for o in ops):
            self.scheduling.decline(fid, offer_ids, refuse)  # nothing valid to do: the offers go back filtered
            return
        outcome = await self.scheduling.accept(fid, offer_ids, ops, refuse)
        if not outcome.ok:
            why = f"{outcome.error}: {outcome.message}" if outcome.error else outcome.message
            named = {}  # the agent each task_info names: the only one known when the offer is not
            for op in raw_ops:
                for ti in ((op.get("launch") or {}).get("task_infos") or
                           ((op.get("launch_group") or {}).get("task_group") or {}).get("tasks") or []):
                    if isinstance(ti, dict) and isinstance(ti.get("agent_id"), dict):
                        named[_tid(ti)] = ti["agent_id"].get("value")
            for op in ops:
                for t in op.tasks:
                    tid = t.spec["task_id"]
                    await self._report(stream, tid, outcome.agent_id or agent_id or named.get(tid),
                                       TaskState.DROPPED, Reason.INVALID_OFFERS, why)

    async def _report(self, stream: SchedulerStream, task_id: str, agent_id: str | None, state: TaskState,
                      reason: Reason, message: str) -> None:
        """A master-made update about a task that was never recorded: committed (owed until acknowledged)."""
        status = mesos.status_to_mesos(task_id=task_id, state=state.value, agent_id=agent_id, uuid=new_uuid(),
                                       timestamp=time.time(), source=Source.MASTER.value, reason=reason.value,
                                       message=message)
        if "uuid" not in status:  # no agent to name: pymesos cannot acknowledge it, so it is sent once
            stream.send({"type": "UPDATE", "update": {"status": status}})
            return
        await self.master.store.propose({"type": "framework_updates_add", "framework_id": stream.framework_id,
                                         "updates": [{"uuid": mesos.decode_uuid(status["uuid"]),
                                                      "task_id": task_id, "status": status}]})
        stream.updates_pending()

    def _plan_tasks(self, stream: SchedulerStream, infos: Any, group_executor: dict[str, Any] | None,
                    agent_id: str | None, seen: set[str], invalid: list[tuple[str, str | None, str]]
                    ) -> list[PlannedTask]:
        if not isinstance(infos, list):
            raise ValidationError("task_infos must be a list")
        out = []
        for ti in infos:
            tid = _tid(ti)
            try:
                if tid in seen:
                    raise ValidationError(f"task id {tid} is used twice in this ACCEPT")
                t = self._plan_task(stream, ti, group_executor, agent_id)
                seen.add(tid)
                out.append(t)
            except ValidationError as exc:
                aid = value_of(ti.get("agent_id"), "agent_id", required=False) if isinstance(ti, dict) else None
                invalid.append((tid, agent_id or aid, exc.message))
        return out

    def _plan_task(self, stream: SchedulerStream, ti: Any, group_executor: dict[str, Any] | None,
                   agent_id: str | None) -> PlannedTask:
        if not isinstance(ti, dict):
            raise ValidationError("a task_info must be an object")
        tid = value_of(ti.get("task_id"), "task_id")
        assert tid is not None
        if not valid_task_id(tid):
            raise ValidationError(f"task id {tid!r} is not valid here (1-200 of A-Z a-z 0-9 _ . : @ -)")
        if self.master.store.query_one("SELECT 1 FROM tasks WHERE id = ? UNION ALL SELECT 1 FROM queue WHERE"
                                       " task_id = ?", (tid, tid)):
            raise ValidationError(f"task id {tid} is already in use")
        task_agent = value_of(ti.get("agent_id"), "agent_id", required=False)
        if task_agent and agent_id and task_agent != agent_id:
            raise ValidationError(f"task {tid} names agent {task_agent}, but the offer is for {agent_id}")
        by_role = mesos.parse_resources(ti.get("resources"), "task resources")
        flat = mesos.flatten(by_role)
        draw: Resources | RoleResources = flat if set(by_role) <= {"*"} else RoleResources(by_role)
        name = ti.get("name") if isinstance(ti.get("name"), str) and ti.get("name") else tid
        fid = stream.framework_id
        user = stream.info.get("user") or None
        executor = group_executor if group_executor is not None else ti.get("executor")
        base: dict[str, Any] = {"task_id": tid, "name": name[:200], "resources": flat.to_dict(),
                                "framework_id": fid, "labels": mesos.labels_of(ti),
                                "kill_grace_seconds": mesos.kill_grace(ti)}
        default_executor = executor is not None and (executor.get("type") == "DEFAULT" or not executor.get("command"))
        if executor is None or default_executor:
            if not isinstance(ti.get("command"), dict):
                raise ValidationError(f"task {tid} has neither a command nor an executor with a command")
            fields = mesos.command_fields(ti["command"], "command")
            spec = TaskSpec.from_dict({**base, **fields, "user": fields.get("user") or user} if (
                fields.get("user") or user) else {**base, **fields}).to_dict()
            planned = PlannedTask(spec=spec, resources=draw)
            if default_executor and executor is not None:
                eid = value_of(executor.get("executor_id"), "executor.executor_id")
                planned.executor_id = eid
                planned.spec["executor_id"] = eid
                planned.executor_resources = mesos.flatten(mesos.parse_resources(executor.get("resources"),
                                                                                 "executor resources"))
                planned.executor_info = executor
            return planned
        if not isinstance(executor, dict):
            raise ValidationError("executor must be an object")
        eid = value_of(executor.get("executor_id"), "executor.executor_id")
        if ti.get("command") is not None and group_executor is None:
            raise ValidationError(f"task {tid} has both a command and an executor")
        mesos.command_fields(executor["command"], "executor.command")  # validated here, run by the agent
        ex_res = mesos.flatten(mesos.parse_resources(executor.get("resources"), "executor resources"))
        ex_info = {**executor, "framework_id": wrap(fid)}
        task_info = {**ti, "agent_id": wrap(agent_id or task_agent or ""), "executor": ex_info}
        spec = {**base, "executor_id": eid, "env": {},
                "mesos": {"task": task_info, "executor": ex_info, "framework": stream.info,
                          "group": group_executor is not None}}
        if user:
            spec["user"] = (executor["command"].get("user") or user)
        return PlannedTask(spec=spec, resources=draw, executor_id=eid, executor_resources=ex_res,
                           executor_info=ex_info)


def _tid(ti: Any) -> str:
    if isinstance(ti, dict) and isinstance(ti.get("task_id"), dict) and isinstance(ti["task_id"].get("value"), str):
        return ti["task_id"]["value"]
    return ""


def _refuse(obj: Mapping[str, Any]) -> float | None:
    f = obj.get("filters")
    if isinstance(f, dict) and isinstance(f.get("refuse_seconds"), (int, float)) and \
            not isinstance(f.get("refuse_seconds"), bool):
        return float(f["refuse_seconds"])
    return None


def _roles(obj: Any) -> list[str] | None:
    if isinstance(obj, dict) and isinstance(obj.get("roles"), list) and obj["roles"]:
        return [r for r in obj["roles"] if isinstance(r, str)]
    if isinstance(obj, dict) and isinstance(obj.get("role"), str):
        return [obj["role"]]
    return None


def _update(task_id: str, state: str, agent_id: str | None, *, reason: str | None = None, message: str = "",
            executor_id: str | None = None) -> dict[str, Any]:
    """A reconciliation answer: no uuid, so it is neither acknowledged nor resent (as Mesos)."""
    st = mesos.status_to_mesos(task_id=task_id, state=state, agent_id=agent_id, uuid=None, timestamp=time.time(),
                               source=Source.MASTER.value, reason=reason, message=message, executor_id=executor_id)
    return {"type": "UPDATE", "update": {"status": st}}
