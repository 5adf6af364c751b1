"""The master's front (master/front.py): lean routes served on its own HTTP/1.1 path, everything else
handed to aiohttp with every byte, on real loopback sockets.

aiohttp's answers carry ``Server: ... aiohttp/...``; the front's do not: that is how each test tells
who answered.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dcosd.errors import ValidationError
from dcosd.httputil import MAX_BODY, json_response, make_app, read_json
from dcosd.master import front
from harness.cluster import ClusterFactory


class Served:
    """An aiohttp app with one lean route (POST /w) and one that is not (GET /r), behind the front."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.release = asyncio.Event()
        self.finished: list[str] = []

        @web.middleware
        async def outer(request: Any, handler: Any) -> web.StreamResponse:
            self.order.append("outer")
            return await handler(request)

        @web.middleware
        async def inner(request: Any, handler: Any) -> web.StreamResponse:
            self.order.append("inner")
            return await handler(request)

        async def write(request: Any) -> web.Response:
            self.order.append("handler")
            body = await read_json(request)
            if body.get("fail") == "validation":
                raise ValidationError("no good")
            if body.get("fail") == "redirect":
                raise web.HTTPTemporaryRedirect("http://leader.example:5050/w")
            if body.get("fail") == "crash":
                raise RuntimeError("boom")
            if body.get("wait"):
                await self.release.wait()
            self.finished.append(body.get("id", ""))
            return json_response({"got": body, "auth": request.headers.get("Authorization")}, status=201)

        async def read(request: web.Request) -> web.Response:
            return web.Response(text="plain " + request.query.get("q", ""))

        self.app = make_app([outer, inner])
        self.app.router.add_post("/w", write)
        self.app.router.add_get("/r", read)
        self.connections: set[front.FrontProtocol] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Served:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        handlers = front.lean_handlers(self.app, [("POST", "/w"), ("POST", "/missing")])
        assert list(handlers) == [(b"POST", b"/w")]
        server = self.runner.server
        self.listener = await asyncio.get_running_loop().create_server(
            lambda: front.FrontProtocol(self.app, server, handlers, self.connections), "127.0.0.1", 0)
        self.port = self.listener.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.listener.close()
        for c in list(self.connections):
            c.close()
        await self.runner.cleanup()
        for w in self.writers:
            w.close()
            try:
                await w.wait_closed()
            except OSError:
                pass

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return reader, writer


def post(body: Any, path: str = "/w", extra: str = "", raw: bytes | None = None) -> bytes:
    data = raw if raw is not None else json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{extra}\r\n").encode() + data


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    while head.startswith(b"HTTP/1.1 100 "):  # aiohttp's interim answer to Expect: 100-continue
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 5)
    return status, headers, body


def by_aiohttp(headers: dict[str, str]) -> bool:
    return "aiohttp" in headers.get("server", "")


async def test_lean_route_is_served_by_the_front_behind_the_same_middlewares():
    async with Served() as s:
        reader, writer = await s.connect()
        writer.write(post({"id": "a"}, extra="Authorization: Bearer tok\r\n"))
        status, headers, body = await response(reader)
        assert status == 201 and not by_aiohttp(headers)
        assert json.loads(body) == {"got": {"id": "a"}, "auth": "Bearer tok"}
        assert headers["content-type"] == "application/json" and "date" in headers
        assert s.order == ["outer", "inner", "handler"]  # make_app's error middleware first, as aiohttp runs them
        writer.close()


async def test_pipelined_requests_are_answered_in_order_across_the_hand_off():
    async with Served() as s:
        reader, writer = await s.connect()
        # Two lean writes, then one for aiohttp, then another lean one: all in a single packet.
        writer.write(post({"id": "1"}) + post({"id": "2"}) + b"GET /r?q=x HTTP/1.1\r\nHost: x\r\n\r\n"
                     + post({"id": "3"}))
        answers = [await response(reader) for _ in range(4)]
        assert [a[0] for a in answers] == [201, 201, 200, 201]
        assert [json.loads(a[2])["got"]["id"] for a in answers if a[0] == 201] == ["1", "2", "3"]
        assert answers[2][2] == b"plain x"
        # Once handed off, the connection stays aiohttp's, lean routes included.
        assert [by_aiohttp(a[1]) for a in answers] == [False, False, True, True]
        writer.close()


