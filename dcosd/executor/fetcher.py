"""URIs into a task's sandbox before its command starts (Mesos' fetcher, kept simple).

``http(s)://`` is downloaded, ``file://`` copied; archives (.tar, .tar.gz, .tgz,
.tar.bz2, .tar.xz, .zip) are extracted beside the file. A failed fetch is a
launch failure naming the URI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import urllib.parse
from pathlib import Path

import aiohttp

from dcosd.executor.base import LaunchFailed
from dcosd.model.states import Reason

FETCH_TIMEOUT = 120.0
_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")


def _name(uri: str) -> str:
    name = os.path.basename(urllib.parse.urlsplit(uri).path) or "download"
    if name in (".", ".."):
        name = "download"
    return name


async def fetch(uris: list[str] | tuple[str, ...], sandbox: Path, owner: tuple[int, int] | None = None) -> None:
    for uri in uris:
        dest = sandbox / _name(uri)
        scheme = urllib.parse.urlsplit(uri).scheme
        try:
            if scheme in ("http", "https"):
                async with aiohttp.ClientSession() as http:
                    async with http.get(uri, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)) as resp:
                        if resp.status != 200:
                            raise LaunchFailed(f"fetching {uri}: HTTP {resp.status}", Reason.CONTAINER_LAUNCH_FAILED)
                        with open(dest, "wb") as out:
                            async for chunk in resp.content.iter_chunked(1 << 16):
                                out.write(chunk)
            elif scheme == "file":
                src = urllib.parse.unquote(urllib.parse.urlsplit(uri).path)
                await asyncio.get_running_loop().run_in_executor(None, shutil.copyfile, src, dest)
            else:
                raise LaunchFailed(f"cannot fetch {uri}: only http(s):// and file:// URIs",
                                   Reason.CONTAINER_LAUNCH_FAILED)
            if dest.name.endswith(_ARCHIVES):
                await asyncio.get_running_loop().run_in_executor(None, shutil.unpack_archive, str(dest),
                                                                 str(sandbox))
            if owner is not None:
                for p in sandbox.rglob("*"):
                    os.lchown(p, *owner)
        except LaunchFailed:
            raise
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError, shutil.ReadError) as exc:
            raise LaunchFailed(f"fetching {uri} failed: {exc or type(exc).__name__}",
                               Reason.CONTAINER_LAUNCH_FAILED) from exc
