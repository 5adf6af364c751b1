"""Sandbox files over HTTP: a task's stdout and stderr, from an offset, optionally followed.

Only the two log files of a task's sandbox are served, addressed by task id —
never a path from the request — so no request can reach outside a sandbox.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from dcosd.errors import NotFound, ValidationError
from dcosd.model.ids import valid_task_id

if TYPE_CHECKING:
    from dcosd.agent.service import Agent

CHUNK = 64 * 1024
FOLLOW_POLL = 0.2


class FilesApi:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/dcosd/agent/v1/sandboxes/{task_id}/{stream}", self.read)]

    def _path(self, task_id: str, stream: str) -> Path:
        if stream not in ("stdout", "stderr"):
            raise ValidationError("stream must be stdout or stderr")
        if not valid_task_id(task_id):
            raise ValidationError(f"invalid task id {task_id!r}")
        path = self.agent.backend.sandbox_path(task_id) / stream
        if not path.parent.is_dir():
            raise NotFound(f"no sandbox for task {task_id} on this agent")
        return path

    async def read(self, request: web.Request) -> web.StreamResponse:
        self.agent.require_secret(request)
        task_id = request.match_info["task_id"]
        path = self._path(task_id, request.match_info["stream"])
        try:
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            raise ValidationError("offset must be an integer") from None
        if offset < 0:
            raise ValidationError("offset must not be negative")
        follow = request.query.get("follow") in ("1", "true")
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream", "X-Dcosd-Offset": str(offset)})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        while True:
            chunk = await loop.run_in_executor(None, _read_at, path, offset, CHUNK)
            if chunk:
                offset += len(chunk)
                await resp.write(chunk)
                continue
            if not follow or self.agent.task_finished(task_id):
                # One last read: output written just before the task ended.
                chunk = await loop.run_in_executor(None, _read_at, path, offset, 1 << 30)
                if chunk:
                    await resp.write(chunk)
                break
            await asyncio.sleep(FOLLOW_POLL)
        await resp.write_eof()
        return resp


def _read_at(path: Path, offset: int, size: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return b""
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)
