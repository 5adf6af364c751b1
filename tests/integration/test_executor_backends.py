"""The cgroups and process backends against real processes and real cgroups.

Behaviour common to both backends is parametrised over them; what only cgroups
can do (OOM, CPU quota, cgroup cleanup) runs on the cgroups backend alone. Every
test leaves no process and no cgroup behind, even when it fails: the harness
kills, by pid and start time, every supervisor and task it started, and removes
its own cgroup parent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from dcosd.errors import ExecutorError
from dcosd.executor import cgroupfs
from dcosd.executor import sandbox as sb
from dcosd.executor.base import ExecutorBackend, LaunchFailed, LaunchRequest, TaskEnded
from dcosd.executor.cgroups import CgroupsBackend
from dcosd.executor.process import ProcessBackend
from dcosd.model.states import Reason, TaskState
from dcosd.model.task import TaskSpec

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
HIERARCHY, WHY = cgroupfs.detect()
needs_cgroups = pytest.mark.skipif(not IS_ROOT or HIERARCHY is None,
                                   reason="the cgroups backend needs root and a cgroup hierarchy: "
                                          + ("not root" if not IS_ROOT else WHY))
TASK_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


async def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class Harness:
    """Backends of one kind over one work dir, and everything they reported."""

    def __init__(self, kind: str, work_dir: Path) -> None:
        self.kind = kind
        self.work_dir = work_dir
        self.cgroup_parent = f"dcosd-test-{uuid.uuid4().hex[:8]}"
        self.ended: dict[str, list[TaskEnded]] = defaultdict(list)
        self.backends: list[ExecutorBackend] = []

    def new_backend(self) -> ExecutorBackend:
        def on_exit(ended: TaskEnded) -> None:
            self.ended[ended.task_id].append(ended)

        if self.kind == "cgroups":
            backend: ExecutorBackend = CgroupsBackend(self.work_dir, on_exit, parent=self.cgroup_parent)
        else:
            backend = ProcessBackend(self.work_dir, on_exit)
        self.backends.append(backend)
        return backend

    async def launch(self, backend: ExecutorBackend, task_id: str, *, user: str | None = None, **fields) -> Path:
        fields.setdefault("resources", {"cpus": 0.5, "mem": 64})
        spec = TaskSpec.from_dict({"task_id": task_id, **fields})
        sandbox = backend.sandbox_path(task_id)
        sandbox.mkdir(parents=True, exist_ok=True)
        await backend.launch(LaunchRequest(spec, sandbox, TASK_ENV, user))
        return sandbox

    async def ended_one(self, task_id: str, timeout: float = 30.0) -> TaskEnded:
        await wait_for(lambda: self.ended.get(task_id), timeout, f"the end of {task_id}")
        return self.ended[task_id][0]

    def cleanup(self) -> None:
        """Kill everything started under this work dir, by pid and start time; remove our cgroups."""
        root = self.work_dir / "sandboxes"
        for sandbox in root.iterdir() if root.is_dir() else []:
            rec = sb.read_json(sb.Paths(sandbox).supervisor) or {}
            for pid_key, ticks_key, kill in (("pid", "start_ticks", os.kill), ("task_pid", "task_start_ticks", os.killpg)):
                pid = rec.get(pid_key)
                if pid and sb.start_ticks(pid) == rec.get(ticks_key):
                    try:
                        kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        if self.kind == "cgroups" and HIERARCHY is not None:
            for mount in set(HIERARCHY.mounts.values()):
                parent = mount / self.cgroup_parent
                if parent.is_dir():
                    remove_cgroup_tree(parent)


def remove_cgroup_tree(parent: Path) -> None:
    deadline = time.monotonic() + 10
    while parent.exists() and time.monotonic() < deadline:
        for d in sorted((p for p in parent.iterdir() if p.is_dir()), reverse=True):
            for pid in (d / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            try:
                d.rmdir()
            except OSError:
                pass
        try:
            parent.rmdir()
        except OSError:
            time.sleep(0.05)


@pytest.fixture(params=["process", pytest.param("cgroups", marks=needs_cgroups)])
async def harness(request, tmp_path):
    h = Harness(request.param, tmp_path / "work")
    try:
        yield h
    finally:
        for backend in h.backends:
            await backend.close()
        h.cleanup()


@pytest.fixture
async def cgroups_harness(tmp_path):
    if not IS_ROOT or HIERARCHY is None:
        pytest.skip("the cgroups backend needs root and a cgroup hierarchy: " + ("not root" if not IS_ROOT else WHY))
    h = Harness("cgroups", tmp_path / "work")
    try:
        yield h
    finally:
        for backend in h.backends:
            await backend.close()
        h.cleanup()


# -- both backends ------------------------------------------------------------------------

async def test_echo_finishes_with_its_output_in_the_sandbox(harness):
    backend = harness.new_backend()
    sandbox = await harness.launch(backend, "echo", cmd="echo hello")
    ended = await harness.ended_one("echo")
    assert ended.state is TaskState.FINISHED and ended.exit_code == 0
    assert "hello" in (sandbox / "stdout").read_text()
    assert await backend.list() == []


async def test_exit_code_is_reported_as_failed(harness):
    backend = harness.new_backend()
    await harness.launch(backend, "three", cmd="exit 3")
    ended = await harness.ended_one("three")
    assert (ended.state, ended.exit_code, ended.reason) == (TaskState.FAILED, 3, Reason.COMMAND_EXECUTOR_FAILED)


async def test_missing_program_fails_the_launch(harness):
    backend = harness.new_backend()
    with pytest.raises(LaunchFailed, match="command not found: nosuchcmd"):
        await harness.launch(backend, "argv-missing", argv=["nosuchcmd", "x"])
    assert await backend.list() == []
    assert harness.ended == {}  # a launch failure is the exception, not also an on_exit


async def test_missing_command_in_a_shell_task_fails_saying_so(harness):
    backend = harness.new_backend()
    await harness.launch(backend, "shell-missing", cmd="nosuchcmd --flag")
    ended = await harness.ended_one("shell-missing")
    assert ended.state is TaskState.FAILED and ended.exit_code == 127
    assert "command not found" in ended.message


async def test_non_executable_and_unknown_user_fail_the_launch(harness, tmp_path):
    backend = harness.new_backend()
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(LaunchFailed, match="not executable"):
        await harness.launch(backend, "noexec", argv=[str(script)])
    with pytest.raises(LaunchFailed, match="unknown user: no-such-user-x"):
        await harness.launch(backend, "nouser", cmd="true", user="no-such-user-x")


@pytest.mark.skipif(not IS_ROOT, reason="running a task as another user needs root")
async def test_task_runs_as_the_requested_user(harness):
    backend = harness.new_backend()
    sandbox = await harness.launch(backend, "as-nobody", cmd="id -u; touch mine; ls .executor; exit 5", user="nobody")
    ended = await harness.ended_one("as-nobody")
    assert ended.exit_code == 5
    assert (sandbox / "stdout").read_text().split() == ["65534"]
    assert (sandbox / "mine").stat().st_uid == 65534  # the sandbox is the task's to write
    assert "Permission denied" in (sandbox / "stderr").read_text()  # the supervisor's records are not


async def test_kill_delivers_sigterm_that_a_task_may_handle(harness):
    backend = harness.new_backend()
    sandbox = await harness.launch(backend, "trapper", cmd="trap 'echo bye > marker; exit 0' TERM; "
                                                         "touch ready; while :; do sleep 0.05; done")
    await wait_for(lambda: (sandbox / "ready").exists(), what="the trap to be installed")
    await backend.kill("trapper", 10)
    ended = await harness.ended_one("trapper")
    assert ended.state is TaskState.KILLED
    assert (sandbox / "marker").read_text() == "bye\n"


async def test_kill_escalates_to_sigkill_after_the_grace(harness):
    backend = harness.new_backend()
    sandbox = await harness.launch(backend, "stubborn", cmd="trap '' TERM; touch ready; while :; do sleep 0.05; done")
    await wait_for(lambda: (sandbox / "ready").exists(), what="the trap to be installed")
    await backend.kill("stubborn", 0.5)
    ended = await harness.ended_one("stubborn")
    assert (ended.state, ended.signal) == (TaskState.KILLED, signal.SIGKILL)
    await backend.kill("stubborn", 1)  # ended: a no-op
    await backend.kill("never-launched", 1)
    assert len(harness.ended["stubborn"]) == 1


async def test_kill_grace_survives_the_agent(harness):
    """The supervisor times the grace: the backend may vanish right after asking for the kill."""
    backend = harness.new_backend()
    sandbox = await harness.launch(backend, "orphaned-kill", cmd="trap '' TERM; touch ready; while :; do sleep 0.05; done")
    await wait_for(lambda: (sandbox / "ready").exists(), what="the trap to be installed")
    await backend.kill("orphaned-kill", 0.5)
    await backend.close()  # the agent is gone
    record = await wait_for(lambda: sb.read_json(sb.Paths(sandbox).exit), what="the exit record")
    assert record["killed"] is True and record["signal"] == signal.SIGKILL
    recovered = await harness.new_backend().recover({"orphaned-kill"})
    assert recovered["orphaned-kill"].ended.state is TaskState.KILLED


async def test_processes_left_behind_are_killed_when_the_task_ends(harness):
    backend = harness.new_backend()
    sandbox = await harness.launch(backend, "daemoniser", cmd="sleep 300 & echo $! > bg.pid")
    await harness.ended_one("daemoniser")
    bg = int((sandbox / "bg.pid").read_text())
    await wait_for(lambda: not _alive(bg), what="the background process to be killed")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- recovery -----------------------------------------------------------------------------

AGENT_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from dcosd.executor.base import LaunchRequest
    from dcosd.executor.cgroups import CgroupsBackend
    from dcosd.executor.process import ProcessBackend
    from dcosd.model.task import TaskSpec

    kind, work_dir, parent = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

    async def main():
        if kind == "cgroups":
            backend = CgroupsBackend(work_dir, print, parent=parent)
        else:
            backend = ProcessBackend(work_dir, print)
        for i in range(10):
            code = 7 if i == 0 else i
            spec = TaskSpec.from_dict({"task_id": f"t{i}", "resources": {"cpus": 0.1, "mem": 32},
                                       "cmd": f"while [ ! -e release ]; do sleep 0.05; done; exit {code}"})
            sandbox = backend.sandbox_path(spec.task_id)
            sandbox.mkdir(parents=True)
            await backend.launch(LaunchRequest(spec, sandbox, {"PATH": "/usr/bin:/bin"}, None))
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


async def test_recovery_after_the_agent_is_killed(harness):
    """10 tasks outlive a kill -9 of their agent; a new backend re-adopts 9 and reports the one that ended."""
    agent = subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT, harness.kind, str(harness.work_dir),
                              harness.cgroup_parent], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = await asyncio.wait_for(asyncio.to_thread(agent.stdout.readline), 60)
        assert line.strip() == "ready"
    finally:
        agent.kill()
        agent.wait()
        agent.stdout.close()
    sandboxes = {f"t{i}": harness.work_dir / "sandboxes" / f"t{i}" for i in range(10)}
    # While no agent watches, t0 exits 7.
    (sandboxes["t0"] / "release").touch()
    await wait_for(lambda: sb.read_json(sb.Paths(sandboxes["t0"]).exit), what="t0's exit record")

    backend = harness.new_backend()
    recovered = await backend.recover(set(sandboxes))
    assert set(recovered) == set(sandboxes)
    assert not recovered["t0"].running
    assert (recovered["t0"].ended.state, recovered["t0"].ended.exit_code) == (TaskState.FAILED, 7)
    assert all(recovered[f"t{i}"].running for i in range(1, 10))
    assert sorted(await backend.list()) == sorted(f"t{i}" for i in range(1, 10))
    if harness.kind == "cgroups":
        assert (await backend.stats("t3"))["mem_limit_bytes"] == 32 * 1024 * 1024

    for i in range(1, 10):
        (sandboxes[f"t{i}"] / "release").touch()
    await wait_for(lambda: len(harness.ended) == 9, what="the 9 re-adopted tasks to end")
    assert "t0" not in harness.ended  # reported by recover(), not again by on_exit
    for i in range(1, 10):
        assert [e.exit_code for e in harness.ended[f"t{i}"]] == [i]
    assert await backend.list() == []


async def test_a_vanished_supervisor_is_reported_and_its_task_killed(harness):
    backend = harness.new_backend()
    sandbox = await harness.launch(backend, "lost", cmd="sleep 300")
    await backend.close()
    rec = sb.read_json(sb.Paths(sandbox).supervisor)
    os.kill(rec["pid"], signal.SIGKILL)  # as a reboot would: no exit record
    await wait_for(lambda: not _alive(rec["pid"]), what="the supervisor to die")

    recovered = await harness.new_backend().recover({"lost", "unheard-of"})
    lost = recovered["lost"].ended
    assert lost.state is TaskState.FAILED and "supervisor disappeared" in lost.message
    assert recovered["unheard-of"].ended.state is TaskState.FAILED
    await wait_for(lambda: not _alive(rec["task_pid"]), what="the orphaned task to be killed")


async def test_launching_a_running_task_again_is_refused(harness):
    backend = harness.new_backend()
    first, second = await asyncio.gather(harness.launch(backend, "twice", cmd="sleep 300"),
                                         harness.launch(backend, "twice", cmd="sleep 300"), return_exceptions=True)
    assert isinstance(second, LaunchFailed) and "already running" in str(second)
    # launch() returned: the command's process exists.
    task_pid = sb.read_json(sb.Paths(first).supervisor)["task_pid"]
    assert _alive(task_pid)
    with pytest.raises(LaunchFailed, match="already running"):
        await harness.launch(backend, "twice", cmd="sleep 300")
    stats = await backend.stats("twice")
    assert stats["mem_limit_bytes"] == 64 * 1024 * 1024 and stats["mem_bytes"] > 0 and stats["cpu_seconds"] >= 0
    with pytest.raises(ExecutorError, match="not running"):
        await backend.stats("never-launched")
    await backend.kill("twice", 0)
    assert (await harness.ended_one("twice")).state is TaskState.KILLED
    assert len(harness.ended["twice"]) == 1


async def test_kill_while_launching_takes_effect_once_started(harness):
    backend = harness.new_backend()
    launching = asyncio.create_task(harness.launch(backend, "early-kill", cmd="sleep 300"))
    while "early-kill" not in await backend.list() and not launching.done():
        await asyncio.sleep(0)
    await backend.kill("early-kill", 0)
    await launching
    assert (await harness.ended_one("early-kill")).state is TaskState.KILLED


# -- cgroups only -------------------------------------------------------------------------

async def test_memory_hog_is_oom_killed(cgroups_harness):
    h = cgroups_harness
    backend = h.new_backend()
    await h.launch(backend, "hog", resources={"cpus": 1, "mem": 64},
                   argv=["python3", "-c", "b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"])
    ended = await h.ended_one("hog")
    assert ended.state is TaskState.FAILED
    assert ended.reason is Reason.CONTAINER_LIMITATION_MEMORY


async def test_memory_hog_under_a_shell_is_oom_killed(cgroups_harness):
    """Whether /bin/sh execs the command or waits for it (exit 137), the OOM kill is recognised."""
    h = cgroups_harness
    backend = h.new_backend()
    await h.launch(backend, "shell-hog", resources={"cpus": 1, "mem": 64},
                   cmd="python3 -c 'b = bytearray(200 * 1024 * 1024)'; exit $?")
    ended = await h.ended_one("shell-hog")
    assert (ended.state, ended.reason) == (TaskState.FAILED, Reason.CONTAINER_LIMITATION_MEMORY)


async def test_cpu_quota_holds_a_busy_loop_to_half_a_core(cgroups_harness):
    h = cgroups_harness
    backend = h.new_backend()
    await h.launch(backend, "spin", resources={"cpus": 0.5, "mem": 32}, cmd="while :; do :; done")
    # The quota is a ceiling, so every window must stay under it. Reaching the floor also needs a core
    # free of other load: a window starved by other work on this machine is measured again, up to 3.
    windows = []
    for _ in range(3):
        first = await backend.stats("spin")
        t0 = time.monotonic()
        await asyncio.sleep(2)
        second = await backend.stats("spin")
        windows.append((second["cpu_seconds"] - first["cpu_seconds"]) / (time.monotonic() - t0))
        assert windows[-1] <= 0.65, f"the task used {windows[-1]:.2f} cores"
        if windows[-1] > 0.2:
            break
    assert max(windows) > 0.2, f"the task never got 0.2 core: {windows}"
    assert second["mem_limit_bytes"] == 32 * 1024 * 1024
    await backend.kill("spin", 0)
    assert (await h.ended_one("spin")).state is TaskState.KILLED


async def test_task_is_in_its_cgroup_and_the_cgroup_is_removed_after(cgroups_harness):
    h = cgroups_harness
    backend = h.new_backend()
    sandbox = await h.launch(backend, "where", cmd="cat /proc/self/cgroup > cgroups; touch ready; "
                                                   "while [ ! -e release ]; do sleep 0.05; done")
    await wait_for(lambda: (sandbox / "ready").exists(), what="the task to start")
    lines = (sandbox / "cgroups").read_text().splitlines()
    memory = next(line for line in lines if ":memory:" in line)
    assert memory.endswith(f"/{h.cgroup_parent}/where")
    supervisor = sb.read_json(sb.Paths(sandbox).supervisor)["pid"]
    assert h.cgroup_parent not in Path(f"/proc/{supervisor}/cgroup").read_text()  # the supervisor stays out
    cg = backend.cgroup("where")
    assert cg.exists()
    (sandbox / "release").touch()
    await h.ended_one("where")
    await wait_for(lambda: not cg.exists(), what="the task's cgroup to be removed")
