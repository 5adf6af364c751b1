"""A small Mesos v1 scheduler client (RecordIO over http.client) and a fake agent, for tests.

``SchedulerClient`` subscribes, collects events on a reader thread, and makes
calls; handlers may answer OFFERS as they arrive. ``FakeAgent`` registers with a
master through the internal agent API and reports TASK_RUNNING for every launch
and TASK_KILLED for every kill, so scheduling can be tested at scale without
starting processes. Both are stopped by the test that made them (``close()``).
"""

from __future__ import annotations

import base64
import http.client
import json
import queue
import threading
import time
import uuid
from typing import Any, Callable
from urllib.parse import urlsplit


def _hostport(url: str) -> tuple[str, int]:
    u = urlsplit(url if "://" in url else "http://" + url)
    return u.hostname or "127.0.0.1", u.port or 5050


class SchedulerClient:
    def __init__(self, master_url: str, name: str = "test-fw", *, roles: list[str] | None = None,
                 failover_timeout: float = 0.0, framework_id: str | None = None, token: str | None = None,
                 capabilities: list[str] | None = None) -> None:
        self.host, self.port = _hostport(master_url)
        self.info: dict[str, Any] = {"name": name, "user": "root", "failover_timeout": failover_timeout,
                                     "roles": roles or ["*"],
                                     "capabilities": [{"type": c} for c in (capabilities or ["MULTI_ROLE"])]}
        self.framework_id = framework_id
        self.token = token
        self.stream_id: str | None = None
        self.events: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.offer_q: "queue.Queue[dict[str, Any]]" = queue.Queue()  # every offer, one by one
        self.log: list[dict[str, Any]] = []
        self.on_offers: Callable[["SchedulerClient", list[dict[str, Any]]], None] | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._reader: threading.Thread | None = None
        self.closed = threading.Event()
        self.lock = threading.Lock()

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if self.stream_id:
            h["Mesos-Stream-Id"] = self.stream_id
        return h

    def subscribe(self, timeout: float = 20) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": dict(self.info)}}
        if self.framework_id:
            body["framework_id"] = {"value": self.framework_id}
            body["subscribe"]["framework_info"]["id"] = {"value": self.framework_id}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        h = self._headers()
        h.pop("Mesos-Stream-Id", None)
        conn.request("POST", "/api/v1/scheduler", json.dumps(body), h)
        resp = conn.getresponse()
        if resp.status != 200:
            raise AssertionError(f"SUBSCRIBE answered {resp.status}: {resp.read()[:300]!r}")
        self.stream_id = resp.headers["Mesos-Stream-Id"]
        self._conn = conn
        self.closed.clear()
        self._reader = threading.Thread(target=self._read, args=(resp,), daemon=True)
        self._reader.start()
        ev = self.wait_for("SUBSCRIBED", timeout)
        self.framework_id = ev["subscribed"]["framework_id"]["value"]
        return ev

    def _read(self, resp: http.client.HTTPResponse) -> None:
        buf = b""
        try:
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    n = int(buf[:nl])
                    if len(buf) < nl + 1 + n:
                        break
                    event = json.loads(buf[nl + 1:nl + 1 + n])
                    buf = buf[nl + 1 + n:]
                    self._dispatch(event)
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed under us (close(), or the master went away)
        finally:
            resp.close()
            self.closed.set()

    def _dispatch(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(event)
        if event["type"] == "SUBSCRIBED":  # before any OFFERS handler needs it
            self.framework_id = event["subscribed"]["framework_id"]["value"]
        if event["type"] == "OFFERS" and self.on_offers is None:
            for o in event["offers"]["offers"]:
                self.offer_q.put(o)
        if event["type"] == "OFFERS" and self.on_offers is not None:
            try:
                self.on_offers(self, event["offers"]["offers"])
            except Exception as exc:  # noqa: BLE001 — surface in the event log, keep reading
                self.events.put({"type": "HANDLER_ERROR", "error": repr(exc)})
        self.events.put(event)

    def wait_for(self, kind: str, timeout: float = 20, pred: Callable[[dict[str, Any]], bool] | None = None
                 ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} event within {timeout}s; saw {[e['type'] for e in self.log][-20:]}")
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if ev["type"] == kind and (pred is None or pred(ev)):
                return ev

    def take_offer(self, timeout: float = 20) -> dict[str, Any]:
        try:
            return self.offer_q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no offer within {timeout}s") from None

    def drain(self) -> None:
        while not self.events.empty():
            self.events.get_nowait()

    def call(self, body: dict[str, Any], *, raw: bytes | None = None, stream_id: bool = True) -> tuple[int, str]:
        if self.framework_id and "framework_id" not in body and raw is None:
            body = {**body, "framework_id": {"value": self.framework_id}}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        h = self._headers()
        if not stream_id:
            h.pop("Mesos-Stream-Id", None)
        conn.request("POST", "/api/v1/scheduler", raw if raw is not None else json.dumps(body), h)
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        conn.close()
        return resp.status, text

    def accept(self, offer_ids: list[str], operations: list[dict[str, Any]], refuse: float | None = None
               ) -> tuple[int, str]:
        acc: dict[str, Any] = {"offer_ids": [{"value": o} for o in offer_ids], "operations": operations}
        if refuse is not None:
            acc["filters"] = {"refuse_seconds": refuse}
        return self.call({"type": "ACCEPT", "accept": acc})

    def decline(self, offer_ids: list[str], refuse: float | None = None) -> tuple[int, str]:
        d: dict[str, Any] = {"offer_ids": [{"value": o} for o in offer_ids]}
        if refuse is not None:
            d["filters"] = {"refuse_seconds": refuse}
        return self.call({"type": "DECLINE", "decline": d})

    def acknowledge(self, status: dict[str, Any]) -> tuple[int, str]:
        return self.call({"type": "ACKNOWLEDGE", "acknowledge": {
            "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]}})

    def close(self) -> None:
        """Drop the subscription connection (as a crashed scheduler would)."""
        if self._conn is not None:
            try:
                if self._conn.sock is not None:
                    import socket

                    self._conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._conn.close()
            self._conn = None
        self.closed.wait(10)


def task_info(task_id: str, agent_id: str, cpus: float, mem: float, cmd: str = "sleep 600",
              **extra: Any) -> dict[str, Any]:
    return {"name": task_id, "task_id": {"value": task_id}, "agent_id": {"value": agent_id},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}],
            "command": {"value": cmd}, **extra}


def launch(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {"type": "LAUNCH", "launch": {"task_infos": list(tasks)}}


def scalar(offer: dict[str, Any], name: str) -> float:
    return sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == name)


class FakeAgent:
    """Registers like an agent; reports RUNNING for launches and KILLED for kills, without running anything."""

    def __init__(self, master_url: str, secret: str, hostname: str, resources: dict[str, Any]) -> None:
        self.host, self.port = _hostport(master_url)
        self.secret = secret
        self.hostname = hostname
        self.resources = resources
        self.agent_id: str | None = None
        self.tasks: dict[str, str] = {}
        self.launched: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stream_conn: http.client.HTTPConnection | None = None

    def _post(self, path: str, body: Any) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        conn.request("POST", "/dcosd/internal/v1/agents" + path, json.dumps(body),
                     {"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status != 200:
            raise AssertionError(f"{path}: {resp.status} {data[:200]!r}")
        return json.loads(data)

    def start(self) -> "FakeAgent":
        body = self._post("/register", {"agent": {
            "id": self.agent_id, "hostname": self.hostname, "ip": "127.0.0.1", "address": "http://127.0.0.1:1",
            "resources": self.resources, "attributes": {}, "backend": {"backend": "fake"}},
            "tasks": [{"task_id": t, "state": s} for t, s in self.tasks.items()]})
        self.agent_id = body["agent_id"]
        for target in (self._stream, self._beat):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _status(self, task_id: str, state: str) -> None:
        self.tasks[task_id] = state
        self._post(f"/{self.agent_id}/status", {"updates": [{
            "task_id": task_id, "state": state, "uuid": str(uuid.uuid4()), "timestamp": time.time(),
            "agent_id": self.agent_id, "source": "SOURCE_SLAVE", "message": "fake"}]})

    def _stream(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        self._stream_conn = conn
        conn.request("GET", f"/dcosd/internal/v1/agents/{self.agent_id}/stream",
                     headers={"Authorization": f"Bearer {self.secret}"})
        resp = conn.getresponse()
        try:
            while not self._stop.is_set():
                line = resp.readline()
                if not line:
                    return
                msg = json.loads(line)
                if msg["type"] == "launch":
                    tid = msg["task"]["task_id"]
                    if tid not in self.tasks:
                        self.launched.append(msg)
                        self._status(tid, "TASK_RUNNING")
                elif msg["type"] == "kill":
                    if self.tasks.get(msg["task_id"]) == "TASK_RUNNING":
                        self._status(msg["task_id"], "TASK_KILLED")
        except (OSError, ValueError, AttributeError, http.client.HTTPException, AssertionError):
            return
        finally:
            resp.close()
            conn.close()

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._post(f"/{self.agent_id}/heartbeat", {})
            except (OSError, AssertionError):
                pass

    def finish(self, task_id: str, state: str = "TASK_FINISHED") -> None:
        self._status(task_id, state)

    def close(self) -> None:
        self._stop.set()
        if self._stream_conn is not None and self._stream_conn.sock is not None:
            try:
                import socket

                self._stream_conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
