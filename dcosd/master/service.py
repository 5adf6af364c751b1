"""The master process: wiring of the state store, the HTTP APIs and the leader-only loops.

Leader-only work (allocation and offers, agent liveness) starts in ``start()`` — with a
single master this process is always the leader; the replicated log of a later
issue will start and stop it on leadership changes through ``become_leader``
and ``step_down``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from dcosd.errors import ConfigError, NotLeader
from dcosd.httputil import check_token, make_app
from dcosd.master import auth, console, front
from dcosd.master.agent_sessions import AgentSessions
from dcosd.master.discovery import Discovery, DiscoveryConfig
from dcosd.master.api import OperatorApi
from dcosd.master.ha import HighAvailability
from dcosd.master.frameworks.builtin_tasks import BuiltinTasks
from dcosd.master.frameworks.scheduling import Scheduling
from dcosd.master.jobs.api import JobsApi
from dcosd.master.jobs.framework import JobFramework
from dcosd.master.operator_api import MesosOperatorApi
from dcosd.master.scheduler_api import SchedulerApi
from dcosd.master.services import Services
from dcosd.master.state.store import StateStore
from dcosd.vips.publisher import VipPublisher

log = logging.getLogger(__name__)


@dataclass
class MasterConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 5050
    # Operator calls need the operator token when True; agents always need the cluster secret.
    auth: bool = True
    agent_timeout: float = 20.0
    unreachable_grace: float = 60.0
    heartbeat_interval: float = 2.0
    advertise: str | None = None
    # Offers unanswered for this long are rescinded (None: never).
    offer_timeout: float | None = 60.0
    # Mesos-DNS: where to answer DNS (None: HTTP API only), the zone, the TTL, upstream resolvers.
    dns: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    # Highly available masters (master/ha.py): {id: URL} of every master, this one's id, --rejoin.
    # None: a one-master cluster on the single-node store. Masters of one cluster share the secret
    # and the operator token (given here; otherwise created in the data directory).
    peers: dict[str, str] | None = None
    node_id: str | None = None
    rejoin: bool = False
    restore: Path | None = None  # a backup (`dcosd cluster backup`) that seeds an empty data directory
    secret: str | None = None
    operator_token: str | None = None
    raft_tick: float = 0.04


def _task_commands(command: dict[str, Any], result: Any) -> bool:
    return command["type"].startswith("task_") or command["type"].startswith("agent_")


class Master:
    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.term = 1
        self.leader_since = time.monotonic()
        self.store: StateStore
        self.http: aiohttp.ClientSession
        self.agents = AgentSessions(self)
        self.operator = OperatorApi(self)
        # Two-level scheduling: the DRF allocator loop, the scheduler API, the built-in task framework.
        self.scheduling = Scheduling(self)
        self.scheduling.builtins.append(BuiltinTasks())
        self.jobs = JobFramework(self)  # the Metronome-style job framework (master/jobs)
        self.scheduling.builtins.append(self.jobs)
        self.services = Services(self)  # the Marathon-style service framework (master/services)
        self.scheduler_api = SchedulerApi(self)
        self.mesos_operator = MesosOperatorApi(self)
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._front_connections: set[front.FrontProtocol] = set()
        self._tasks: list[asyncio.Task] = []
        # Set (and replaced by a fresh one) whenever a committed command touched tasks or agents.
        self._task_changed = asyncio.Event()
        self.cluster_secret = ""
        self.operator_token: str | None = None
        self.bound_port = config.port
        self.ha: HighAvailability | None = None
        self.leader_url: str | None = None  # the leading master's URL (for /redirect), when known

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        data = self.config.data_dir
        try:
            data.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create data directory {data}: {exc}") from exc
        self.cluster_secret = self.config.secret or auth.load_or_create(data / auth.CLUSTER_SECRET_FILE)
        token = self.config.operator_token or auth.load_or_create(data / auth.OPERATOR_TOKEN_FILE)
        self.operator_token = token if self.config.auth else None
        if self.config.peers:
            self.ha = HighAvailability(self, self.config.peers, self.config.node_id or "", rejoin=self.config.rejoin,
                                       restore=self.config.restore, tick_seconds=self.config.raft_tick)
            self.store = self.ha.open_store(data / "state.db")  # type: ignore[assignment]
        else:
            self.store = StateStore(data / "state.db")
        self.store.listeners.append(self._on_commit)
        self.http = aiohttp.ClientSession()
        app = make_app()
        app.add_routes(self.operator.routes())
        app.add_routes(self.agents.routes())
        app.add_routes(self.scheduler_api.routes())
        app.add_routes(self.mesos_operator.routes())
        app.add_routes(JobsApi(self, self.jobs).routes())
        self.services.install(app)
        self.discovery = Discovery(self, self.config.dns)
        app.add_routes(self.discovery.routes())
        self.vips = VipPublisher(self)
        app.add_routes(self.vips.routes())
        if self.ha is not None:
            app.add_routes(self.ha.routes())
            app.middlewares.append(self.ha.middleware)
        console.install(self, app)  # web UI, live events, node exec, drain (last: it defers to others' routes)
        self.app = app
        # Long-lived responses (work streams, log follows) must not hold a stopping master for a minute.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        # The socket is the front's (front.py): the hottest writes are served there, the rest by aiohttp.
        handlers, server = front.lean_handlers(app), self._runner.server
        try:
            self._listener = await asyncio.get_running_loop().create_server(
                lambda: front.FrontProtocol(app, server, handlers, self._front_connections),  # type: ignore[arg-type]
                self.config.host, self.config.port, reuse_address=True)
        except OSError as exc:
            await self.stop()
            raise ConfigError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror}") from exc
        if self._listener.sockets:
            self.bound_port = self._listener.sockets[0].getsockname()[1]
        if self.ha is None:
            self.become_leader()  # one master: always the leader; with peers, Raft decides (ha.py)
        await self.discovery.start()
        await self.vips.start()
        log.info("master listening on %s", self.advertise_url)

    def become_leader(self) -> None:
        self.leader_since = time.monotonic()
        self._tasks = [
            asyncio.create_task(self.scheduling.run(), name="scheduling"),
            asyncio.create_task(self.agents.monitor(), name="agent-monitor"),
        ]

    async def step_down(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.agents.close_all()

    async def stop(self) -> None:
        if self.ha is not None:
            await self.ha.hand_over()  # while this master still serves: writes meanwhile go to the new leader
        if hasattr(self, "vips"):
            await self.vips.stop()
        if hasattr(self, "discovery"):
            await self.discovery.stop()
        await self.step_down()
        if self.ha is not None:
            await self.ha.stop()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for conn in list(self._front_connections):
            conn.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if hasattr(self, "http"):
            await self.http.close()
        if hasattr(self, "store"):
            self.store.close()

    @property
    def advertise_url(self) -> str:
        if self.config.advertise:
            return self.config.advertise.rstrip("/")
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"http://{host}:{self.bound_port}"

    def describe(self) -> dict[str, Any]:
        return {"url": self.advertise_url, "leader": True, "term": self.term,
                "commit_index": (self.store.query_one("SELECT COALESCE(MAX(idx),0) FROM log") or (0,))[0]}

    def describe_masters(self) -> list[dict[str, Any]]:
        """Every master: leader, term, commit index, and each follower's lag (seen from the leader)."""
        return self.ha.describe() if self.ha is not None else [self.describe()]

    def require_leader(self) -> None:
        if not self._tasks:
            raise NotLeader(leader=self.ha.store.leader if self.ha is not None else None)

    # -- checks used by handlers ---------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return bool(self._tasks)


    def require_agent_secret(self, request: web.Request) -> None:
        check_token(request, self.cluster_secret, "cluster secret")

    def require_operator(self, request: web.Request) -> None:
        check_token(request, self.operator_token, "operator token")

    # -- change notification -------------------------------------------------------
    def _on_commit(self, command: dict[str, Any], result: Any) -> None:
        if _task_commands(command, result):
            changed, self._task_changed = self._task_changed, asyncio.Event()
            changed.set()
        if command["type"] in ("task_status", "agent_register", "task_submit", "task_kill", "agent_lost",
                               "agent_unreachable"):
            self.placement_wanted()

    async def wait_task_change(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._task_changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def placement_wanted(self) -> None:
        """Something changed that may let queued work run: allocate promptly."""
        self.scheduling.wake()


async def run_master(config: MasterConfig, ready: asyncio.Event | None = None) -> None:
    master = Master(config)
    await master.start()
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await master.stop()


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
