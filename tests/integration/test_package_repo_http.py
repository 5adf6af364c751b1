"""A repository served over HTTP by a real aiohttp server on 127.0.0.1: added, searched, described, rendered, removed."""

from __future__ import annotations

import base64
import io
import json
import socket
import zipfile
from typing import AsyncIterator

import pytest
from aiohttp import web

from dcosd.errors import NotFound, Unavailable
from dcosd.master.packages.render import LABEL_OPTIONS, LABEL_SOURCE, decode_label, render
from dcosd.master.packages.repository import (
    Catalogue,
    Limits,
    RepositoryError,
    default_repository,
    fetch_repository,
)

TEMPLATE = """{
  "id": "/{{service.name}}",
  "cmd": "exec echo-server --port \\"$PORT0\\" --greeting \\"{{service.greeting}}\\"",
  "cpus": 0.1, "mem": 32, "instances": {{service.count}},
  "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "echo"}],
  "healthChecks": [{"protocol": "TCP", "portIndex": 0}],
  "constraints": [["hostname", "UNIQUE"]],
  "fetch": [{"uri": "{{resource.assets.uris.binary}}"}]
}"""

CONFIG = {"type": "object", "properties": {"service": {"type": "object", "properties": {
    "name": {"type": "string", "default": "echo"},
    "greeting": {"type": "string", "default": "hello"},
    "count": {"type": "integer", "minimum": 1, "default": 1}}}}}


def universe_zip() -> bytes:
    files = {
        "package.json": json.dumps({"packagingVersion": "3.0", "name": "echo", "version": "2.1.0",
                                    "maintainer": "m@example.com", "description": "An echo server",
                                    "tags": ["network", "example"]}),
        "config.json": json.dumps(CONFIG),
        "marathon.json.mustache": TEMPLATE,
        "resource.json": json.dumps({"assets": {"uris": {"binary": "http://example.com/echo?v=2&arch=amd64"}}}),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(f"universe-main/repo/packages/E/echo/0/{name}", text)
    return buf.getvalue()


def universe_json() -> bytes:
    return json.dumps({"packages": [{
        "packagingVersion": "4.0", "name": "echo", "version": "9.0.0", "releaseVersion": 3,
        "maintainer": "m", "description": "Echo from JSON", "tags": [],
        "config": CONFIG, "resource": {"assets": {"uris": {"binary": "http://example.com/e"}}},
        "marathon": {"v2AppMustacheTemplate": base64.b64encode(TEMPLATE.encode()).decode()},
    }]}).encode()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    zip_body, json_body = universe_zip(), universe_json()

    async def repo_zip(request: web.Request) -> web.Response:
        return web.Response(body=zip_body, content_type="application/zip")

    async def repo_json(request: web.Request) -> web.Response:
        return web.Response(body=json_body, content_type="application/vnd.dcos.universe.repo+json")

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)  # chunked: no Content-Length to trust
        for _ in range(64):
            await resp.write(b"x" * 1024)
        await resp.write_eof()
        return resp

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>not a repo</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/repo.zip", repo_zip)
    app.router.add_get("/repo.json", repo_json)
    app.router.add_get("/big", big)
    app.router.add_get("/html", html)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_http_repository_lifecycle(server: str):
    url = f"{server}/repo.zip"
    repo = await fetch_repository(url, name="remote")
    assert repo.url == url

    cat = Catalogue([default_repository()])
    cat.add(repo, index=0)
    assert [r["name"] for r in cat.search("echo")] == ["echo"]
    assert [r["name"] for r in cat.search("network")] == ["echo"]
    assert {"echo", "redis", "static-files"} <= {r["name"] for r in cat.search()}

    pkg = cat.describe("echo")
    assert (pkg.version, pkg.repository) == ("2.1.0", "remote")
    assert pkg.describe()["package"]["description"] == "An echo server"

    app = render(pkg, {"service": {"greeting": 'hi "there" & <you>', "count": 2}})
    assert app["labels"][LABEL_SOURCE] == url
    assert app["instances"] == 2
    assert app["cmd"] == 'exec echo-server --port "$PORT0" --greeting "hi "there" & <you>"'
    assert app["fetch"] == [{"uri": "http://example.com/echo?v=2&arch=amd64"}]
    assert decode_label(app["labels"][LABEL_OPTIONS])["service"]["greeting"] == 'hi "there" & <you>'

    cat.remove("remote")
    with pytest.raises(NotFound):
        cat.describe("echo")
    assert cat.describe("redis").repository == "dcosd"


async def test_http_json_repository(server: str):
    repo = await fetch_repository(f"{server}/repo.json")
    pkg = repo.get("echo")
    assert (pkg.version, pkg.revision) == ("9.0.0", 3)
    assert render(pkg)["id"] == "/echo"


async def test_http_errors(server: str):
    with pytest.raises(RepositoryError, match="HTTP 404"):
        await fetch_repository(f"{server}/missing.zip")
    with pytest.raises(RepositoryError, match="too large"):
        await fetch_repository(f"{server}/big", limits=Limits(download_bytes=10_000))
    with pytest.raises(RepositoryError, match="neither a zip archive nor a JSON repository"):
        await fetch_repository(f"{server}/html")
    with pytest.raises(RepositoryError, match="http://, https:// or file://"):
        await fetch_repository("ftp://127.0.0.1/repo.zip")


async def test_unreachable_server_is_unavailable():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unavailable, match="cannot fetch the repository"):
        await fetch_repository(f"http://127.0.0.1:{port}/repo.zip", timeout=5)


async def test_file_url_through_fetch(tmp_path):
    path = tmp_path / "repo.zip"
    path.write_bytes(universe_zip())
    repo = await fetch_repository(path.as_uri())
    assert repo.get("echo").version == "2.1.0"
