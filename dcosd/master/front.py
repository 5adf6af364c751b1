"""The master's listening socket: the hottest writes on a lean HTTP/1.1 path, the rest on aiohttp.

Every connection starts on ``FrontProtocol``. While each request on it is a plain ``POST`` to one of
a few exact paths (``LEAN_ROUTES``: writes that clients send at a high rate, such as submitting a task),
the front parses it itself and runs the same handler behind the same middlewares as aiohttp would
(taken from the aiohttp application, so there is one definition of each). The first request that is
anything else — another path or method, a query string, chunked or ``Expect`` bodies, HTTP/1.0, an
upgrade, any byte outside printable ASCII in its head — goes to aiohttp with every byte from its
first on: the connection is handed to an aiohttp ``RequestHandler`` for good, exactly as if aiohttp
had accepted it. So whatever the front does not take, aiohttp parses, checks and answers as before.

Why: a write through aiohttp cost the leader ~75 µs of CPU for the HTTP layer alone (request and
response objects, its parser's payload stream, header multidicts, the writer), a lean protocol ~20
(bench: 1 client 0.31 against 0.23 ms a round trip, on the same handler) — a tenth of a replicated
write's critical path at one client, and a quarter of the leader's CPU per write at 16. The masters
talk to each other the same way for the same reason (replog/transport.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from functools import partial
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

from dcosd.httputil import MAX_BODY

log = logging.getLogger(__name__)

# (method, path) of the writes the front serves itself; their handlers are the aiohttp routes' own.
LEAN_ROUTES: tuple[tuple[str, str], ...] = (("POST", "/dcosd/v1/tasks"),)
KEEPALIVE_TIMEOUT = 75.0  # as aiohttp's default: an idle keep-alive connection is closed after it
MAX_HEAD = 8190  # bytes of request line and headers; a longer head is aiohttp's to refuse
_PAUSE_AT = 256 << 10  # unprocessed bytes at which reading pauses until the handler catches up
# Any control byte but the line ends, or anything outside ASCII: aiohttp's to judge, not ours.
_UNUSUAL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers whose presence means framing or semantics the front does not implement.
_HAND_OFF = frozenset((b"transfer-encoding", b"expect", b"upgrade", b"content-encoding"))
_EMPTY_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())
_NO_BODY = frozenset((204, 304))


class LeanRequest:
    """What the master's middlewares and lean handlers use of ``web.Request``, for a request the
    front parsed: no query string, a body of ``Content-Length`` bytes read whole."""

    __slots__ = ("method", "path", "headers", "_body", "app", "remote", "_state")

    def __init__(self, method: str, path: str, headers: CIMultiDictProxy[str], body: bytes, app: web.Application,
                 remote: str | None) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self._body = body
        self.app = app
        self.remote = remote
        self._state: dict[str, Any] = {}

    path_qs = property(lambda self: self.path)
    raw_path = property(lambda self: self.path)
    query: MultiDictProxy[str] = _EMPTY_QUERY
    match_info: dict[str, str] = {}
    content_length = property(lambda self: len(self._body))
    body_exists = property(lambda self: bool(self._body))
    can_read_body = body_exists
    content_type = property(lambda self: self.headers.get("Content-Type", "application/octet-stream").split(";")[0])

    async def read(self) -> bytes:
        return self._body

    async def text(self) -> str:
        return self._body.decode()

    def __getitem__(self, key: str) -> Any:
        return self._state[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._state[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        return self._state.get(key, default)


def lean_handlers(app: web.Application, routes: Iterable[tuple[str, str]] = LEAN_ROUTES
                  ) -> dict[tuple[bytes, bytes], Callable[[Any], Any]]:
    """Each lean route's aiohttp handler behind the application's middlewares (outermost first, as
    aiohttp chains them). A route the application lacks is left out (its requests go to aiohttp)."""
    out: dict[tuple[bytes, bytes], Callable[[Any], Any]] = {}
    for method, path in routes:
        for route in app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            if route.method == method and info.get("path") == path:
                handler = route.handler
                for m in reversed(app.middlewares):
                    handler = partial(m, handler=handler)
                out[(method.encode(), path.encode())] = handler
                break
    return out


class _Date:
    """The Date header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True).encode()
        return self._value


_date = _Date()


def render(resp: web.Response, closing: bool) -> bytes:
    """``resp`` as HTTP/1.1 bytes, with the Content-Length, Date and Connection the front owns."""
    body = resp.body
    if body is None:
        body = b""
    if not isinstance(body, (bytes, bytearray)):
        raise TypeError(f"a lean route answered with a {type(body).__name__} body; only bytes are supported")
    status = resp.status
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, resp.reason.encode("latin-1"))]
    for name, value in resp.headers.items():
        if name.lower() not in ("content-length", "date", "connection", "transfer-encoding"):
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    if resp.cookies:
        for cookie in resp.cookies.values():
            parts.append(f"Set-Cookie: {cookie.output(header='')[1:]}\r\n".encode("latin-1"))
    if status not in _NO_BODY and status >= 200:
        parts.append(b"Content-Length: %d\r\n" % len(body))
    else:
        body = b""
    parts.append(b"Date: " + _date.now() + b"\r\n")
    if closing:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(body)
    return b"".join(parts)


