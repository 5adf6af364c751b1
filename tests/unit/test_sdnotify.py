"""sd_notify over a real AF_UNIX datagram socket: path and abstract addresses, and no socket at all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dcosd import sdnotify

REPO = Path(__file__).resolve().parents[2]


def _receiver(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_ready_and_stopping_to_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with _receiver(path) as s:
        monkeypatch.setattr(sdnotify, "_ADDRESS", path)
        assert sdnotify.ready("serving at http://x") is True
        assert s.recv(4096) == b"READY=1\nSTATUS=serving at http://x"
        assert sdnotify.stopping() is True
        assert s.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_abstract_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"dcosd-test-notify-{os.getpid()}"
    with _receiver("\0" + name) as s:
        monkeypatch.setattr(sdnotify, "_ADDRESS", "@" + name)
        assert sdnotify.status("hello") is True
        assert s.recv(4096) == b"STATUS=hello"


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sdnotify, "_ADDRESS", None)
    assert sdnotify.ready("x") is False
    monkeypatch.setattr(sdnotify, "_ADDRESS", str(tmp_path / "nobody-listens"))
    assert sdnotify.ready("x") is False  # logged, never raised
    monkeypatch.setattr(sdnotify, "_ADDRESS", "relative/path")
    assert sdnotify.ready("x") is False


def test_children_do_not_inherit_the_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    code = ("import os; from dcosd import sdnotify; "
            "print('NOTIFY_SOCKET' in os.environ, sdnotify.ready('child'))")
    with _receiver(path) as s:
        r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NOTIFY_SOCKET": path}, cwd=REPO,
                           capture_output=True, text=True, timeout=60)
        assert r.stdout.split() == ["False", "True"], r.stderr
        assert s.recv(4096) == b"READY=1\nSTATUS=child"
