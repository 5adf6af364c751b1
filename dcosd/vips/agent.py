"""The agent's side of VIPs: take tables from the work stream, keep the proxy in step.

Tables arrive as ``{"type": "vips", "vips": [...]}`` on the work stream (whole tables, the
newest wins). They are applied one at a time; one that arrives while another is being applied
waits and replaces any older one still waiting. A malformed table is logged and ignored — the
last good one keeps being served. When the agent loses its master it keeps serving the last
table; when it stops, every listener and address goes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from dcosd.vips.table import VipError, VipTable, table_from_wire

log = logging.getLogger(__name__)


class AgentVips:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.why_disabled = "" if enabled else "disabled by --no-vips"
        self.proxy: Any = None
        self._rtnl: Any = None
        self._latest: VipTable | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.applied = 0

    async def start(self) -> None:
        if not self.enabled:
            return
        if os.geteuid() != 0:
            self.enabled, self.why_disabled = False, "the agent is not root (VIP addresses need CAP_NET_ADMIN)"
            log.info("VIPs not served: %s", self.why_disabled)
            return
        from dcosd.vips.netlink import Rtnl
        from dcosd.vips.proxy import VipProxy

        try:
            self._rtnl = Rtnl()
            self.proxy = VipProxy(self._rtnl)
            await self.proxy.start()
        except OSError as exc:
            self.enabled, self.why_disabled = False, f"rtnetlink unavailable: {exc}"
            log.warning("VIPs not served: %s", self.why_disabled)
            return
        self._task = asyncio.create_task(self._apply_loop(), name="vips-apply")

    def on_message(self, msg: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            self._latest = table_from_wire(msg.get("vips"))
        except (VipError, ValueError) as exc:
            log.warning("ignoring a malformed VIP table from the master: %s", exc)
            return
        self._wake.set()

    async def _apply_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            table, self._latest = self._latest, None
            if table is None:
                continue
            try:
                await self.proxy.apply(table)
                self.applied += 1
            except Exception:  # noqa: BLE001 — a bad table must not end VIP serving
                log.exception("applying the VIP table failed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.proxy is not None:
            await self.proxy.close()
        if self._rtnl is not None:
            self._rtnl.close()

    def describe(self) -> dict[str, Any]:
        if not self.enabled:
            return {"enabled": False, "why": self.why_disabled}
        return {"enabled": True, "vips": self.proxy.describe(), "problems": self.proxy.problems,
                "accepted": self.proxy.accepted, "refused": self.proxy.refused}