class FrontProtocol(asyncio.Protocol):
    """One client connection: lean requests served here, in order, until one is not (hand_off)."""

    def __init__(self, app: web.Application, server: Callable[[], asyncio.Protocol],
                 handlers: dict[tuple[bytes, bytes], Callable[[Any], Any]], connections: set[FrontProtocol]) -> None:
        self._app = app
        self._server = server
        self._handlers = handlers
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._busy = False  # a request is being served: the next waits (responses go out in order)
        self._paused_writing = False
        self._paused_reading = False
        self._closing = False
        self._remote: str | None = None
        # One timer a connection, not one a request: it closes the connection once nothing has come in
        # for KEEPALIVE_TIMEOUT while no request is being served (idle between requests, or a head or
        # body that stopped arriving), and otherwise sets itself again for the time left.
        self._idle: asyncio.TimerHandle | None = None
        self._last_data = 0.0
        self._task: asyncio.Task | None = None  # the loop holds tasks weakly: this keeps the one serving

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, tuple) else None
        self._connections.add(self)
        loop = asyncio.get_running_loop()
        self._last_data = loop.time()
        self._idle = loop.call_later(KEEPALIVE_TIMEOUT, self._idle_check)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._connections.discard(self)
        self._transport = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        # A request being served is let finish (a write must not be cut in half by a client that
        # went away); its answer has nowhere to go and is dropped.

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._last_data = asyncio.get_running_loop().time()
        self._next()

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._next()

    def close(self) -> None:
        """Stop serving (the master is stopping): close now when idle, after the current answer if not."""
        self._closing = True
        if not self._busy and self._transport is not None:
            self._transport.close()

    # -- serving ---------------------------------------------------------------------------------------
    def _next(self) -> None:
        """Serve the next complete request in the buffer, or hand the connection to aiohttp."""
        transport = self._transport
        if transport is None or self._busy or self._paused_writing or self._closing:
            self._flow(transport)
            return
        buf = self._buf
        end = buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
        if end < 0:
            if len(buf) > MAX_HEAD or (buf and not buf[:1].isupper()):
                self._hand_off()
            return
        parsed = self._parse_head(bytes(buf[:end]))
        if parsed is None:
            self._hand_off()
            return
        handler, method, path, headers, length, closing = parsed
        start = end + 4
        if len(buf) < start + length:
            self._flow(transport)
            return
        body = bytes(buf[start:start + length])
        del buf[:start + length]
        self._flow(transport)
        self._busy = True
        request = LeanRequest(method, path, headers, body, self._app, self._remote)
        self._task = asyncio.get_running_loop().create_task(self._serve(handler, request, closing))

    def _parse_head(self, head: bytes) -> tuple | None:
        """The lean handler and the request's parts, or None when aiohttp is to take the request."""
        if _UNUSUAL.search(head) is not None:
            return None
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] != b"HTTP/1.1":
            return None
        handler = self._handlers.get((parts[0], parts[1]))
        if handler is None:
            return None
        headers: CIMultiDict[str] = CIMultiDict()
        length: int | None = None
        closing = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or _TOKEN.fullmatch(name) is None:
                return None  # a malformed field, or obsolete line folding: aiohttp answers it
            lower = name.lower()
            if lower in _HAND_OFF:
                return None
            value = value.strip(b" \t")
            if lower == b"content-length":
                if length is not None or not value.isdigit():
                    return None
                length = int(value)
            elif lower == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                if b"upgrade" in tokens:
                    return None
                closing = b"close" in tokens
            headers.add(name.decode(), value.decode())
        if length is None or length > MAX_BODY:
            return None  # no body, or too large: aiohttp's answer is the one to give
        return handler, parts[0].decode(), parts[1].decode(), CIMultiDictProxy(headers), length, closing

    async def _serve(self, handler: Callable[[Any], Any], request: LeanRequest, closing: bool) -> None:
        try:
            try:
                resp = await handler(request)
            except web.HTTPException as exc:  # as aiohttp answers it: a redirect, 401, ...
                resp = exc
            out = render(resp, closing or self._closing)
        except Exception:  # noqa: BLE001 — error_middleware answers handler errors; this is the front's own
            log.exception("unhandled error serving %s %s", request.method, request.path)
            out = render(web.json_response({"message": "internal error; see the server log"}, status=500), True)
            closing = True
        finally:
            self._task = None
        transport = self._transport
        self._busy = False
        if transport is None:
            return
        transport.write(out)
        self._last_data = asyncio.get_running_loop().time()  # the keep-alive wait starts at the answer
        if closing or self._closing:
            transport.close()
            return
        self._next()

    def _hand_off(self) -> None:
        """Give the connection, and every byte not yet served, to an aiohttp RequestHandler for good."""
        transport = self._transport
        if transport is None:
            return
        self._connections.discard(self)
        self._transport = None
        if self._idle is not None:  # aiohttp keeps its own time from here
            self._idle.cancel()
            self._idle = None
        if self._paused_reading:
            transport.resume_reading()
        handler = self._server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            handler.data_received(data)

    def _flow(self, transport: asyncio.Transport | None) -> None:
        """Pause reading while unserved bytes pile up behind a request in progress; resume after."""
        if transport is None:
            return
        if len(self._buf) > _PAUSE_AT and not self._paused_reading:
            self._paused_reading = True
            transport.pause_reading()
        elif self._paused_reading and len(self._buf) <= _PAUSE_AT:
            self._paused_reading = False
            transport.resume_reading()

    def _idle_check(self) -> None:
        self._idle = None
        if self._transport is None:
            return
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last_data
        if quiet >= KEEPALIVE_TIMEOUT and not self._busy:
            self._transport.close()
            return
        self._idle = loop.call_later(max(KEEPALIVE_TIMEOUT - quiet, 0.0) if not self._busy else KEEPALIVE_TIMEOUT,
                                     self._idle_check)
