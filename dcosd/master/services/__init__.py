"""The built-in service framework: Marathon's v2 API, apps kept at their target, deployments (DESIGN.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from dcosd.master.service import Master


class Services:
    """Wiring: the framework joins the leader's built-ins; the API and the event bus serve on every master."""

    def __init__(self, master: "Master") -> None:
        from dcosd.master.services.api import ServicesApi
        from dcosd.master.services.events import EventBus
        from dcosd.master.services.framework import ServiceFramework

        self.master = master
        self.events = EventBus()
        self.framework = ServiceFramework(self.events)
        self.api = ServicesApi(master, self.framework, self.events)
        master.scheduling.builtins.append(self.framework)

    def install(self, app: web.Application) -> None:
        """Once the store is open: routes, committed changes into the event bus, and (before ha.py's
        redirecting middleware) the leader proxy for /v2 writes on a follower."""
        from dcosd.master.services.leader_proxy import middleware

        self.events.store = self.master.store
        self.master.store.listeners.append(self.events.on_commit)
        app.add_routes(self.api.routes())
        app.middlewares.append(middleware(self.master))
