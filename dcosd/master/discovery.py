"""Service discovery on this master: Mesos-DNS records rebuilt from committed state, and served.

Every master — leader or not — answers DNS from its own copy of the replicated
state. A commit that touches tasks or agents schedules a rebuild; rebuilds are
coalesced (one in flight, the next starts from the newest state) and run off the
event loop, then swapped into the server in one reference assignment, so an
answer reflects a change within the time of one rebuild.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from dcosd.errors import ConfigError
from dcosd.master.dns.http import DnsHttpApi
from dcosd.master.dns.records import (
    DnsAgent, DnsConfig, DnsFramework, DnsMaster, DnsPort, DnsTask, RecordSet, build_records, snapshot_from,
)
from dcosd.master.state import views
from dcosd.master.state.store import COALESCE_SECONDS
from dcosd.model.ids import BUILTIN_TASKS_FRAMEWORK
from dcosd.model.resources import Resources
from dcosd.model.states import TaskState
from dcosd.vips.publisher import table_from_store

if TYPE_CHECKING:
    from dcosd.master.service import Master

log = logging.getLogger(__name__)

# The DNS name of tasks started with `dcosd run`: <task>.dcosd.<domain>.
BUILTIN_FRAMEWORK_NAMES = {BUILTIN_TASKS_FRAMEWORK: "dcosd"}
# Commands that cannot change any record: queued and placed (not yet running) tasks. A kill request
# does: the task leaves DNS at once, as a Mesos task in TASK_KILLING leaves mesos-dns (and its VIP drains).
_INVISIBLE = frozenset({"task_submit", "task_pending_reason", "task_place"})


@dataclass
class DiscoveryConfig:
    listen: str | None = None  # "HOST:PORT" for UDP+TCP DNS; None: no DNS socket (HTTP API only)
    domain: str = "mesos"
    ttl: int = 60
    upstreams: tuple[str, ...] | None = None  # None: /etc/resolv.conf; (): no forwarding


def _literal_ip(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        try:
            return socket.gethostbyname(host)
        except OSError:
            return "127.0.0.1"


class Discovery:
    def __init__(self, master: "Master", config: DiscoveryConfig) -> None:
        self.master = master
        self.config = config
        self.dns_config = DnsConfig(domain=config.domain, ttl=config.ttl)
        self.records: RecordSet = build_records(snapshot_from(), self.dns_config)
        self.server: Any = None
        self._wanted = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.http = DnsHttpApi(lambda: self.records, version="dcosd", settings=self._settings)

    def routes(self) -> list[web.RouteDef]:
        return self.http.routes()

    def _settings(self) -> dict[str, Any]:
        return {"Listener": self.config.listen or "", "Port": self.server.port if self.server else 0,
                "Resolvers": list(self.config.upstreams or ())}

    async def start(self) -> None:
        await self._rebuild()
        if self.config.listen:
            from dcosd.master.dns.server import DnsServer, DnsServerConfig

            host, _, port = self.config.listen.rpartition(":")
            try:
                cfg = DnsServerConfig(host=host or "0.0.0.0", port=int(port), upstreams=self.config.upstreams)
            except ValueError:
                raise ConfigError(f"--dns-listen {self.config.listen!r} is not HOST:PORT") from None
            server = DnsServer(self.records, cfg)
            try:
                await server.start()
                self.server = server
                log.info("DNS for %s. answering on %s:%d (udp+tcp)", self.config.domain, cfg.host, server.port)
            except OSError as exc:
                log.warning("DNS not started: cannot listen on %s (%s); the HTTP API /v1/... still answers",
                            self.config.listen, exc.strerror or exc)
        self.master.store.listeners.append(self._on_commit)
        if self.master.ha is not None:  # leader.<domain> follows Raft leadership, commits or not
            self.master.ha.leadership_listeners.append(self._wanted.set)
        self._task = asyncio.create_task(self._rebuild_loop(), name="dns-rebuild")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.server is not None:
            await self.server.stop()

    def _on_commit(self, command: dict[str, Any], result: Any) -> None:
        kind = command["type"]
        if kind.startswith(("task_", "agent_", "framework")) and kind not in _INVISIBLE:
            self._wanted.set()

    async def _rebuild_loop(self) -> None:
        while True:
            await self._wanted.wait()
            await asyncio.sleep(COALESCE_SECONDS)
            self._wanted.clear()
            try:
                await self._rebuild()
            except Exception:
                log.exception("rebuilding DNS records failed; keeping the previous records")

    async def _rebuild(self) -> None:
        snapshot = self.snapshot()
        records = await asyncio.get_running_loop().run_in_executor(None, build_records, snapshot, self.dns_config)
        self.records = records
        if self.server is not None:
            self.server.update(records)

    # -- state → snapshot ------------------------------------------------------------
    def snapshot(self) -> Any:
        store = self.master.store
        masters, leader = self._masters()
        agents = views.agents(store)
        agent_ids = {a["id"] for a in agents}
        names = dict(BUILTIN_FRAMEWORK_NAMES)
        names.update(self._framework_names())
        tasks = []
        for t in views.tasks(store, state=TaskState.RUNNING.value, limit=1_000_000):
            if t["agent_id"] not in agent_ids or t["kill_requested"]:
                continue
            ports = [DnsPort(p) for lo, hi in Resources.from_dict(t["resources"]).ports for p in range(lo, hi + 1)]
            tasks.append(DnsTask(task_id=t["id"], name=t["name"],
                                 framework_name=names.get(t["framework_id"], t["framework_id"]),
                                 agent_id=t["agent_id"], state=t["state"], ports=tuple(ports),
                                 discovery_name=t["spec"].get("labels", {}).get("DCOSD_DISCOVERY_NAME"),
                                 healthy=t["healthy"]))
        serial = (store.query_one("SELECT COALESCE(MAX(idx), 0) FROM log") or (0,))[0]
        vips = {(v.dns_label, v.ip) for v in table_from_store(store).vips}  # <vip>.marathon.l4lb.<domain>
        return snapshot_from(
            masters=masters, leader=leader,
            agents=[DnsAgent(a["id"], a["hostname"], _literal_ip(a["ip"])) for a in agents],
            frameworks=[DnsFramework(fid, name) for fid, name in names.items()],
            tasks=tasks, serial=max(1, serial), vips=sorted(vips))

    def _masters(self) -> tuple[list[DnsMaster], DnsMaster | None]:
        """Every master and the leader: the HA peers (in id order) and the Raft leader, else this master."""
        ha = self.master.ha
        if ha is None:
            me = DnsMaster("master0", _literal_ip(urlsplit(self.master.advertise_url).hostname or "127.0.0.1"),
                           self.master.bound_port)
            return [me], me if self.master.is_leader else None
        masters = []
        for pid, url in sorted(ha.peers.items()):
            parts = urlsplit(url)
            masters.append(DnsMaster(pid, _literal_ip(parts.hostname or "127.0.0.1"), parts.port or 5050))
        leader_id = ha.store.leader
        return masters, next((m for m in masters if m.id == leader_id), None)

    def _framework_names(self) -> dict[str, str]:
        """Names of registered frameworks, when the state has a frameworks table."""
        try:
            rows = self.master.store.query("SELECT id, info FROM frameworks")
        except Exception:  # noqa: BLE001 — no frameworks table in this schema yet
            return {}
        out = {}
        for fid, info in rows:
            try:
                out[fid] = json.loads(info).get("name") or fid
            except (TypeError, ValueError):
                out[fid] = fid
        return out
