"""The fetcher against a real HTTP server on loopback: checksums, the cache, safe extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from aiohttp import web

from dcosd.executor.base import LaunchFailed
from dcosd.executor.fetcher import fetch


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
async def server():
    files = {
        "app.tar.gz": tar_bytes({"app/run.sh": b"echo hi\n"}),
        "notes.txt": b"hello\n",
        "evil.tar.gz": tar_bytes({"../escaped.txt": b"x"}),
        "evil.zip": zip_bytes({"../escaped.txt": b"x"}),
    }
    hits: dict[str, int] = {}

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        hits[name] = hits.get(name, 0) + 1
        if name not in files:
            return web.Response(status=404)
        return web.Response(body=files[name])

    app = web.Application()
    app.add_routes([web.get("/{name}", serve)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", files, hits, runner
    await runner.cleanup()


async def test_checksum_verified_cached_and_extracted(server, tmp_path: Path):
    base, files, hits, runner = server
    digest = hashlib.sha256(files["app.tar.gz"]).hexdigest()
    cache = tmp_path / "cache"
    s1 = tmp_path / "s1"
    s1.mkdir()
    await fetch([f"{base}/app.tar.gz#sha256={digest}", f"{base}/notes.txt"], s1, cache_dir=cache)
    assert (s1 / "app" / "run.sh").read_bytes() == b"echo hi\n"
    assert (s1 / "notes.txt").read_bytes() == b"hello\n"
    assert (cache / digest).read_bytes() == files["app.tar.gz"]
    await runner.cleanup()  # the server is gone: the checksummed file must come from the cache
    s2 = tmp_path / "s2"
    s2.mkdir()
    await fetch([f"{base}/app.tar.gz#sha256={digest}"], s2, cache_dir=cache)
    assert (s2 / "app" / "run.sh").exists()
    assert hits["app.tar.gz"] == 1
    with pytest.raises(LaunchFailed, match="notes.txt"):  # no checksum: never served from a cache
        await fetch([f"{base}/notes.txt"], s2, cache_dir=cache)


async def test_wrong_checksum_and_bad_fragment_fail_the_launch(server, tmp_path: Path):
    base, _, _, _ = server
    with pytest.raises(LaunchFailed, match="sha256 is"):
        await fetch([f"{base}/notes.txt#sha256={'0' * 64}"], tmp_path, cache_dir=tmp_path / "c")
    assert not (tmp_path / "notes.txt").exists()
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
    with pytest.raises(LaunchFailed, match="fragment"):
        await fetch([f"{base}/notes.txt#md5=abc"], tmp_path)
    with pytest.raises(LaunchFailed, match="HTTP 404"):
        await fetch([f"{base}/missing.bin"], tmp_path)
    with pytest.raises(LaunchFailed, match="only http"):
        await fetch(["ftp://127.0.0.1/x"], tmp_path)


@pytest.mark.parametrize("name", ["evil.tar.gz", "evil.zip"])
async def test_archive_members_cannot_escape_the_sandbox(server, tmp_path: Path, name: str):
    base, _, _, _ = server
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    with pytest.raises(LaunchFailed, match="outside|escaped"):
        await fetch([f"{base}/{name}"], sandbox)
    assert not (tmp_path / "escaped.txt").exists()


async def test_file_uri(tmp_path: Path):
    src = tmp_path / "src.txt"
    src.write_text("local\n")
    dest = tmp_path / "sandbox"
    dest.mkdir()
    await fetch([src.as_uri()], dest)
    assert (dest / "src.txt").read_text() == "local\n"
