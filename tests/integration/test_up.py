"""`dcosd up`: the embedded default a newcomer starts with."""

from __future__ import annotations

import subprocess
import urllib.request
import shutil

from harness.cluster import DCOSD, Proc, free_port, kill_tree_of_tasks, wait_for, world_readable_tmp


def test_up_with_sample_service():
    tmp_path = world_readable_tmp()  # the sample runs as nobody and serves files from its sandbox
    port, agent_port = free_port(), free_port()
    args = [*DCOSD, "up", "--data-dir", str(tmp_path), "--port", str(port), "--agent-port", str(agent_port),
            "--sample"]
    up = Proc(args, tmp_path / "up.log")
    try:
        out = wait_for(lambda: "dcosd is up" in (log := up.log()) and log, 30, what="dcosd up banner")
        assert f"http://127.0.0.1:{port}" in out
        assert "auth is OFF" in out and "curl http://127.0.0.1:31080/" in out
        page = wait_for(lambda: urllib.request.urlopen("http://127.0.0.1:31080/", timeout=2).read(), 30,
                        what="the sample service to answer")
        assert b"hello from dcosd task hello-web." in page
        env_cli = [*DCOSD, "--master", f"http://127.0.0.1:{port}"]
        listed = subprocess.run([*env_cli, "task", "list"], capture_output=True, text=True, check=True).stdout
        assert "hello-web" in listed and "RUNNING" in listed
        assert up.stop() == 0
        # The sample keeps running without dcosd, and the next `up` re-adopts it instead of starting another.
        assert urllib.request.urlopen("http://127.0.0.1:31080/", timeout=2).status == 200
        up = Proc(args, tmp_path / "up2.log")
        out = wait_for(lambda: "dcosd is up" in (log := up.log()) and log, 30, what="second dcosd up")
        assert "already running" in out
    finally:
        up.stop()
        kill_tree_of_tasks(tmp_path / "agent")
        shutil.rmtree(tmp_path, ignore_errors=True)
