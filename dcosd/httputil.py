"""Shared HTTP plumbing for the master's and the agent's aiohttp servers.

One error middleware turns every DcosdError (and malformed JSON) into a JSON
body ``{"message": ...}`` with the right status, so no handler formats errors
itself and no request ever answers with a traceback.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from dcosd import codec
from dcosd.errors import DcosdError, NotLeader, Unauthorized, ValidationError

log = logging.getLogger(__name__)

MAX_BODY = 4 << 20  # 4 MiB: no legitimate request is larger

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=codec.dumps(data), status=status, content_type="application/json", headers=headers)


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"message": message, **extra}, status=status)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or ValidationError saying what is wrong with it."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ValidationError(f"request body too large ({request.content_length} bytes, limit {MAX_BODY})")
    raw = await request.read()
    if not raw:
        raise ValidationError("request body is empty; a JSON object was expected")
    try:
        return codec.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError(f"malformed JSON: {exc}") from exc


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except NotLeader as exc:
        return error_response(503, exc.message, leader=exc.leader)
    except DcosdError as exc:
        return error_response(exc.http_status, exc.message)
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return error_response(500, "internal error; see the server log")


def bearer_token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    for prefix in ("Bearer ", "token="):
        if auth.startswith(prefix):
            return auth[len(prefix):].strip()
    return None


def check_token(request: web.Request, expected: str | None, what: str) -> None:
    """Refuse the request unless it carries ``expected`` (None means this check is off)."""
    if expected is None:
        return
    got = bearer_token(request)
    if got is None:
        raise Unauthorized(f"{what} required: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(got.encode(), expected.encode()):
        raise Unauthorized(f"wrong {what}")


def make_app(middlewares: list[Any] | None = None) -> web.Application:
    return web.Application(middlewares=[error_middleware, *(middlewares or [])], client_max_size=MAX_BODY)
