"""Test bodies that run INSIDE the systemd sandbox (its mount + pid namespaces, so its D-Bus).

    python3 tests/system/payloads.py <scenario> <work_dir> [json args]

Each scenario drives a real SystemdBackend and prints JSON lines on stdout; the last line is the
result. Scenarios that need the test to act in the middle print an intermediate line and wait for a
line on stdin. The tests in this directory start these through ``SystemdSandbox.popen``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dcosd.executor.base import LaunchFailed, LaunchRequest, TaskEnded  # noqa: E402
from dcosd.executor.systemd import SystemdBackend, systemd_available  # noqa: E402
from dcosd.model.resources import Resources  # noqa: E402
from dcosd.model.task import TaskSpec  # noqa: E402


def emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def ended_dict(e: TaskEnded) -> dict[str, Any]:
    return {"task_id": e.task_id, "state": e.state.value, "exit_code": e.exit_code, "signal": e.signal,
            "reason": e.reason.value if e.reason else None, "message": e.message}


class Harness:
    """A backend plus what its on_exit reported, and helpers to launch and wait."""

    def __init__(self, work: Path, **kw: Any) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        os.chmod(work, 0o755)
        (work / "sandboxes").mkdir(exist_ok=True)
        os.chmod(work / "sandboxes", 0o755)
        self.ended: dict[str, TaskEnded] = {}
        self.exits: list[str] = []  # every on_exit call, to catch duplicates
        self.events: dict[str, asyncio.Event] = {}
        self.backend = SystemdBackend(work, self._on_exit, **kw)

    def _on_exit(self, e: TaskEnded) -> None:
        self.exits.append(e.task_id)
        self.ended[e.task_id] = e
        self.events.setdefault(e.task_id, asyncio.Event()).set()

    def request(self, task_id: str, *, cmd: str | None = None, argv: list[str] | None = None,
                cpus: float = 0.5, mem: float = 64, grace: float = 3.0, user: str | None = None,
                env: dict[str, str] | None = None) -> LaunchRequest:
        spec = TaskSpec(task_id=task_id, name=task_id.split(".")[0], resources=Resources.of(cpus=cpus, mem=mem),
                        cmd=cmd, argv=tuple(argv) if argv else None, kill_grace_seconds=grace)
        sandbox = self.backend.sandbox_path(task_id)
        sandbox.mkdir(parents=True, exist_ok=True)
        return LaunchRequest(spec=spec, sandbox=sandbox, env=env or {"PATH": "/usr/bin:/bin"}, user=user)

    async def launch(self, task_id: str, **kw: Any) -> LaunchRequest:
        req = self.request(task_id, **kw)
        self.events.setdefault(task_id, asyncio.Event())
        await self.backend.launch(req)
        return req

    async def wait(self, task_id: str, timeout: float = 30.0) -> TaskEnded:
        await asyncio.wait_for(self.events.setdefault(task_id, asyncio.Event()).wait(), timeout)
        return self.ended[task_id]

    def stdout(self, task_id: str) -> str:
        p = self.backend.sandbox_path(task_id) / "stdout"
        return p.read_text() if p.exists() else ""

    async def wait_stdout(self, task_id: str, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stdout(task_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not in {task_id}'s stdout: {self.stdout(task_id)!r}")
            await asyncio.sleep(0.05)


async def readline() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


# -- scenarios ---------------------------------------------------------------------------------
async def s_available(work: Path, args: dict[str, Any]) -> None:
    emit({"available": systemd_available()})


async def s_basics(work: Path, args: dict[str, Any]) -> None:
    """Exit codes, the default user, argv without expansion, launch failures."""
    h = Harness(work)
    out: dict[str, Any] = {"describe": h.backend.describe()}
    await h.launch("ok.1", cmd="id -u; id -un; pwd; echo err >&2")
    out["ok"] = ended_dict(await h.wait("ok.1"))
    out["ok_stdout"] = h.stdout("ok.1")
    out["ok_stderr"] = (h.backend.sandbox_path("ok.1") / "stderr").read_text()
    await h.launch("fail.1", cmd="exit 42")
    out["fail"] = ended_dict(await h.wait("fail.1"))
    await h.launch("argv.1", argv=["/bin/echo", "$HOME", "a b", "%n"])
    out["argv"] = ended_dict(await h.wait("argv.1"))
    out["argv_stdout"] = h.stdout("argv.1")
    await h.launch("sig.1", cmd="kill -USR1 $$; sleep 5")
    out["sig"] = ended_dict(await h.wait("sig.1"))
    for name, kw in (("noexec.1", {"argv": ["/nonexistent/program"]}),
                     ("noexec.2", {"argv": ["no-such-program-anywhere"]}),
                     ("root.1", {"cmd": "true", "user": "root"}),
                     ("nouser.1", {"cmd": "true", "user": "no-such-user-xyz"})):
        try:
            await h.launch(name, **kw)
            out[name] = "launched"
        except LaunchFailed as exc:
            out[name] = str(exc)
    out["exits"] = h.exits
    await h.backend.close()
    emit(out)


async def s_limits(work: Path, args: dict[str, Any]) -> None:
    """A running task (limits visible to the test), then a memory hog."""
    h = Harness(work)
    await h.launch("limits.1", cmd="echo started; sleep 60", cpus=0.5, mem=64)
    await h.wait_stdout("limits.1", "started")
    unit = h.backend._tasks["limits.1"].unit
    emit({"unit": unit, "stats": await h.backend.stats("limits.1"), "list": await h.backend.list(),
          "describe": h.backend.describe()})
    await readline()  # the test has looked at the cgroup files
    await h.backend.kill("limits.1", 3.0)
    out: dict[str, Any] = {"limits": ended_dict(await h.wait("limits.1"))}
    await h.launch("hog.1", cmd="echo hog; exec dd if=/dev/zero of=/dev/null bs=256M count=1", mem=64)
    out["hog"] = ended_dict(await h.wait("hog.1"))
    out["hog_stdout"] = h.stdout("hog.1")
    out["exits"] = h.exits
    await h.backend.close()
    emit(out)


async def s_kill(work: Path, args: dict[str, Any]) -> None:
    h = Harness(work)
    out: dict[str, Any] = {}
    loop_cmd = "echo ready; while :; do sleep 0.1; done"
    # Grace equal to the task's own: StopUnit, TimeoutStopSec carries it.
    await h.launch("trap.1", cmd=f"trap 'echo got-term; exit 0' TERM; {loop_cmd}", grace=5)
    await h.launch("ignore.1", cmd=f"trap '' TERM; {loop_cmd}", grace=1.5)
    # Grace different from the task's: KillUnit SIGTERM now, SIGKILL after the grace.
    await h.launch("ignore.2", cmd=f"trap '' TERM; {loop_cmd}", grace=30)
    for t in ("trap.1", "ignore.1", "ignore.2"):
        await h.wait_stdout(t, "ready")
    for t, grace in (("trap.1", 5), ("ignore.1", 1.5), ("ignore.2", 1.0)):
        t0 = time.monotonic()
        await h.backend.kill(t, grace)
        out[t + ".kill_returned_s"] = time.monotonic() - t0
        e = await h.wait(t, timeout=grace + 20)
        out[t] = ended_dict(e)
        out[t + ".elapsed_s"] = time.monotonic() - t0
        out[t + ".stdout"] = h.stdout(t)
    await h.backend.kill("trap.1", 1)  # ended: a no-op
    await h.backend.kill("never-launched", 1)
    out["exits"] = h.exits
    await h.backend.close()
    emit(out)


RECOVERY_EXITS = {"exit3.r": 3, "exit5.r": 5, "exit0.r": 0}


async def s_recovery_launch(work: Path, args: dict[str, Any]) -> None:
    """Phase 1: launch 20 tasks, report, then wait to be kill -9ed."""
    h = Harness(work)
    ids = [f"run{i:02d}.r" for i in range(17)]
    for tid in ids:
        await h.launch(tid, cmd="exec sleep 300", cpus=0.1, mem=16)
    for tid, code in RECOVERY_EXITS.items():
        # exits once the test creates `go` in its sandbox, i.e. while no backend is watching
        await h.launch(tid, cmd=f"while [ ! -e go ]; do sleep 0.05; done; exit {code}", cpus=0.1, mem=16)
    emit({"pid": os.getpid(), "launched": ids + list(RECOVERY_EXITS),
          "sandboxes": {t: str(h.backend.sandbox_path(t)) for t in RECOVERY_EXITS}})
    await asyncio.sleep(3600)


async def s_recovery_recover(work: Path, args: dict[str, Any]) -> None:
    """Phase 2: a new backend recovers, then kills what it adopted to prove it watches them."""
    h = Harness(work)
    known = set(args["known"])
    found = await h.backend.recover(known)
    out: dict[str, Any] = {
        "found": {tid: {"running": r.running, "ended": ended_dict(r.ended) if r.ended else None}
                  for tid, r in found.items()},
        "list": await h.backend.list(),
    }
    running = [tid for tid, r in found.items() if r.running]
    for tid in running:
        await h.backend.kill(tid, 3.0)
    for tid in running:
        await h.wait(tid, timeout=30)
    out["after_kill"] = {tid: h.ended[tid].state.value for tid in running}
    out["exits"] = h.exits
    out["list_after"] = await h.backend.list()
    await h.backend.close()
    emit(out)


async def s_many(work: Path, args: dict[str, Any]) -> None:
    """N short tasks, one after the other: launch, wait for the end, next."""
    n = int(args.get("n", 1000))
    h = Harness(work)
    t0 = time.monotonic()
    bad = []
    for i in range(n):
        tid = f"short{i:04d}.m"
        await h.launch(tid, argv=["/bin/true"], cpus=0.1, mem=16)
        e = await h.wait(tid, timeout=30)
        if e.state.value != "TASK_FINISHED":
            bad.append(ended_dict(e))
    elapsed = time.monotonic() - t0
    out = {"n": n, "elapsed_s": elapsed, "bad": bad[:5], "n_bad": len(bad), "exits": len(h.exits),
           "distinct_exits": len(set(h.exits)), "list": await h.backend.list(),
           "state_files": sorted(os.listdir(h.backend.state_dir))[:5]}
    await h.backend.close()
    emit(out)


SCENARIOS = {name[2:]: fn for name, fn in globals().items() if name.startswith("s_")}


def main() -> None:
    scenario, work = sys.argv[1], Path(sys.argv[2])
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    asyncio.run(SCENARIOS[scenario](work, args))


if __name__ == "__main__":
    main()