async def test_a_request_split_into_single_bytes_is_served():
    async with Served() as s:
        reader, writer = await s.connect()
        for b in post({"id": "slow"}):
            writer.write(bytes((b,)))
            await writer.drain()
        status, headers, body = await response(reader)
        assert status == 201 and not by_aiohttp(headers) and json.loads(body)["got"] == {"id": "slow"}
        writer.close()


@pytest.mark.parametrize("request_bytes", [
    post({"id": "q"}, path="/w?stale=1"),  # a query string
    post({"id": "v"}).replace(b"HTTP/1.1", b"HTTP/1.0", 1),
    b"POST /w HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"id\":1}\r\n0\r\n\r\n",
    post({"id": "e"}, extra="Expect: 100-continue\r\n"),
    post({"id": "h"}, extra="X-Name: caf\xe9\r\n".encode("latin-1").decode("latin-1")),  # a byte outside ASCII
    post({"id": "f"}, extra="X-Folded: a\r\n b\r\n"),  # obsolete line folding
    b"POST /w HTTP/1.1\r\nHost: x\r\n\r\n",  # no body at all
])
async def test_what_the_front_does_not_take_goes_to_aiohttp(request_bytes: bytes):
    async with Served() as s:
        reader, writer = await s.connect()
        writer.write(request_bytes)
        status, headers, _ = await response(reader)
        assert by_aiohttp(headers), (status, headers)
        writer.close()


async def test_bad_heads_get_aiohttp_answers_not_a_crash(caplog: pytest.LogCaptureFixture):
    async with Served() as s:
        for bad in (b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
                    b"POST /w HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\nContent-Length: 2\r\n\r\n{}",
                    b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: -2\r\n\r\n{}",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n"):
            reader, writer = await s.connect()
            writer.write(bad)
            status, headers, _ = await response(reader)
            assert status == 400 and by_aiohttp(headers), bad
            writer.close()
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == front.__name__]


