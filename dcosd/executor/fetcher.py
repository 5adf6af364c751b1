"""URIs into a task's sandbox before its command starts (Mesos' fetcher, kept simple).

``http(s)://`` is downloaded, ``file://`` copied; archives (.tar, .tar.gz, .tgz,
.tar.bz2, .tar.xz, .zip) are extracted beside the file, refusing members that would
land outside the sandbox. A URI may carry its content's checksum as a fragment,
``https://host/app.tar.gz#sha256=<hex>`` (the form pip uses): the download is then
verified, and kept in the agent's content-addressed cache so the next task that
asks for the same bytes gets them without a download. A URI without a checksum
is fetched every time — nothing says two fetches would give the same bytes.
A failed fetch or a checksum mismatch is a launch failure naming the URI.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import aiohttp

from dcosd.executor.base import LaunchFailed
from dcosd.model.states import Reason

FETCH_TIMEOUT = 120.0
_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
_SHA256 = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


def _fail(message: str) -> LaunchFailed:
    return LaunchFailed(message, Reason.CONTAINER_LAUNCH_FAILED)


def parse_uri(uri: str) -> tuple[str, str | None, str]:
    """(URI without fragment, expected sha256 or None, file name in the sandbox)."""
    parts = urllib.parse.urlsplit(uri)
    digest = None
    if parts.fragment:
        m = _SHA256.fullmatch(parts.fragment)
        if not m:
            raise _fail(f"cannot fetch {uri}: the only fragment understood is #sha256=<64 hex digits>")
        digest = m.group(1).lower()
    bare = urllib.parse.urlunsplit(parts._replace(fragment=""))
    name = os.path.basename(parts.path) or "download"
    if name in (".", ".."):
        name = "download"
    return bare, digest, name


async def _download(uri: str, dest: Path) -> None:
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme in ("http", "https"):
        async with aiohttp.ClientSession() as http:
            async with http.get(uri, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)) as resp:
                if resp.status != 200:
                    raise _fail(f"fetching {uri}: HTTP {resp.status}")
                with open(dest, "wb") as out:
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        out.write(chunk)
    elif scheme == "file":
        src = urllib.parse.unquote(urllib.parse.urlsplit(uri).path)
        await asyncio.get_running_loop().run_in_executor(None, shutil.copyfile, src, dest)
    else:
        raise _fail(f"cannot fetch {uri}: only http(s):// and file:// URIs")


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract(archive: Path, into: Path) -> None:
    if archive.name.endswith(".zip"):
        import zipfile

        root = into.resolve()
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                target = (into / member).resolve()
                if target != root and root not in target.parents:
                    raise _fail(f"archive {archive.name}: member {member!r} would land outside the sandbox")
            z.extractall(into)
        return
    import tarfile

    try:
        # The "data" filter refuses absolute paths, "..", links out of the tree and device files.
        shutil.unpack_archive(str(archive), str(into), filter="data")
    except tarfile.FilterError as exc:
        raise _fail(f"archive {archive.name}: {exc}") from exc


async def fetch(uris: list[str] | tuple[str, ...], sandbox: Path, owner: tuple[int, int] | None = None,
                cache_dir: Path | None = None) -> None:
    loop = asyncio.get_running_loop()
    for uri in uris:
        bare, digest, name = parse_uri(uri)
        dest = sandbox / name
        try:
            cached = cache_dir / digest if cache_dir is not None and digest else None
            if cached is not None and cached.is_file():
                await loop.run_in_executor(None, shutil.copyfile, cached, dest)
            else:
                await _download(bare, dest)
                if digest is not None:
                    got = await loop.run_in_executor(None, _sha256_of, dest)
                    if got != digest:
                        dest.unlink(missing_ok=True)
                        raise _fail(f"fetching {bare}: sha256 is {got}, expected {digest}")
                    if cached is not None:
                        await loop.run_in_executor(None, _store_in_cache, dest, cached)
            if dest.name.endswith(_ARCHIVES):
                await loop.run_in_executor(None, _extract, dest, sandbox)
            if owner is not None:
                for p in [dest, *sandbox.rglob("*")]:
                    os.lchown(p, *owner)
        except LaunchFailed:
            raise
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError, shutil.ReadError) as exc:
            raise _fail(f"fetching {bare} failed: {exc or type(exc).__name__}") from exc


def _store_in_cache(src: Path, cached: Path) -> None:
    """Copy into the cache under a temporary name, then rename: a reader never sees half a file."""
    cached.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".partial-")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, cached)
