"""A small synchronous HTTP client for the CLI (stdlib only: the CLI must start fast)."""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dcosd.errors import (
    Conflict,
    DcosdError,
    NotFound,
    Unauthorized,
    Unavailable,
    ValidationError,
)

_BY_STATUS: dict[int, type[DcosdError]] = {400: ValidationError, 401: Unauthorized, 403: Unauthorized,
                                          404: NotFound, 409: Conflict, 422: ValidationError}
_MAX_REDIRECTS = 5


class _Unreachable(Exception):
    """The request could not be delivered to this master (connection refused, no route, timeout)."""


class Client:
    """``master``: one URL or a list (replicated masters). A request goes to the master that answered
    last; one that cannot be connected to is passed over for the next. Only a failure to connect
    or to send moves on: once a request reached a master, its outcome is that master's to tell (a
    write must not be sent twice)."""

    def __init__(self, master: str | list[str], token: str | None, timeout: float = 30.0) -> None:
        self.masters = [m.rstrip("/") for m in ([master] if isinstance(master, str) else master)]
        self.token = token
        self.timeout = timeout

    @property
    def master(self) -> str:
        return self.masters[0]

    def _request(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
                 timeout: float | None = None) -> Any:
        unreachable: list[str] = []
        for k, master in enumerate(list(self.masters)):
            try:
                resp = self._request_one(master, method, path, body, params, timeout)
            except _Unreachable as exc:
                unreachable.append(f"{master} ({exc})")
                continue
            if k:  # later requests of this command go straight to the one that answered
                self.masters = self.masters[k:] + self.masters[:k]
            return resp
        where = unreachable[0] if len(unreachable) == 1 else "any of " + ", ".join(unreachable)
        raise Unavailable(
            f"cannot reach the master at {where}. Is `dcosd up` or `dcosd master` running? "
            "Point the CLI elsewhere with --master or DCOSD_MASTER.")

    def _request_one(self, master: str, method: str, path: str, body: Any, params: dict[str, str] | None,
                     timeout: float | None) -> Any:
        url = master + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            for _ in range(_MAX_REDIRECTS):
                try:
                    return urllib.request.urlopen(req, timeout=timeout or self.timeout)
                except urllib.error.HTTPError as exc:
                    # A follower master sends writes to the leader with 307: same method, body and token.
                    if exc.code not in (307, 308) or not exc.headers.get("Location"):
                        raise
                    exc.read()
                    req = urllib.request.Request(urllib.parse.urljoin(req.full_url, exc.headers["Location"]),
                                                 data=data, method=method, headers=dict(req.header_items()))
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw).get("message") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace").strip() or exc.reason
            cls = _BY_STATUS.get(exc.code, Unavailable if exc.code >= 500 else DcosdError)
            raise cls(f"{message} (HTTP {exc.code})") from None
        except urllib.error.URLError as exc:  # connecting or sending failed: nothing reached the master
            raise _Unreachable(str(getattr(exc, "reason", exc))) from None
        except (ConnectionError, TimeoutError) as exc:  # the request was sent: its outcome is unknown
            raise Unavailable(f"the master at {master} did not answer ({exc}); a write may or may not have "
                              "been done: check before repeating it") from None

    def get(self, path: str, params: dict[str, str] | None = None, timeout: float | None = None) -> Any:
        with self._request("GET", path, params=params, timeout=timeout) as resp:
            return json.loads(resp.read())

    def post(self, path: str, body: Any = None) -> Any:
        with self._request("POST", path, body=body if body is not None else {}) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def download(self, path: str, timeout: float = 600) -> tuple[bytes, dict[str, str]]:
        """A binary answer, and its headers."""
        with self._request("GET", path, timeout=timeout) as resp:
            return resp.read(), dict(resp.headers.items())

    def download_to(self, path: str, dest: Path, timeout: float = 600) -> tuple[int, dict[str, str]]:
        """A binary answer written to ``dest`` as it arrives (fsynced, then renamed into place: ``dest``
        holds all of it or is left as it was), its size, and its headers."""
        tmp = dest.with_name(dest.name + ".part")
        saved = False
        try:
            with self._request("GET", path, timeout=timeout) as resp, open(tmp, "wb") as f:
                headers = dict(resp.headers.items())
                n = 0
                while piece := resp.read(1 << 20):
                    f.write(piece)
                    n += len(piece)
                expected = headers.get("Content-Length")
                if expected is not None and int(expected) != n:
                    raise Unavailable(f"the download ended after {n} of {expected} bytes; nothing was saved")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
            saved = True
        except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise Unavailable(f"the download was cut short ({type(exc).__name__}: {exc}); nothing was saved") from None
        except OSError as exc:
            raise DcosdError(f"cannot write {dest}: {exc}") from None
        finally:
            if not saved:
                tmp.unlink(missing_ok=True)
        return n, headers

    def stream(self, path: str, params: dict[str, str] | None = None) -> Iterator[bytes]:
        resp = self._request("GET", path, params=params, timeout=3600)
        with resp:
            while True:
                chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not chunk:
                    return
                yield chunk

    def resolve_task(self, task_id: str) -> dict[str, Any]:
        """A task by id or by a unique prefix of its id."""
        quoted = urllib.parse.quote(task_id, safe="")
        try:
            return self.get(f"/dcosd/v1/tasks/{quoted}")
        except NotFound:
            pass
        tasks = self.get("/dcosd/v1/tasks", params={"all": "1", "limit": "100000"})["tasks"]
        matches = [t for t in tasks if t["id"].startswith(task_id)]
        if len(matches) == 1:
            return self.get(f"/dcosd/v1/tasks/{urllib.parse.quote(matches[0]['id'], safe='')}")
        if not matches:
            raise NotFound(f"no task {task_id}")
        raise ValidationError(f"{task_id!r} matches {len(matches)} tasks; give more of the id")