async def test_too_large_a_body_is_refused_by_aiohttp_before_it_is_sent():
    async with Served() as s:
        reader, writer = await s.connect()
        writer.write(f"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode() + b"{")
        status, headers, body = await response(reader)
        assert status == 400 and by_aiohttp(headers) and "too large" in json.loads(body)["message"]
        writer.close()


async def test_errors_are_answered_as_aiohttp_would():
    async with Served() as s:
        reader, writer = await s.connect()
        writer.write(post(None, raw=b"{not json") + post({"fail": "validation"}) + post({"fail": "redirect"})
                     + post({"fail": "crash"}) + post({"id": "after"}))
        malformed, invalid, redirect, crash, after = [await response(reader) for _ in range(5)]
        assert malformed[0] == 400 and "malformed JSON" in json.loads(malformed[2])["message"]
        assert invalid[0] == 400 and json.loads(invalid[2]) == {"message": "no good"}
        assert redirect[0] == 307 and redirect[1]["location"] == "http://leader.example:5050/w"
        assert crash[0] == 500 and "traceback" not in crash[2].decode().lower()
        assert after[0] == 201 and not any(by_aiohttp(a[1]) for a in (malformed, invalid, redirect, crash, after))
        writer.close()


async def test_connection_close_is_honoured():
    async with Served() as s:
        reader, writer = await s.connect()
        writer.write(post({"id": "c"}, extra="Connection: close\r\n") + post({"id": "never"}))
        status, headers, _ = await response(reader)
        assert status == 201 and headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed: the second request is not served
        assert s.finished == ["c"]
        writer.close()


async def test_a_write_whose_client_went_away_still_completes():
    async with Served() as s:
        reader, writer = await s.connect()
        writer.write(post({"id": "w", "wait": True}))
        await writer.drain()
        while not s.order or s.order[-1] != "handler":
            await asyncio.sleep(0.01)
        writer.close()
        await writer.wait_closed()
        s.release.set()
        for _ in range(200):
            if s.finished:
                break
            await asyncio.sleep(0.01)
        assert s.finished == ["w"]


async def test_idle_connections_are_closed_and_so_are_all_at_stop(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(front, "KEEPALIVE_TIMEOUT", 0.2)
    async with Served() as s:
        reader, writer = await s.connect()
        writer.write(post({"id": "k"}))
        assert (await response(reader))[0] == 201
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed once idle for the timeout
        writer.close()
        monkeypatch.setattr(front, "KEEPALIVE_TIMEOUT", 60)
        reader2, writer2 = await s.connect()
        writer2.write(post({"id": "k2"}))
        assert (await response(reader2))[0] == 201
    assert await asyncio.wait_for(reader2.read(), 5) == b""  # __aexit__ closed it
    writer2.close()


async def test_a_request_that_stops_arriving_is_closed_after_the_timeout(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(front, "KEEPALIVE_TIMEOUT", 0.3)
    async with Served() as s:
        for partial in (post({"id": "p"})[:20], post({"id": "p"})[:-3]):  # in the head; in the body
            reader, writer = await s.connect()
            writer.write(partial)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert loop.time() - t0 >= 0.25
        assert s.finished == []


async def test_reading_pauses_while_a_flood_waits_behind_a_request():
    async with Served() as s:
        reader, writer = await s.connect()
        flood = post({"id": "first", "wait": True}) + post({"id": "x"}) * 8000  # ~1 MB behind a slow write
        writer.write(flood)
        while not s.order or s.order[-1] != "handler":
            await asyncio.sleep(0.01)
        conn = next(iter(s.connections))
        for _ in range(200):
            if conn._paused_reading:
                break
            await asyncio.sleep(0.01)
        assert conn._paused_reading and len(conn._buf) <= 2 * front._PAUSE_AT + 65536
        s.release.set()
        answers = [await response(reader) for _ in range(8001)]
        assert all(a[0] == 201 for a in answers) and len(s.finished) == 8001
        writer.close()


def test_a_master_serves_task_submissions_on_the_front_and_the_rest_on_aiohttp(tmp_path: Path):
    f = ClusterFactory(tmp_path)
    try:
        m = f.master()
        host, port = m.url.split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)  # one keep-alive connection
        auth = {"Authorization": f"Bearer {m.token}", "Content-Type": "application/json"}
        for i in range(3):
            conn.request("POST", "/dcosd/v1/tasks", body=json.dumps(
                {"task_id": f"front-{i}", "name": "f", "argv": ["true"], "resources": {"cpus": 0.1, "mem": 8}}),
                headers=auth)
            r = conn.getresponse()
            assert (r.status, json.loads(r.read())) == (201, {"task_id": f"front-{i}"})
            assert r.getheader("Server") is None  # the front's answer
        conn.request("POST", "/dcosd/v1/tasks", body=b"{}", headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 401 and "operator token" in json.loads(r.read())["message"]
        conn.request("GET", "/dcosd/v1/tasks?state=QUEUED", headers=auth)
        r = conn.getresponse()
        assert r.status == 200 and "aiohttp" in r.getheader("Server", "")
        assert {t["id"] for t in json.loads(r.read())["tasks"]} >= {"front-0", "front-1", "front-2"}
        conn.close()
    finally:
        f.stop_all()


def test_a_follower_answers_a_task_submission_on_the_front_with_307_or_proxies_it(tmp_path: Path):
    from tests.harness.ha_cluster import TOKEN, HaCluster

    ha = HaCluster(tmp_path)
    try:
        ha.start_all()
        leader = ha.wait_leader()
        follower = next(i for i in ha.ids if i != leader)
        host, port = ha.urls[follower].split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        body = json.dumps({"task_id": "via-follower", "name": "f", "argv": ["true"], "resources": {"cpus": 0.1, "mem": 8}})
        conn.request("POST", "/dcosd/v1/tasks", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        assert (r.status, r.getheader("Location")) == (307, ha.urls[leader] + "/dcosd/v1/tasks")
        assert r.getheader("Server") is None  # the follower's front answered
        conn.request("POST", "/dcosd/v1/tasks", body=body, headers={**headers, "X-Dcosd-Proxy": "leader"})
        r = conn.getresponse()
        assert (r.status, json.loads(r.read())) == (201, {"task_id": "via-follower"})
        assert r.getheader("X-Marathon-Leader") == ha.urls[leader] and r.getheader("Server") is None
        conn.close()
        ha.wait_caught_up(ha.ids)
        assert all("via-follower" in ha.queued_ids(i) for i in ha.ids)
    finally:
        ha.stop_all()
