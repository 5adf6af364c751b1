"""Thin HTTP routes over the package catalogue (cosmos-shaped): search, describe, render.

    POST /package/search    {"query": "redis"}                       → {"packages": [...]}
    POST /package/describe  {"packageName", "packageVersion"?}       → {"package": {...}, "config": schema}
    POST /package/render    {"packageName", "packageVersion"?, "options"?, "appId"?}
                                                                      → {"marathonJson": {...}}

The catalogue is the one shipped inside dcosd (default_repository()); installing
goes through the services API once it exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from dcosd.errors import ValidationError
from dcosd.httputil import json_response, read_json
from dcosd.master.packages.render import render
from dcosd.master.packages.repository import Catalogue, default_repository

if TYPE_CHECKING:
    from dcosd.master.service import Master


class PackageApi:
    def __init__(self, master: "Master") -> None:
        self.master = master
        self._catalogue: Catalogue | None = None

    @property
    def catalogue(self) -> Catalogue:
        if self._catalogue is None:  # loaded on first use: most masters never serve a package page
            self._catalogue = Catalogue([default_repository()])
        return self._catalogue

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/package/search", self.search), web.post("/package/describe", self.describe),
                web.post("/package/render", self.render)]

    async def _body(self, request: web.Request) -> dict[str, Any]:
        self.master.require_operator(request)
        body = await read_json(request) if request.can_read_body else {}
        if not isinstance(body, dict):
            raise ValidationError("a JSON object was expected")
        return body

    async def search(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        return json_response({"packages": self.catalogue.search(str(body.get("query") or ""))})

    async def describe(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        pkg = self.catalogue.describe(str(body.get("packageName") or ""), body.get("packageVersion"))
        return json_response({"package": pkg.describe(), "config": pkg.config or {},
                              "versions": self.catalogue.versions(pkg.name)})

    async def render(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        pkg = self.catalogue.describe(str(body.get("packageName") or ""), body.get("packageVersion"))
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise ValidationError("options must be an object")
        return json_response({"marathonJson": render(pkg, options, app_id=body.get("appId"))})
