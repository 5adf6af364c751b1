"""The package manager's HTTP API (cosmos-shaped): catalogue, install, uninstall, list, repositories.

    POST /package/search    {"query": "redis"}                       → {"packages": [...]}
    POST /package/describe  {"packageName", "packageVersion"?}       → {"package": {...}, "config": schema}
    POST /package/render    {"packageName", "packageVersion"?, "options"?, "appId"?}
                                                                      → {"marathonJson": {...}}
    POST /package/install   {"packageName", "packageVersion"?, "options"?, "appId"?}
                                                 → {"appId", "deploymentId", "packageName", "packageVersion", notes}
    POST /package/update    {"packageName", "packageVersion"?, "options"?, "appId"?}  (earlier options kept)
    POST /package/uninstall {"packageName", "appId"?, "all"?}        → {"results": [{appId, postUninstallNotes}]}
    POST /package/list      {"packageName"?, "appId"?}               → {"packages": [{appId, packageInformation}]}
    POST /package/repository/list|add|delete  {"name", "uri", "index"?} → {"repositories": [{name, uri, priority}]}

Installing is rendering plus the services framework's own create path (ServicesApi.create: the same
validation as POST /v2/apps, one atomic ``app_deploy`` that refuses a taken id) — an install creates
its app or leaves nothing. What is installed is read back from the apps' DCOS_PACKAGE_* labels.
Repositories are committed state (packages/state.py); their contents are loaded on first use by each
master and kept in memory by (name, url).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dcosd.errors import Conflict, NotFound, ValidationError
from dcosd.httputil import json_response, read_json
from dcosd.master.packages import state as repo_state
from dcosd.master.packages.render import (
    LABEL_METADATA,
    LABEL_NAME,
    LABEL_OPTIONS,
    LABEL_SOURCE,
    LABEL_VERSION,
    decode_label,
    merge,
    render,
)
from dcosd.master.packages.repository import (
    DEFAULT_REPOSITORY_NAME,
    DEFAULT_REPOSITORY_URL,
    Catalogue,
    Repository,
    default_repository,
    fetch_repository,
    load_repository,
)

if TYPE_CHECKING:
    from dcosd.master.service import Master

log = logging.getLogger(__name__)


async def load_any(name: str, url: str) -> Repository:
    """A repository by URL: the built-in catalogue, http(s) (fetched), or a local path / file:// URL."""
    if url == DEFAULT_REPOSITORY_URL:
        return await asyncio.get_running_loop().run_in_executor(None, default_repository)
    if url.startswith(("http://", "https://")):
        return await fetch_repository(url, name=name)
    return await asyncio.get_running_loop().run_in_executor(None, lambda: load_repository(url, name=name))


