"""The agent process: register, hold the work stream, run tasks, report their status.

Start-up order matters for "no task lost, none duplicated":
1. open the checkpoint, and let the backend recover the tasks it knows
   (re-adopt the running ones, learn the real outcome of those that ended while
   no agent was watching) — turned into checkpointed status updates;
2. register with the master, reporting every task it holds, so the master can
   reconcile (resend launches, order kills, declare lost what nobody has);
3. only then forward status updates, heartbeat and take new work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from dcosd import __version__
from dcosd.agent import fingerprint
from dcosd.agent.checkpoint import Checkpoint
from dcosd.agent.exec_api import ExecApi
from dcosd.agent.executor_api import ExecutorManager
from dcosd.agent.files_api import FilesApi
from dcosd.agent.health import CheckTarget, HealthMonitor
from dcosd.agent.status_updates import StatusUpdateManager
from dcosd.config import master_urls
from dcosd.errors import ConfigError, DcosdError
from dcosd.executor.base import ExecutorBackend, LaunchFailed, LaunchRequest, TaskEnded
from dcosd.httputil import check_token, make_app
from dcosd.model.ids import new_uuid
from dcosd.model.resources import Resources
from dcosd.model.states import Reason, Source, TaskState
from dcosd.model.task import TaskSpec
from dcosd.vips.agent import AgentVips

log = logging.getLogger(__name__)

_MAX_REDIRECTS = 5


@dataclass
class AgentConfig:
    master: str
    work_dir: Path
    secret: str | None = None
    host: str = "127.0.0.1"
    port: int = 5051
    backend: str | None = None  # None: choose by what the host has
    resources: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None
    advertise_ip: str | None = None
    default_user: str | None = None  # None: nobody when root, else the agent's own user
    allow_root_tasks: bool = False
    vips: bool = True  # serve the cluster's VIPs on this machine (dcosd/vips)


@dataclass
class LiveTask:
    spec: dict[str, Any]
    resources: dict[str, Any]
    state: TaskState
    kill_requested: bool = False
    launching: bool = False


class Agent:
    def __init__(self, config: AgentConfig, backend: ExecutorBackend | None = None) -> None:
        self.config = config
        # Any master of the cluster (comma-separated list): followers redirect to the leader; on
        # failure the agent tries the next one.
        self.masters = master_urls(config.master)
        if not self.masters:
            raise ConfigError("--master: give the URL of at least one master")
        self._next_master = 0
        self.master_url = self.masters[0]
        self.checkpoint = Checkpoint(config.work_dir / "agent.db")
        self.backend: ExecutorBackend = backend  # type: ignore[assignment]
        self.backend_note = ""
        self.agent_id: str | None = None
        self.term = 0
        self.tasks: dict[str, LiveTask] = {}
        self.updates = StatusUpdateManager(self.checkpoint, self._send_updates)
        self.health = HealthMonitor(self._health_changed, self._health_kill)
        self.registered = asyncio.Event()
        self._bg: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession
        self.bound_port = config.port
        self.heartbeat_interval = 2.0
        self.vips = AgentVips(config.vips)
        self.executors = ExecutorManager(self)  # Mesos custom executors (/api/v1/executor)

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        try:
            cfg.work_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(cfg.work_dir, 0o755)
        except OSError as exc:
            raise ConfigError(f"cannot create work directory {cfg.work_dir}: {exc}") from exc
        if self.backend is None:
            from dcosd.executor.select import choose_backend

            self.backend, self.backend_note = choose_backend(cfg.backend, cfg.work_dir, self._on_exit)
        log.info("executor backend: %s (%s)", self.backend.name, self.backend_note or "given")
        self.agent_id = await self.checkpoint.get_meta("agent_id")
        self.term = int(await self.checkpoint.get_meta("term") or 0)
        await self._recover()
        await self.vips.start()
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {cfg.secret}"} if cfg.secret else {})
        app = make_app()
        app.add_routes(FilesApi(self).routes())
        app.add_routes(ExecApi(self).routes())
        app.add_routes(self.executors.routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}") from exc
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        if sockets:
            self.bound_port = sockets[0].getsockname()[1]
        self._bg = [
            asyncio.create_task(self._session_loop(), name="agent-session"),
            asyncio.create_task(self.updates.run(), name="status-updates"),
        ]

    async def stop(self) -> None:
        for t in self._bg:
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        self.health.close()
        await self.vips.stop()
        await self.executors.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if hasattr(self, "http"):
            await self.http.close()
        if self.backend is not None:
            await self.backend.close()
        await self.checkpoint.close()

    def require_secret(self, request: web.Request) -> None:
        check_token(request, self.config.secret, "cluster secret")

    def task_finished(self, task_id: str) -> bool:
        t = self.tasks.get(task_id)
        return t is None or t.state.terminal

    # -- recovery ------------------------------------------------------------------
    async def _recover(self) -> None:
        known = await self.checkpoint.load_tasks()
        for k in known:
            self.tasks[k["task_id"]] = LiveTask(k["spec"], k["resources"], TaskState(k["state"]))
        live = {tid for tid, t in self.tasks.items() if not t.state.terminal}
        found = await self.backend.recover(live)
        relaunch = []
        for task_id in live:
            r = found.get(task_id)
            t = self.tasks[task_id]
            if r is not None and r.running:
                if t.state is not TaskState.RUNNING:
                    await self._update(task_id, TaskState.RUNNING, message="re-adopted after agent restart")
                self._start_health(task_id)
            elif r is not None and r.ended is not None:
                await self._ended(r.ended, note=" (ended while the agent was down)")
            elif t.state is TaskState.STAGING:
                relaunch.append(task_id)  # checkpointed, never started: the launch can be done now
            else:
                await self._update(task_id, TaskState.FAILED, reason=Reason.EXECUTOR_TERMINATED,
                                   message="the task vanished while the agent was down")
        for task_id, r in found.items():
            if task_id not in self.tasks and r.running:
                log.warning("killing task %s: running under this agent's backend but not in its checkpoint", task_id)
                await self.backend.kill(task_id, 0.0)
        for task_id in relaunch:
            asyncio.get_running_loop().create_task(self._launch(task_id))
        log.info("recovered %d task(s): %d running", len(live), sum(1 for r in found.values() if r.running))

    # -- master session ------------------------------------------------------------
    def _internal(self, path: str) -> str:
        return f"{self.master_url}/dcosd/internal/v1/agents{path}"

    async def _register(self) -> None:
        cfg = self.config
        master_host = urlsplit(self.master_url).hostname or "127.0.0.1"
        ip = cfg.advertise_ip or fingerprint.ip_towards(master_host)
        agent = {
            "id": self.agent_id,
            "hostname": cfg.hostname or fingerprint.hostname(),
            "ip": ip,
            "address": f"http://{ip if cfg.host in ('0.0.0.0', '') else cfg.host}:{self.bound_port}",
            "resources": fingerprint.detect(cfg.work_dir, cfg.resources).to_dict(),
            "attributes": cfg.attributes,
            "backend": {**self.backend.describe(), "cgroup_layout": fingerprint.cgroup_layout()},
            "version": __version__,
        }
        tasks = [{"task_id": tid, "state": t.state.value} for tid, t in self.tasks.items()]
        for _ in range(_MAX_REDIRECTS):
            async with self.http.post(self._internal("/register"), json={"agent": agent, "tasks": tasks},
                                      allow_redirects=False, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                leader = _redirect_origin(resp)
                if leader is not None:
                    # A follower: register with the leader (followed by hand: aiohttp drops the
                    # secret on a redirect to another origin).
                    self.master_url = leader
                    continue
                body = await resp.json(content_type=None)
                if resp.status != 200:
                    raise DcosdError(f"master refused registration ({resp.status}): {body.get('message')}")
                break
        else:
            raise DcosdError("too many redirects registering with the masters")
        if body["agent_id"] != self.agent_id:
            self.agent_id = body["agent_id"]
            await self.checkpoint.set_meta("agent_id", self.agent_id)
        self.heartbeat_interval = float(body.get("heartbeat_interval", 2.0))
        await self._observe_term(int(body.get("term", 0)))
        log.info("registered with %s as %s", self.master_url, self.agent_id)

    def _check_leads(self, resp: aiohttp.ClientResponse) -> None:
        """A 307 from the master this agent registered with: it no longer leads. Not followed: aiohttp
        would drop the cluster secret on the way to another origin (401), and the session belongs
        with the leader anyway: register there."""
        leader = _redirect_origin(resp)
        if leader is not None:
            raise _LeaderMoved(leader, self.master_url)

    async def _observe_term(self, term: int) -> bool:
        """Remember the newest master term; False for a message from an older (deposed) leader."""
        if term < self.term:
            return False
        if term > self.term:
            self.term = term
            await self.checkpoint.set_meta("term", str(term))
        return True

    async def _session_loop(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._register()
                backoff = 0.2
                self.registered.set()
                self.updates.connected.set()
                self.updates.poke()
                stream = asyncio.create_task(self._read_stream())
                beat = asyncio.create_task(self._heartbeats())
                try:
                    done, _ = await asyncio.wait({stream, beat}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for t in (stream, beat):
                        t.cancel()
                    await asyncio.gather(stream, beat, return_exceptions=True)
                for t in done:
                    if not t.cancelled() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            except asyncio.CancelledError:
                raise
            except _LeaderMoved as exc:  # register with the new leader at once
                log.info("%s", exc)
                self.master_url = exc.leader_url
                backoff = 0.0
            except Exception as exc:  # noqa: BLE001 — any failure: re-register after a pause
                log.warning("connection to master %s lost or refused: %s", self.master_url, exc)
                if len(self.masters) > 1:  # try the next master; it redirects to the leader
                    self._next_master = (self._next_master + 1) % len(self.masters)
                    self.master_url = self.masters[self._next_master]
            self.registered.clear()
            self.updates.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(max(backoff * 2, 0.2), 5.0)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            async with self.http.post(self._internal(f"/{self.agent_id}/heartbeat"), allow_redirects=False,
                                      timeout=aiohttp.ClientTimeout(total=10)) as resp:
                self._check_leads(resp)
                if resp.status != 200:
                    raise DcosdError(f"heartbeat refused ({resp.status}): {(await resp.text())[:200]}")

    async def _read_stream(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
        async with self.http.get(self._internal(f"/{self.agent_id}/stream"), timeout=timeout,
                                 allow_redirects=False) as resp:
            self._check_leads(resp)
            if resp.status != 200:
                raise DcosdError(f"work stream refused ({resp.status}): {(await resp.text())[:200]}")
            while True:
                line = await resp.content.readline()
                if not line:
                    raise DcosdError("work stream closed by the master")
                msg = json.loads(line)
                if msg["type"] in ("replaced", "closing"):
                    raise DcosdError(f"work stream ended by the master ({msg['type']})")
                if not await self._observe_term(int(msg.get("term", 0))):
                    log.warning("ignoring %s from a deposed leader (term %s < %s)", msg["type"], msg.get("term"),
                                self.term)
                    continue
                if msg["type"] == "launch":
                    await self._accept_launch(msg)
                elif msg["type"] == "kill":
                    await self._kill(msg["task_id"], float(msg.get("grace", 3.0)))
                elif msg["type"] == "vips":
                    self.vips.on_message(msg)
                elif msg["type"] in ("framework_message", "shutdown_executor"):
                    await self.executors.on_master_message(msg)

    async def _send_updates(self, updates: list[dict]) -> list[str]:
        if not self.registered.is_set():
            raise DcosdError("not registered")
        async with self.http.post(self._internal(f"/{self.agent_id}/status"), json={"updates": updates},
                                  allow_redirects=False, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            self._check_leads(resp)
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise DcosdError(f"status refused ({resp.status}): {body.get('message')}")
            acked = list(body["acked"])
            self.executors.acked(acked)  # custom executors learn their updates are committed
            return acked

    async def executor_task_update(self, task_id: str, state: TaskState, *, reason: Reason | None = None,
                                   message: str = "", uuid: str | None = None, timestamp: float | None = None,
                                   source: Source = Source.AGENT, healthy: bool | None = None) -> None:
        """A status of a task run by a custom executor (its own uuid), checkpointed and forwarded like ours."""
        update: dict[str, Any] = {"task_id": task_id, "state": state.value, "uuid": uuid or new_uuid(),
                                  "timestamp": timestamp or time.time(), "agent_id": self.agent_id,
                                  "source": source.value, "message": message[:4096]}
        if reason is not None:
            update["reason"] = reason.value
        if healthy is not None:
            update["healthy"] = healthy
        t = self.tasks.get(task_id)
        if t is not None:
            if t.state.terminal:
                return
            t.state = state
        await self.updates.record(update)

    async def forward_framework_message(self, framework_id: str, executor_id: str, data: str) -> None:
        async with self.http.post(self._internal(f"/{self.agent_id}/framework-message"),
                                  json={"framework_id": framework_id, "executor_id": executor_id, "data": data},
                                  timeout=aiohttp.ClientTimeout(total=10)) as resp:
            if resp.status >= 300:
                raise DcosdError(f"framework message refused ({resp.status})")

    # -- tasks ---------------------------------------------------------------------
    async def _update(self, task_id: str, state: TaskState, *, reason: Reason | None = None, message: str = "",
                      exit_code: int | None = None, healthy: bool | None = None) -> None:
        update: dict[str, Any] = {"task_id": task_id, "state": state.value, "uuid": new_uuid(),
                                  "timestamp": time.time(), "agent_id": self.agent_id,
                                  "source": Source.AGENT.value, "message": message}
        if reason is not None:
            update["reason"] = reason.value
        if exit_code is not None:
            update["exit_code"] = exit_code
        if healthy is not None:
            update["healthy"] = healthy
        if state.terminal:
            self.health.stop(task_id)
        t = self.tasks.get(task_id)
        if t is not None:
            t.state = state
        await self.updates.record(update)

    async def _accept_launch(self, msg: dict[str, Any]) -> None:
        spec, resources = msg["task"], msg["resources"]
        task_id = spec["task_id"]
        if task_id in self.tasks:
            return  # a re-sent launch of a task this agent already has
        # Shielded: the work stream that delivered this launch is cancelled when the session ends (a
        # heartbeat failed, the leader moved), and a cancellation between the checkpoint and the
        # launch left a task recorded but never started — which every later re-sent launch then took
        # for one this agent already had: STAGING forever on both sides.
        await asyncio.shield(self._record_and_launch(task_id, spec, resources))

    async def _record_and_launch(self, task_id: str, spec: dict[str, Any], resources: dict[str, Any]) -> None:
        if not await self.checkpoint.add_task(task_id, spec, resources, TaskState.STAGING.value, time.time()):
            return
        self.tasks[task_id] = LiveTask(spec, resources, TaskState.STAGING)
        asyncio.get_running_loop().create_task(self._launch(task_id))

    def _task_user(self, spec: TaskSpec) -> str | None:
        cfg = self.config
        if os.geteuid() != 0:
            return None  # an unprivileged agent can only run tasks as itself
        user = spec.user or cfg.default_user or "nobody"
        return user

    async def _launch(self, task_id: str) -> None:
        t = self.tasks[task_id]
        if self.executors.is_executor_task(t.spec):
            await self.executors.launch(task_id, t.spec, t.resources)  # its framework's executor runs it
            return
        t.launching = True
        try:
            spec = TaskSpec.from_dict(t.spec)
            user = self._task_user(spec)
            if user == "root" and not self.config.allow_root_tasks:
                raise LaunchFailed("tasks may not run as root on this agent (start it with --allow-root-tasks)",
                                   Reason.TASK_INVALID)
            sandbox = self.backend.sandbox_path(task_id)
            await asyncio.get_running_loop().run_in_executor(None, _make_sandbox, sandbox, user)
            env = self._task_env(spec, t.resources, sandbox)
            if spec.uris:
                from dcosd.executor.fetcher import fetch

                owner = None
                if user is not None and os.geteuid() == 0:
                    pw = pwd.getpwnam(user)
                    owner = (pw.pw_uid, pw.pw_gid)
                await fetch(spec.uris, sandbox, owner, cache_dir=self.config.work_dir / "fetch-cache")
            await self.backend.launch(LaunchRequest(spec=spec, sandbox=sandbox, env=env, user=user))
        except LaunchFailed as exc:
            await self._update(task_id, TaskState.FAILED, reason=exc.reason, message=exc.message)
            return
        except Exception as exc:  # noqa: BLE001 — any failure to start is this task's failure, not the agent's
            log.exception("launching %s failed", task_id)
            await self._update(task_id, TaskState.FAILED, reason=Reason.CONTAINER_LAUNCH_FAILED,
                               message=f"launch failed: {exc}")
            return
        finally:
            t.launching = False
        if t.state is TaskState.STAGING:  # an exit may already have been reported
            await self._update(task_id, TaskState.RUNNING, message="command started")
            self._start_health(task_id)
        if t.kill_requested:
            await self.backend.kill(task_id, float(t.spec.get("kill_grace_seconds", 3.0)))

    def _task_env(self, spec: TaskSpec, resources: dict[str, Any], sandbox: Path) -> dict[str, str]:
        ports = [p for lo, hi in Resources.from_dict(resources).ports for p in range(lo, hi + 1)]
        host = self.config.hostname or fingerprint.hostname()
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(sandbox), "LANG": "C.UTF-8",
            "MESOS_TASK_ID": spec.task_id, "MESOS_SANDBOX": str(sandbox), "MESOS_AGENT_ID": self.agent_id or "",
            "HOST": host, "DCOSD_TASK_ID": spec.task_id,
        }
        if ports:
            env["PORT"] = str(ports[0])
            env["PORTS"] = ",".join(map(str, ports))
            for i, p in enumerate(ports):
                env[f"PORT{i}"] = str(p)
        env.update(spec.env)
        return env

    # -- health checks (agent/health.py) ----------------------------------------------
    def _start_health(self, task_id: str) -> None:
        t = self.tasks.get(task_id)
        checks = t.spec.get("health_checks") if t is not None else None
        if not checks or t is None:
            return
        spec = TaskSpec.from_dict(t.spec)
        sandbox = self.backend.sandbox_path(task_id)
        env = self._task_env(spec, t.resources, sandbox)
        ports = [p for lo, hi in Resources.from_dict(t.resources).ports for p in range(lo, hi + 1)]
        host = self.config.advertise_ip or self.config.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        self.health.start(task_id, checks, CheckTarget(host, ports, env, sandbox, self._task_user(spec)))

    async def _health_changed(self, task_id: str, healthy: bool, message: str) -> None:
        t = self.tasks.get(task_id)
        if t is None or t.state.terminal or t.kill_requested:
            return
        await self._update(task_id, t.state, message=message, healthy=healthy)

    async def _health_kill(self, task_id: str, message: str) -> None:
        t = self.tasks.get(task_id)
        if t is None or t.state.terminal:
            return
        await self._kill(task_id, float(t.spec.get("kill_grace_seconds", 3.0)))

    async def _kill(self, task_id: str, grace: float) -> None:
        t = self.tasks.get(task_id)
        if t is None:
            # Not ours (any more): the master's record will be reconciled on re-registration.
            return
        if t.state.terminal:
            return
        t.kill_requested = True
        if self.executors.run_of(task_id) is not None:
            await self.executors.kill(task_id, grace)
            return
        if t.launching or t.state is TaskState.STAGING:
            return  # killed as soon as the launch returns
        await self.backend.kill(task_id, grace)

    def _on_exit(self, ended: TaskEnded) -> None:
        asyncio.get_running_loop().create_task(self._ended(ended))

    async def _ended(self, ended: TaskEnded, note: str = "") -> None:
        if self.executors.owns(ended.task_id):
            await self.executors.on_exit(ended)
            return
        t = self.tasks.get(ended.task_id)
        if t is not None and t.state.terminal:
            return
        state, reason = ended.state, ended.reason
        if t is not None and t.kill_requested and state is not TaskState.FINISHED and reason is None:
            state = TaskState.KILLED
        await self._update(ended.task_id, state, reason=reason, message=ended.message + note,
                           exit_code=ended.exit_code)


def _redirect_origin(resp: aiohttp.ClientResponse) -> str | None:
    """scheme://host:port a 307/308 points to (a follower naming the leader), else None."""
    location = resp.headers.get("Location")
    if resp.status not in (307, 308) or not location:
        return None
    target = urlsplit(str(resp.url.join(URL(location))))
    return f"{target.scheme}://{target.netloc}"


class _LeaderMoved(DcosdError):
    def __init__(self, leader_url: str, was: str) -> None:
        super().__init__(f"master {was} no longer leads; registering with {leader_url}")
        self.leader_url = leader_url


def _make_sandbox(sandbox: Path, user: str | None) -> None:
    sandbox.mkdir(parents=True, exist_ok=True)
    os.chmod(sandbox.parent, 0o755)
    for name in ("stdout", "stderr"):
        (sandbox / name).touch()
    if user is not None and os.geteuid() == 0:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise LaunchFailed(f"unknown user {user!r} on this agent", Reason.TASK_INVALID) from None
        for p in (sandbox, sandbox / "stdout", sandbox / "stderr"):
            os.chown(p, pw.pw_uid, pw.pw_gid)


async def run_agent(config: AgentConfig) -> None:
    agent = Agent(config)
    await agent.start()
    try:
        await asyncio.Event().wait()
    finally:
        await agent.stop()
