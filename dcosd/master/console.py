"""The one interface on every master: the web UI's static files, its live events, machine operations.

``install(master, app)`` is called by Master.start() before the server runs. The
UI is plain files inside the package (dcosd/master/ui/: ES modules, CSS, one
HTML page) — nothing builds them, at run time or before. Pages address views by
the URL fragment (``/#/tasks``), so the server only serves ``/`` and ``/ui/*``;
``/ui/<anything not a file>`` answers the page too (links to deep paths work).
The static files need no token: they hold no data, and the page asks for the
token before it calls any API.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from dcosd.master.events import EventHub
from dcosd.master.node_ops import NodeOps
from dcosd.master.package_api import PackageApi

if TYPE_CHECKING:
    from dcosd.master.service import Master

UI_DIR = Path(__file__).parent / "ui"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


def _file(path: Path) -> web.Response:
    ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    # no-cache: revalidate every load (ETag), so a master upgrade never serves a stale mix of modules.
    return web.Response(body=path.read_bytes(), content_type=ctype, charset="utf-8" if ctype.startswith("text") else None,
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


async def index(request: web.Request) -> web.Response:
    resp = _file(UI_DIR / "index.html")
    resp.headers["Content-Security-Policy"] = ("default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                               "img-src 'self' data:; connect-src 'self'")
    return resp


async def asset(request: web.Request) -> web.Response:
    rel = request.match_info["path"]
    root = UI_DIR.resolve()
    path = (root / rel).resolve()
    if root not in path.parents or not path.is_file():
        if "." in rel.rsplit("/", 1)[-1]:
            raise web.HTTPNotFound(text="no such UI file")
        return await index(request)  # a deep link: the page routes it
    return _file(path)


def install(master: "Master", app: web.Application) -> None:
    master.events = EventHub(master)  # type: ignore[attr-defined]
    master.store.listeners.append(master.events.on_commit)  # type: ignore[attr-defined]
    master.node_ops = NodeOps(master)  # type: ignore[attr-defined]
    app.add_routes(master.events.routes())  # type: ignore[attr-defined]
    app.add_routes(master.node_ops.routes())  # type: ignore[attr-defined]
    # Package routes here only until the packages part serves its own (install/uninstall need services).
    if "/package/search" not in {r.resource.canonical for r in app.router.routes() if r.resource is not None}:
        app.add_routes(PackageApi(master).routes())
    app.add_routes([web.get("/", index), web.get("/ui", index), web.get("/ui/{path:.*}", asset)])