class PackageApi:
    def __init__(self, master: "Master") -> None:
        self.master = master
        self._loaded: dict[tuple[str, str], Repository] = {}
        self.errors: dict[str, str] = {}  # repository name → why it could not be loaded (last try)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/package/search", self.search), web.post("/package/describe", self.describe),
                web.post("/package/render", self.render), web.post("/package/install", self.install),
                web.post("/package/update", self.update), web.post("/package/uninstall", self.uninstall),
                web.post("/package/list", self.list_installed),
                web.post("/package/repository/list", self.repo_list),
                web.post("/package/repository/add", self.repo_add),
                web.post("/package/repository/delete", self.repo_delete)]

    # -- the catalogue --------------------------------------------------------------------
    def _rows(self) -> list[dict[str, Any]]:
        try:
            return repo_state.repositories(self.master.store)
        except Exception:  # noqa: BLE001 — a store without migration 7 (never in a real master): the default only
            return [{"name": DEFAULT_REPOSITORY_NAME, "url": DEFAULT_REPOSITORY_URL, "priority": 0}]

    async def catalogue(self) -> Catalogue:
        """The committed repositories, loaded; one that cannot be loaded now is left out (and named in
        /package/repository/list) rather than hiding every other."""
        repos = []
        for row in self._rows():
            key = (row["name"], row["url"])
            repo = self._loaded.get(key)
            if repo is None:
                try:
                    repo = await load_any(*key)
                except Exception as exc:  # noqa: BLE001 — DcosdError or worse: reported, not fatal
                    self.errors[row["name"]] = getattr(exc, "message", None) or str(exc)
                    log.warning("package repository %s (%s) not loaded: %s", *key, self.errors[row["name"]])
                    continue
                self._loaded[key] = repo
                self.errors.pop(row["name"], None)
            repos.append(repo)
        return Catalogue(repos)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        self.master.require_operator(request)
        body = await read_json(request) if request.can_read_body else {}
        if not isinstance(body, dict):
            raise ValidationError("a JSON object was expected")
        return body

    @staticmethod
    def _options(body: dict[str, Any]) -> dict[str, Any]:
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise ValidationError("options must be a JSON object")
        return options

    async def _package(self, body: dict[str, Any]) -> Any:
        name = body.get("packageName")
        if not isinstance(name, str) or not name:
            raise ValidationError("packageName is required")
        version = body.get("packageVersion")
        if version is not None and not isinstance(version, str):
            raise ValidationError("packageVersion must be a string")
        return (await self.catalogue()).describe(name, version)

    async def search(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        return json_response({"packages": (await self.catalogue()).search(str(body.get("query") or ""))})

    async def describe(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        pkg = await self._package(body)
        return json_response({"package": pkg.describe(), "config": pkg.config or {},
                              "versions": (await self.catalogue()).versions(pkg.name)})

    async def render(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        pkg = await self._package(body)
        return json_response({"marathonJson": render(pkg, self._options(body), app_id=body.get("appId"))})

    # -- install / update / uninstall / list ------------------------------------------------
    def _installed(self, name: str | None = None, app_id: str | None = None) -> list[dict[str, Any]]:
        from dcosd.master.services import reads

        out = []
        for a in reads.apps(self.master.store).values():
            labels = a.spec.get("labels") or {}
            if LABEL_NAME not in labels or (name and labels[LABEL_NAME] != name):
                continue
            if app_id and a.id != "/" + app_id.strip("/"):
                continue
            out.append({"appId": a.id, "labels": labels, "spec": a.spec})
        return out

    @staticmethod
    def _metadata(labels: dict[str, str]) -> dict[str, Any]:
        try:
            return decode_label(labels[LABEL_METADATA])
        except Exception:  # noqa: BLE001 — an app labelled by hand: what the plain labels say
            return {"name": labels.get(LABEL_NAME), "version": labels.get(LABEL_VERSION)}

    async def install(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.master.require_leader()
        pkg = await self._package(body)
        app = render(pkg, self._options(body), app_id=body.get("appId"))
        spec, out = await self.master.services.api.create(app)
        meta = pkg.package_json
        return json_response({"packageName": pkg.name, "packageVersion": pkg.version, "appId": spec["id"],
                              "deploymentId": out["deploymentId"], "version": out["version"],
                              "preInstallNotes": meta.get("preInstallNotes"),
                              "postInstallNotes": meta.get("postInstallNotes")}, status=201)

    def _one_installed(self, name: str, app_id: Any) -> dict[str, Any]:
        found = self._installed(name, app_id if isinstance(app_id, str) else None)
        if not found:
            raise NotFound(f"package {name!r} is not installed" + (f" as app {app_id}" if app_id else ""))
        if len(found) > 1:
            raise Conflict(f"package {name!r} is installed as several apps ({', '.join(f['appId'] for f in found)}): "
                           "name one with appId (--app-id)")
        return found[0]

    async def update(self, request: web.Request) -> web.Response:
        """Render another version (or other options) over an installed app, keeping the options it was
        installed with (DCOS_PACKAGE_OPTIONS) under the new ones; rolled out as a normal deployment."""
        from dcosd.master.services.appdef import parse_app

        body = await self._body(request)
        self.master.require_leader()
        name = body.get("packageName")
        if not isinstance(name, str) or not name:
            raise ValidationError("packageName is required")
        cur = self._one_installed(name, body.get("appId"))
        try:
            before = decode_label(cur["labels"][LABEL_OPTIONS])
        except Exception:  # noqa: BLE001
            before = {}
        options = merge(before if isinstance(before, dict) else {}, self._options(body))
        pkg = await self._package({**body, "packageName": name})
        app = render(pkg, options, app_id=cur["appId"])
        spec = parse_app(app)
        out = await self.master.services.api._deploy({spec["id"]: spec}, force=bool(body.get("force")))
        return json_response({"packageName": pkg.name, "packageVersion": pkg.version, "appId": spec["id"],
                              "previousVersion": cur["labels"].get(LABEL_VERSION), "options": options,
                              "deploymentId": out["deploymentId"], "version": out["version"]})

    async def uninstall(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.master.require_leader()
        name = body.get("packageName")
        if not isinstance(name, str) or not name:
            raise ValidationError("packageName is required")
        app_id = body.get("appId")
        if body.get("all") and not app_id:
            found = self._installed(name)
            if not found:
                raise NotFound(f"package {name!r} is not installed")
        else:
            found = [self._one_installed(name, app_id)]
        out = await self.master.services.api._deploy({f["appId"]: None for f in found}, force=True)
        results = [{"packageName": name, "appId": f["appId"], "packageVersion": f["labels"].get(LABEL_VERSION),
                    "postUninstallNotes": self._metadata(f["labels"]).get("postUninstallNotes")} for f in found]
        return json_response({"results": results, "deploymentId": out["deploymentId"]})

    async def list_installed(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        name, app_id = body.get("packageName"), body.get("appId")
        packages = []
        for f in self._installed(name if isinstance(name, str) else None, app_id if isinstance(app_id, str) else None):
            meta = self._metadata(f["labels"])
            packages.append({"appId": f["appId"], "packageInformation": {"packageDefinition": meta},
                             "name": f["labels"][LABEL_NAME], "version": f["labels"].get(LABEL_VERSION),
                             "source": f["labels"].get(LABEL_SOURCE), "instances": f["spec"].get("instances")})
        return json_response({"packages": packages})

    # -- repositories ---------------------------------------------------------------------
    def _repo_json(self) -> dict[str, Any]:
        return {"repositories": [{"name": r["name"], "uri": r["url"], "priority": r["priority"],
                                  **({"error": self.errors[r["name"]]} if r["name"] in self.errors else {})}
                                 for r in self._rows()]}

    async def repo_list(self, request: web.Request) -> web.Response:
        await self._body(request)
        return json_response(self._repo_json())

    async def repo_add(self, request: web.Request) -> web.Response:
        """Checked before it is committed: an unreachable or malformed repository is refused here."""
        body = await self._body(request)
        self.master.require_leader()
        name, url, index = body.get("name"), body.get("uri") or body.get("url"), body.get("index")
        if not isinstance(name, str) or not name.strip() or not isinstance(url, str) or not url.strip():
            raise ValidationError("a repository needs a name and a uri")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise ValidationError("index must be an integer")
        rows = self._rows()
        if any(r["name"] == name for r in rows):
            raise Conflict(f"a package repository named {name!r} already exists")
        if any(r["url"] == url for r in rows):
            raise Conflict(f"a package repository with URL {url!r} already exists")
        repo = await load_any(name, url)
        await self.master.store.propose({"type": "package_repo_add", "name": name, "url": url, "index": index})
        self._loaded[(name, url)] = repo
        return json_response(self._repo_json())

    async def repo_delete(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.master.require_leader()
        key = body.get("name") or body.get("uri") or body.get("url")
        if not isinstance(key, str) or not key:
            raise ValidationError("name (or uri) of the repository to remove is required")
        gone = await self.master.store.propose({"type": "package_repo_remove", "name": key})
        self._loaded.pop((gone["name"], gone["url"]), None)
        self.errors.pop(gone["name"], None)
        return json_response(self._repo_json())
