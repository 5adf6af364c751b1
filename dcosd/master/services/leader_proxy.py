"""The leader proxy: a follower master forwards a request for the leader and relays the answer.

For Marathon's /v2 writes, and for any request for the leader (ha.py's ``for_the_leader``: writes,
the cluster view) that asks for it with ``X-Dcosd-Proxy: leader`` — the web UI's calls. Others get
ha.py's 307. Marathon clients are used to any Marathon instance taking a write (Marathon's
LeaderProxyFilter), and the usual one, marathon-python on requests, drops the Authorization header
when a redirect changes the port — so after a failover a client pointed at what is now a follower
got 401 for every write. A browser cannot follow the 307 either: the leader is another origin, and
fetch drops the Authorization header on the way. Only when a leader is known and reachable;
otherwise the request goes on to ha.py's middleware (503 without a leader), which also forwards a
write that lost its leader while it was served. A request already proxied once is never proxied
again (leadership moved meanwhile: 307 then).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from dcosd.httputil import error_response

if TYPE_CHECKING:
    from dcosd.master.service import Master

log = logging.getLogger(__name__)

VIA = "X-Marathon-Via"  # Marathon's own header for a proxied request
ASK = "X-Dcosd-Proxy"  # "leader": forward this request to the leader rather than answer 307
_FORWARD = ("Authorization", "Content-Type", "Accept")
_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=2)


def _marathon_path(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def wanted(request: web.Request) -> bool:
    """Whether a request for the leader is forwarded to it rather than answered 307: Marathon's /v2,
    and whatever asks with ``X-Dcosd-Proxy: leader`` — unless it was proxied once already."""
    return VIA not in request.headers and (request.headers.get(ASK) == "leader" or _marathon_path(request.path))


async def forward(master: Master, request: web.Request, url: str) -> web.Response:
    """Send ``request`` (its body read already, or still to read) to the leader at ``url``; its answer."""
    headers = {k: request.headers[k] for k in _FORWARD if k in request.headers}
    headers[VIA] = master.ha.my_id  # type: ignore[union-attr]
    body = await request.read()
    try:
        async with master.http.request(request.method, url + request.path_qs, data=body, headers=headers,
                                       timeout=_TIMEOUT, allow_redirects=False) as r:
            data = await r.read()
            out = web.Response(status=r.status, body=data)
            for k in ("Content-Type", "Location"):
                if k in r.headers:
                    out.headers[k] = r.headers[k]
            out.headers["X-Marathon-Leader"] = url
            return out
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.info("proxying %s %s to the leader %s failed: %s", request.method, request.path, url, exc)
        return error_response(503, f"the leading master ({url}) did not answer: {exc}; retry shortly",
                              leader=None)


def middleware(master: Master) -> Any:
    @web.middleware
    async def leader_proxy(request: web.Request, handler: Any) -> web.StreamResponse:
        ha = master.ha
        if ha is None or ha.store.is_leader or not ha.for_the_leader(request) or not wanted(request):
            return await handler(request)
        url = ha.leader_url()
        if url is None or ha.store.leader == ha.my_id:
            return await handler(request)  # ha.py answers 503: no leader right now
        return await forward(master, request, url)

    return leader_proxy
