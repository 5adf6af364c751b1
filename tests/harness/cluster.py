"""Start real `dcosd master` and `dcosd agent` processes and drive them like an operator would.

Every process started here is stopped by the fixture that started it (by pid),
even when the test fails. Readiness is polled with a deadline, never slept for.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

DCOSD = [sys.executable, "-m", "dcosd"]


def world_readable_tmp(prefix: str = "dcosd-test-") -> Path:
    """A temporary directory every user can traverse: tasks run as nobody, and pytest's tmp_path is 0700."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 — keep polling until the deadline
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else ""))


class Proc:
    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 15) -> int | None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()
        return self.popen.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Master:
    def __init__(self, data_dir: Path, port: int, proc: Proc, auth: bool) -> None:
        self.data_dir = data_dir
        self.port = port
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.auth = auth

    @property
    def secret(self) -> str:
        return (self.data_dir / "cluster.secret").read_text().strip()

    @property
    def token(self) -> str:
        return (self.data_dir / "operator.token").read_text().strip()

    def api(self, method: str, path: str, body: Any = None, token: str | None = None,
            raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        tok = token if token is not None else (self.token if self.auth else None)
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            text, status = exc.read(), exc.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.decode(errors="replace")

    def get(self, path: str) -> Any:
        status, body = self.api("GET", path)
        assert status == 200, (status, body)
        return body

    def task(self, task_id: str) -> dict[str, Any]:
        return self.get(f"/dcosd/v1/tasks/{task_id}")

    def nodes(self) -> list[dict[str, Any]]:
        return self.get("/dcosd/v1/nodes")["nodes"]

    def cli(self, *args: str, check: bool = False, timeout: float = 60, token: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "DCOSD_MASTER": self.url}
        tok = token if token is not None else (self.token if self.auth else None)
        if tok:
            env["DCOSD_TOKEN"] = tok
        env.pop("XDG_CONFIG_HOME", None)
        cp = subprocess.run([*DCOSD, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if check:
            assert cp.returncode == 0, (args, cp.returncode, cp.stdout, cp.stderr)
        return cp


class Agent:
    def __init__(self, work_dir: Path, port: int, proc: Proc, args: list[str]) -> None:
        self.work_dir = work_dir
        self.port = port
        self.proc = proc
        self.args = args

    @property
    def agent_id(self) -> str | None:
        import apsw

        db = apsw.Connection(str(self.work_dir / "agent.db"), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            for (v,) in db.execute("SELECT value FROM meta WHERE key='agent_id'"):
                return v
        finally:
            db.close()
        return None


class ClusterFactory:
    """Starts masters and agents for one test, and stops all of them at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []

    def master(self, *extra: str, auth: bool = True) -> Master:
        port = free_port()
        data = self.tmp / f"master-{port}"
        args = [*DCOSD, "master", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
                "--auth" if auth else "--no-auth", "--log-level", "debug", *extra]
        if "--dns-listen" not in extra:
            args += ["--dns-listen", "off"]  # many masters on one machine: DNS only where a test asks
        proc = Proc(args, self.tmp / f"master-{port}.log")
        self.procs.append(proc)
        m = Master(data, port, proc, auth)
        wait_for(lambda: m.api("GET", "/health")[0] == 200 or not proc.alive(), what="master /health")
        assert proc.alive(), proc.log()
        return m

    def agent(self, master: Master, *extra: str, secret: str | None = None, work_dir: Path | None = None,
              wait: bool = True, port: int | None = None) -> Agent:
        port = port or free_port()
        work = work_dir or self.tmp / f"agent-{port}"
        args = [*DCOSD, "agent", "--master", master.url, "--work-dir", str(work), "--listen", f"127.0.0.1:{port}",
                "--secret", secret if secret is not None else master.secret, "--log-level", "debug", *extra]
        proc = Proc(args, self.tmp / f"agent-{port}.log")
        self.procs.append(proc)
        a = Agent(work, port, proc, args)
        if wait:
            self.wait_registered(master, a)
        return a

    def restart_agent(self, master: Master, agent: Agent, wait: bool = True) -> Agent:
        proc = Proc(agent.args, self.tmp / f"agent-{agent.port}.log")
        self.procs.append(proc)
        a = Agent(agent.work_dir, agent.port, proc, agent.args)
        if wait:
            self.wait_registered(master, a)
        return a

    def wait_registered(self, master: Master, agent: Agent, timeout: float = 30) -> None:
        def registered() -> bool:
            assert agent.proc.alive(), agent.proc.log()
            aid = agent.agent_id if (agent.work_dir / "agent.db").exists() else None
            return bool(aid) and any(n["id"] == aid and n["connected"] and n["state"] == "ACTIVE"
                                     for n in master.nodes())

        wait_for(registered, timeout, what="agent registration")

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def kill_tree_of_tasks(work_dir: Path) -> None:
    """Kill every task supervisor an agent left behind (tasks outlive agents by design)."""
    sandboxes = work_dir / "sandboxes"
    if not sandboxes.is_dir():
        return
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if "executor" in cmd and any(str(sandboxes) in c for c in cmd):
                for child in proc.children(recursive=True):
                    child.kill()
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    _remove_task_cgroups([d.name for d in sandboxes.iterdir()])


def _remove_task_cgroups(task_ids: list[str]) -> None:
    from dcosd.executor import cgroupfs
    from dcosd.executor.cgroups import DEFAULT_PARENT

    hierarchy, _ = cgroupfs.detect()
    if hierarchy is None or os.geteuid() != 0:
        return
    for task_id in task_ids:
        cg = cgroupfs.task_cgroup(hierarchy, DEFAULT_PARENT, task_id)
        for pid in cg.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for d in cg.dirs():
            wait_for(lambda: not os.path.isdir(d) or _try_rmdir(d), timeout=5, what=f"rmdir {d}")


def _try_rmdir(d: Any) -> bool:
    try:
        os.rmdir(d)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
