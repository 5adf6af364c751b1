"""A repository served over http by a local test server (127.0.0.1): added, searched, installed from,
updated (earlier options kept), removed — and bad input, each a clear message with nothing installed."""

from __future__ import annotations

import http.server
import shutil
import io
import json
import threading
import zipfile
from pathlib import Path

import pytest

from harness.cluster import ClusterFactory, Master, free_port, kill_tree_of_tasks, wait_for, world_readable_tmp

TEMPLATE = """{
  "id": "/{{service.name}}",
  "cmd": "echo '{{service.greeting}} %s' > index.html && exec python3 -m http.server \\"$PORT0\\" --bind 127.0.0.1",
  "cpus": 0.1, "mem": 32, "instances": 1,
  "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "http"}],
  "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 1, "gracePeriodSeconds": 20}]
}"""
CONFIG = {"type": "object", "additionalProperties": False, "properties": {"service": {
    "type": "object", "additionalProperties": False, "properties": {
        "name": {"type": "string", "default": "hello"},
        "greeting": {"type": "string", "default": "hello"},
        "count": {"type": "integer", "minimum": 1, "default": 1}}}}}


def repo_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for rev, version in enumerate(["1.0.0", "2.0.0"]):
            base = f"universe/repo/packages/H/hello/{rev}/"
            zf.writestr(base + "package.json", json.dumps({
                "packagingVersion": "3.0", "name": "hello", "version": version, "maintainer": "t",
                "description": "Says hello over HTTP", "tags": ["greeting"],
                "postInstallNotes": "hello is up", "postUninstallNotes": "hello is gone"}))
            zf.writestr(base + "config.json", json.dumps(CONFIG))
            zf.writestr(base + "marathon.json.mustache", TEMPLATE % version)
        base = "universe/repo/packages/B/broken/0/"
        zf.writestr(base + "package.json", json.dumps({"packagingVersion": "3.0", "name": "broken", "version": "1",
                                                       "maintainer": "t", "description": "renders invalid JSON"}))
        zf.writestr(base + "marathon.json.mustache", '{"id": "/broken", "cmd": "sleep 1",, }')
    return buf.getvalue()


@pytest.fixture(scope="module")
def env():
    tmp = world_readable_tmp("dcosd-pkgrepo-")  # tasks run as nobody
    files = {"/repo.zip": repo_zip(), "/garbage.zip": b"this is not a repository"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    f = ClusterFactory(tmp)
    try:
        m = f.master()
        f.agent(m, "--hostname", "host-a", "--resources", "cpus:4;mem:4096;disk:1000;ports:[32000-32100]")
        yield m, f"http://127.0.0.1:{server.server_port}", tmp
    finally:
        server.shutdown()
        server.server_close()
        f.stop_all()
        for d in tmp.glob("agent-*"):
            if d.is_dir():
                kill_tree_of_tasks(d)
        shutil.rmtree(tmp, ignore_errors=True)


def cli(m: Master, *args: str) -> tuple[int, str, str]:
    cp = m.cli(*args, timeout=90)
    return cp.returncode, cp.stdout, cp.stderr


def apps(m: Master) -> list[str]:
    return [a["id"] for a in m.get("/v2/apps")["apps"]]


def test_http_repository_add_search_install_update_remove(env):
    m, base, tmp = env
    rc, out, err = cli(m, "package", "repo", "add", "test", base + "/repo.zip", "--json")
    assert rc == 0, err
    assert [r["name"] for r in json.loads(out)["repositories"]] == ["test", "dcosd"]  # built-in stays last
    found = json.loads(cli(m, "package", "search", "greet", "--json")[1])["packages"]
    assert [(p["name"], p["repository"], p["versions"]) for p in found] == [("hello", "test", ["2.0.0", "1.0.0"])]

    opts = tmp / "opts.json"
    opts.write_text(json.dumps({"service": {"greeting": "bonjour"}}))
    rc, out, err = cli(m, "package", "install", "hello", "--package-version", "1.0.0", "--options", str(opts), "--yes")
    assert rc == 0, (out, err)
    assert "hello is up" in out and "/hello is healthy" in out
    listed = json.loads(cli(m, "package", "list", "--json")[1])["packages"]
    assert [(p["name"], p["version"], p["appId"], p["source"]) for p in listed] == \
        [("hello", "1.0.0", "/hello", base + "/repo.zip")]

    rc, out, err = cli(m, "package", "update", "hello", "--package-version", "2.0.0", "--json")
    assert rc == 0, (out, err)
    assert json.loads(out)["options"]["service"]["greeting"] == "bonjour"  # the earlier options kept
    app = m.get("/v2/apps/hello")["app"]
    assert app["labels"]["DCOS_PACKAGE_VERSION"] == "2.0.0" and "bonjour 2.0.0" in app["cmd"]

    # an app id already taken: a clear 409, the existing app untouched
    rc, _, err = cli(m, "package", "install", "hello", "--yes")
    assert rc == 4 and "already exists" in err and err.count("\n") == 1
    assert m.get("/v2/apps/hello")["app"]["labels"]["DCOS_PACKAGE_VERSION"] == "2.0.0"

    rc, out, err = cli(m, "package", "uninstall", "hello")
    assert rc == 0 and "hello is gone" in out, err
    wait_for(lambda: "/hello" not in apps(m), 30, what="hello removed")
    rc, out, err = cli(m, "package", "repo", "remove", "test", "--json")
    assert rc == 0 and [r["name"] for r in json.loads(out)["repositories"]] == ["dcosd"]
    assert cli(m, "package", "describe", "hello")[0] == 3


@pytest.mark.parametrize("args,code,message", [
    (["install", "nosuch", "--yes"], 3, "package 'nosuch' is not in any repository"),
    (["install", "redis", "--package-version", "9.9", "--yes"], 3, "has no version '9.9'"),
    (["install", "redis", "--options", "{opts}", "--yes"], 2, "nodes.count: 0 is less than the minimum of 1"),
    (["install", "broken", "--yes"], 2, "line 1"),
    (["repo", "add", "down", "http://127.0.0.1:{closed}/repo.zip"], 6, "cannot fetch the repository"),
    (["repo", "add", "garbage", "{base}/garbage.zip"], 2, "neither a zip archive nor a JSON repository"),
])
def test_bad_input_is_one_clear_line_and_installs_nothing(env, args, code, message):
    m, base, tmp = env
    if "broken" in args:
        assert cli(m, "package", "repo", "add", "withbroken", base + "/repo.zip")[0] == 0
    opts = tmp / "bad.json"
    opts.write_text(json.dumps({"nodes": {"count": 0}}))
    args = [a.format(opts=opts, closed=free_port(), base=base) for a in args]
    try:
        rc, out, err = cli(m, "package", *args)
        assert rc == code, (rc, out, err)
        assert message in err and err.startswith("dcosd: error: ") and err.count("\n") == 1, err
        assert apps(m) == []
        repos = json.loads(cli(m, "package", "repo", "list", "--json")[1])["repositories"]
        assert [r["name"] for r in repos] in (["dcosd"], ["withbroken", "dcosd"])
    finally:
        if "broken" in args:
            cli(m, "package", "repo", "remove", "withbroken")
