"""The process backend as a developer without root runs it.

As root, the whole agent side (backend, supervisor, tasks) runs as ``nobody``
under the system interpreter — no root, no cgroups, no psutil — which is the
situation the process backend exists for. Without root it runs as ourselves.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from dcosd.executor import sandbox as sb

REPO = Path(__file__).resolve().parents[2]

AGENT = textwrap.dedent("""
    import asyncio, json, sys, time
    from pathlib import Path
    from dcosd.executor.base import LaunchFailed, LaunchRequest
    from dcosd.executor.process import ProcessBackend
    from dcosd.model.task import TaskSpec

    TASKS = {
        "whoami": {"cmd": "id -u"},
        "five": {"cmd": "exit 5"},
        "missing": {"argv": ["nosuchcmd"]},
        "as-root": {"cmd": "true", "user": "root"},
        "greedy": {"argv": [sys.executable, "-c", "b = bytearray(256 * 1024 * 1024)"],
                   "resources": {"cpus": 0.1, "mem": 32}},
    }

    async def main():
        ended = []
        backend = ProcessBackend(Path(sys.argv[1]), ended.append)
        results = {}
        for task_id, fields in TASKS.items():
            user = fields.pop("user", None)
            spec = TaskSpec.from_dict({"task_id": task_id, **fields})
            sandbox = backend.sandbox_path(task_id)
            sandbox.mkdir(parents=True)
            try:
                await backend.launch(LaunchRequest(spec, sandbox, {"PATH": "/usr/bin:/bin"}, user))
            except LaunchFailed as exc:
                results[task_id] = {"launch_failed": str(exc)}
        deadline = time.monotonic() + 30
        while len(ended) + len(results) < len(TASKS) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for e in ended:
            results[e.task_id] = {"state": e.state.value, "exit_code": e.exit_code, "message": e.message}
        print(json.dumps(results))

    asyncio.run(main())
""")


@pytest.fixture
def unprivileged_work_dir():
    """A work dir the unprivileged agent owns; every process started under it is killed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="dcosd-process-test-", dir="/tmp"))
    if os.geteuid() == 0:
        os.chown(work, 65534, 65534)
    try:
        yield work
    finally:
        for sandbox in (work / "sandboxes").glob("*"):
            rec = sb.read_json(sb.Paths(sandbox).supervisor) or {}
            for pid_key, ticks_key in (("pid", "start_ticks"), ("task_pid", "task_start_ticks")):
                pid = rec.get(pid_key)
                if pid and sb.start_ticks(pid) == rec.get(ticks_key):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        shutil.rmtree(work, ignore_errors=True)


def test_process_backend_runs_tasks_without_privileges(unprivileged_work_dir):
    if os.geteuid() == 0:
        interpreter = "/usr/bin/python3"
        if not os.access(interpreter, os.X_OK):
            pytest.skip("no system interpreter that the nobody user can run")
        try:
            pwd.getpwuid(65534)
        except KeyError:
            pytest.skip("no nobody user")
        drop = {"user": 65534, "group": 65534, "extra_groups": []}
    else:
        interpreter, drop = sys.executable, {}
    done = subprocess.run([interpreter, "-c", AGENT, str(unprivileged_work_dir)], capture_output=True, text=True,
                          timeout=120, cwd=unprivileged_work_dir,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, **drop)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])

    assert results["whoami"]["state"] == "TASK_FINISHED"
    uid = (unprivileged_work_dir / "sandboxes" / "whoami" / "stdout").read_text().strip()
    assert uid == str(65534 if os.geteuid() == 0 else os.geteuid())
    assert (results["five"]["state"], results["five"]["exit_code"]) == ("TASK_FAILED", 5)
    assert results["missing"] == {"launch_failed": "command not found: nosuchcmd"}
    assert "not running as root" in results["as-root"]["launch_failed"]
    # RLIMIT_DATA keeps the task below its memory: the allocation fails inside the task.
    assert results["greedy"]["state"] == "TASK_FAILED"
    assert "MemoryError" in (unprivileged_work_dir / "sandboxes" / "greedy" / "stderr").read_text()
