"""The CLI given several masters (--master URL,URL or DCOSD_MASTER): one that cannot be reached is
passed over for the next; one that took the request and did not answer is not (a write is never sent
twice). Real HTTP servers on loopback stand in for masters: what is tested is the client's choice."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dcosd import config
from dcosd.cli.client import Client
from dcosd.errors import ConfigError, Unavailable
from tests.harness.cluster import free_port


class _Master:
    """Answers every request with {"who": name}, counting them; ``silent`` never answers."""

    def __init__(self, name: str, silent: bool = False) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests += 1
                n = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(n)
                if silent:
                    outer.release.wait(10)
                    return
                body = json.dumps({"who": name}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def masters():
    made: list[_Master] = []

    def make(name: str, silent: bool = False) -> _Master:
        made.append(_Master(name, silent))
        return made[-1]

    yield make
    for m in made:
        m.close()


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused


def test_a_master_that_cannot_be_reached_is_passed_over_for_the_next(masters):
    live = masters("m2")
    dead = _dead_url()
    c = Client([dead, live.url], token=None)
    assert c.get("/x") == {"who": "m2"}
    assert c.post("/y", {"a": 1}) == {"who": "m2"}
    assert c.master == live.url and live.requests == 2  # the second went straight to the one that answered


def test_when_none_can_be_reached_the_error_names_every_master():
    a, b = _dead_url(), _dead_url()
    with pytest.raises(Unavailable) as exc:
        Client([a, b], token=None).get("/x")
    assert f"cannot reach the master at any of {a} (" in str(exc.value) and f"{b} (" in str(exc.value)
    with pytest.raises(Unavailable, match=f"cannot reach the master at {a} "):
        Client(a, token=None).get("/x")


def test_a_master_that_took_the_request_and_did_not_answer_is_not_passed_over(masters):
    slow, live = masters("m1", silent=True), masters("m2")
    c = Client([slow.url, live.url], token=None, timeout=0.5)
    with pytest.raises(Unavailable, match="did not answer.*may or may not have been done"):
        c.post("/dcosd/v1/tasks", {"name": "once"})
    assert slow.requests == 1 and live.requests == 0


def test_the_cli_takes_a_list_of_masters(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("DCOSD_MASTER", "http://h1:5050, h2:5050,")
    assert config.cli_masters(None) == ["http://h1:5050", "http://h2:5050"]
    with pytest.raises(ConfigError, match="--master"):
        config.cli_masters("http://h1:5050,ftp://h2")
    with pytest.raises(ConfigError, match="no master URL"):
        config.cli_masters(" , ")



class _Backup:
    """Answers a backup download with ``body``, announcing ``length`` bytes (a master that dies midway
    announces more than it sends)."""

    def __init__(self, body: bytes, length: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))
                self.send_header("X-Dcosd-Backup-Index", "7")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_download_is_written_as_it_arrives_and_a_cut_one_saves_nothing(tmp_path):
    whole = _Backup(b"x" * 3_000_000, 3_000_000)
    cut = _Backup(b"y" * 1000, 3_000_000)
    dest = tmp_path / "cluster.backup"
    try:
        size, headers = Client([whole.url], token=None).download_to("/dcosd/v1/cluster/backup", dest)
        assert size == 3_000_000 and dest.read_bytes() == b"x" * 3_000_000 and headers["X-Dcosd-Backup-Index"] == "7"
        with pytest.raises(Unavailable, match="cut short|ended after"):
            Client([cut.url], token=None).download_to("/dcosd/v1/cluster/backup", dest)
        assert dest.read_bytes() == b"x" * 3_000_000  # the earlier backup is left as it was
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.backup"]
    finally:
        whole.close()
        cut.close()
