"""The master's side of VIPs: the table from committed state, pushed to every agent when it changes.

A commit touching tasks or agents wakes one coalescing loop (a burst of commits costs one
rebuild, started from the newest state). The table is rebuilt by one SQL read of the live
tasks carrying the ``DCOSD_VIPS`` label, and when it differs from the last one it is pushed
whole on every agent's work stream (``{"type": "vips", "vips": [...]}``). An agent whose
session is new (registration, reconnection, a new leader) gets the current table within
``SESSION_CHECK`` seconds even when nothing changed. Only the leader holds work streams;
every master computes the table (DNS answers the VIP names on followers too).

``GET /dcosd/v1/vips`` shows the table, its DNS names and the declarations left out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dcosd.httputil import json_response
from dcosd.vips.table import LABEL, LIVE_STATES, VipTable, VipTask, build_table

if TYPE_CHECKING:
    from dcosd.master.service import Master

log = logging.getLogger(__name__)

SESSION_CHECK = 0.25
_LIVE_SQL = ",".join(f"'{s}'" for s in sorted(LIVE_STATES))


def _literal(ip: str) -> str | None:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def table_from_store(store: Any) -> VipTable:
    """The VIP table of the committed state in ``store`` (one read of labelled live tasks)."""
    rows = store.query(
        "SELECT id, agent_id, state, spec, resources, healthy, kill_requested FROM tasks"
        f" WHERE state IN ({_LIVE_SQL}) AND instr(spec, ?) > 0", (LABEL,))
    tasks = []
    for tid, agent_id, state, spec, resources, healthy, kill in rows:
        try:
            label = (json.loads(spec).get("labels") or {}).get(LABEL)
            ranges = (json.loads(resources) or {}).get("ports") or []
            ports = tuple(p for lo, hi in ranges for p in range(int(lo), int(hi) + 1))
        except (TypeError, ValueError, AttributeError):
            continue
        tasks.append(VipTask(tid, agent_id, state, label, ports, None if healthy is None else bool(healthy),
                             bool(kill)))
    if not tasks:
        return VipTable()
    agent_ips = {aid: lit for aid, ip in store.query("SELECT id, ip FROM agents") if (lit := _literal(ip))}
    return build_table(tasks, agent_ips)


from dcosd.master.state.store import COALESCE_SECONDS  # noqa: E402

# Commands that cannot change the table: queued and placed (not yet running) tasks.
_INVISIBLE = frozenset({"task_submit", "task_pending_reason", "task_place"})


class VipPublisher:
    def __init__(self, master: "Master") -> None:
        self.master = master
        self.table = VipTable()
        self.version = 0
        self._wanted = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._sent: dict[str, Any] = {}  # agent id → the session object last sent the current table

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/dcosd/v1/vips", self.list_vips)]

    async def start(self) -> None:
        self._rebuild()
        self.master.store.listeners.append(self._on_commit)
        self._task = asyncio.create_task(self._loop(), name="vips-publish")

    async def stop(self) -> None:
        if self._on_commit in getattr(self.master.store, "listeners", []):
            self.master.store.listeners.remove(self._on_commit)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _on_commit(self, command: dict[str, Any], result: Any) -> None:
        kind = command["type"]
        if kind.startswith(("task_", "agent_")) and kind not in _INVISIBLE:
            self._wanted.set()

    def _rebuild(self) -> bool:
        table = table_from_store(self.master.store)
        changed = table != self.table
        if changed or table.problems != self.table.problems:
            for p in set(table.problems) - set(self.table.problems):
                log.warning("VIP declaration left out: %s", p)
        self.table = table
        if changed:
            self.version += 1
            self._sent.clear()
        return changed

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wanted.wait(), SESSION_CHECK)
            except asyncio.TimeoutError:
                pass
            try:
                if self._wanted.is_set():
                    await asyncio.sleep(COALESCE_SECONDS)  # one rebuild per burst of commits
                    self._wanted.clear()
                    self._rebuild()
                self._push()
            except Exception:  # noqa: BLE001
                log.exception("publishing the VIP table failed; keeping the previous one")

    def _push(self) -> None:
        sessions = getattr(self.master.agents, "sessions", {})
        if not sessions:
            self._sent.clear()
            return
        message = None
        for agent_id, session in list(sessions.items()):
            if self._sent.get(agent_id) is session:
                continue
            if message is None:
                message = {"type": "vips", "version": self.version, "vips": self.table.to_wire()}
            if self.master.agents.send(agent_id, message):
                self._sent[agent_id] = session
        for gone in set(self._sent) - set(sessions):
            del self._sent[gone]

    async def list_vips(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        domain = self.master.config.dns.domain
        return json_response({
            "version": self.version,
            "vips": [{**v.to_dict(), "dns": v.dns_name(domain)} for v in self.table.vips],
            "problems": list(self.table.problems),
        })
