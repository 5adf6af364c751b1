"""A write that loses its leader mid-way goes on to the new leader when none of it entered the log.

ha.py's real middleware (behind the real leader proxy) in an aiohttp server on loopback, and a second
server standing for the new leader, which records what reaches it. The store under the middleware is
a stand-in (the shell's part, ENTERED_LOG, is tested on real RaftStores in
test_raft_handover_proposals.py): the handler moves leadership to m2, as a hand-over does, and is
refused with NotLeader — with or without a command of it in the log first. And a write that reaches
a master just elected, before its leader-only work started.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from dcosd.errors import NotLeader
from dcosd.httputil import json_response, make_app
from dcosd.master.ha import HighAvailability
from dcosd.master.replog.shell import ENTERED_LOG
from dcosd.master.services.leader_proxy import middleware as leader_proxy
from tests.harness.cluster import free_port

TOKEN = "Bearer op-token"


class _Store:
    """Leads until the handler hands leadership to m2."""

    def __init__(self) -> None:
        self.is_leader, self.leader, self.handover = True, "m1", None

    def hand_over(self) -> None:
        self.is_leader, self.leader = False, "m2"

    async def wait_for_leader(self, timeout: float) -> None:
        return None


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _scenario() -> dict[str, Any]:
    seen: list[tuple[str, str, bytes, str | None]] = []

    async def new_leader(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, await request.read(), request.headers.get("Authorization")))
        return json_response({"task_id": "w1", "by": "m2"}, status=201)

    leader_app = web.Application()
    leader_app.router.add_route("*", "/{tail:.*}", new_leader)
    ports = {"m1": free_port(), "m2": free_port()}
    peers = {i: f"http://127.0.0.1:{p}" for i, p in ports.items()}

    async with aiohttp.ClientSession() as http:
        master = SimpleNamespace(http=http, cluster_secret="s", is_leader=True)
        ha = HighAvailability(master, peers, "m1")  # type: ignore[arg-type]
        master.ha = ha
        ha.store = _Store()  # type: ignore[assignment]

        async def refused(request: web.Request) -> web.Response:
            body = json.loads(await request.read())
            if body.get("proposed_first"):  # a command of it entered the log before leadership moved
                ENTERED_LOG.get().append(7)  # type: ignore[union-attr]
            ha.store.hand_over()  # type: ignore[attr-defined]
            raise NotLeader(leader=None)  # as the shell refuses a proposal held by a hand-over

        async def served(request: web.Request) -> web.Response:
            if not master.is_leader:  # Master.require_leader: leader-only work not started yet
                raise NotLeader(leader="m1")
            return json_response({"task_id": "w3", "by": "m1"}, status=201)

        app = make_app([leader_proxy(master), ha.middleware])  # type: ignore[arg-type]
        app.router.add_post("/dcosd/v1/tasks", refused)
        app.router.add_post("/v2/apps", refused)
        app.router.add_post("/dcosd/v1/jobs", served)
        runners = [await _serve(leader_app, ports["m2"]), await _serve(app, ports["m1"])]
        out: dict[str, Any] = {"seen": seen, "m2": peers["m2"]}
        try:
            async def post(path: str, body: dict, **headers: str) -> tuple[int, Any, str | None]:
                ha.store = _Store()  # type: ignore[assignment]
                async with http.post(peers["m1"] + path, json=body, allow_redirects=False,
                                     headers={"Authorization": TOKEN, **headers}) as r:
                    text = await r.text()
                    return r.status, json.loads(text) if r.content_type == "application/json" else text, \
                        r.headers.get("Location")

            out["plain"] = await post("/dcosd/v1/tasks?x=1", {"task_id": "w1"})
            out["asked"] = await post("/dcosd/v1/tasks", {"task_id": "w1"}, **{"X-Dcosd-Proxy": "leader"})
            out["marathon"] = await post("/v2/apps", {"id": "/a"})
            out["entered"] = await post("/dcosd/v1/tasks", {"task_id": "w2", "proposed_first": True},
                                        **{"X-Dcosd-Proxy": "leader"})

            # Just elected: the store leads, and leader-only work starts a loop turn later (ha.py's
            # _follow_leadership). A write in between waits for it rather than being refused.
            async def follow_leadership() -> None:
                await asyncio.sleep(0.05)
                master.is_leader = True

            master.is_leader = False
            ha._pending = asyncio.create_task(follow_leadership())
            out["elected"] = await post("/dcosd/v1/jobs", {"id": "j"})
        finally:
            for r in runners:
                await r.cleanup()
    return out


def test_a_write_refused_before_entering_the_log_goes_on_to_the_new_leader() -> None:
    out = asyncio.run(_scenario())
    m2, seen = out["m2"], out["seen"]
    # A client that follows redirects: 307 to the same path on the new leader.
    status, _, location = out["plain"]
    assert (status, location) == (307, m2 + "/dcosd/v1/tasks?x=1")
    # One that asked for the proxy (the web UI), and a Marathon client: the new leader answers them.
    assert out["asked"][:2] == (201, {"task_id": "w1", "by": "m2"})
    assert out["marathon"][:2] == (201, {"task_id": "w1", "by": "m2"})
    assert [(m, p, json.loads(b), a) for m, p, b, a in seen] == [
        ("POST", "/dcosd/v1/tasks", {"task_id": "w1"}, TOKEN), ("POST", "/v2/apps", {"id": "/a"}, TOKEN)]
    # A write with a command in the log may be committed: refused (outcome unknown), never sent on.
    status, body, _ = out["entered"]
    assert status == 503 and "not the leader" in body["message"]
    assert len(seen) == 2
    assert out["elected"][:2] == (201, {"task_id": "w3", "by": "m1"})
