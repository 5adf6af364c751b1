"""Run a command on this agent for an operator, streaming its output: `node exec` and `task exec`.

Only the master calls this (cluster secret), and only to proxy an operator
request it has already authorised and recorded. The answer is NDJSON, one
object a line, flushed as output arrives:

    {"stream": "stdout"|"stderr", "data": "..."}      any number of these
    {"exit_code": N, "timed_out": false}               always last

``node exec`` (no task_id): ``/bin/sh -c CMD`` as the agent's user (root on a
real agent), cwd /, with DCOSD_NODE_ID and DCOSD_NODE_HOSTNAME set. ``task exec`` (task_id): CMD as the task's user, in its
sandbox with its environment, and inside its cgroup — the child writes its own
pid into every ``cgroup.procs`` of the task before it drops privileges and
execs, so it shares the task's limits and accounting (cgroups backend: the
task's cgroup directories; any other backend: the cgroups of a process of the
task, read from /proc).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import pwd
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dcosd.errors import Conflict, NotFound, Unauthorized, ValidationError
from dcosd.executor import cgroupfs
from dcosd.httputil import read_json
from dcosd.model.ids import valid_task_id
from dcosd.model.task import TaskSpec

if TYPE_CHECKING:
    from dcosd.agent.service import Agent

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 3600.0
READ_CHUNK = 16 * 1024


def procs_files_of_pid(pid: int, mountinfo: str | None = None) -> list[Path]:
    """The cgroup.procs files of every cgroup (v1 cpu/cpuacct/memory/pids, or v2) that ``pid`` is in."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v1, v2 = cgroupfs.parse_mountinfo(mountinfo)
    out: list[Path] = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        rel = path.lstrip("/")
        if hid == "0" and not ctrls:
            if v2 and not v1:
                out.append(v2[0] / rel / "cgroup.procs")
            continue
        for ctrl in ctrls.split(","):
            if ctrl in v1 and rel:
                f = v1[ctrl] / rel / "cgroup.procs"
                if f not in out:
                    out.append(f)
    return out


def find_task_pid(task_id: str) -> int | None:
    """A process of the task, found by the DCOSD_TASK_ID its environment carries (root reads every environ)."""
    needle = f"DCOSD_TASK_ID={task_id}\0".encode()
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read() + b"\0"
        except OSError:
            continue
        if b"\0" + needle in b"\0" + env:
            return int(entry.name)
    return None


class ExecApi:
    def __init__(self, agent: "Agent") -> None:
        self.agent = agent

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/dcosd/agent/v1/exec", self.exec)]

    def _task_context(self, task_id: str) -> dict[str, Any]:
        if not valid_task_id(task_id):
            raise ValidationError(f"invalid task id {task_id!r}")
        t = self.agent.tasks.get(task_id)
        if t is None:
            raise NotFound(f"task {task_id} is not on this agent")
        if t.state.terminal or t.state.value != "TASK_RUNNING":
            raise Conflict(f"task {task_id} is {t.state.value}, not running")
        spec = TaskSpec.from_dict(t.spec)
        sandbox = self.agent.backend.sandbox_path(task_id)
        procs: list[Path] = []
        if os.geteuid() == 0:
            cgroup = getattr(self.agent.backend, "cgroup", None)
            if cgroup is not None:
                procs = [p for p in cgroup(task_id).procs_files() if p.exists()]
            if not procs:
                pid = find_task_pid(task_id)
                if pid is not None:
                    procs = procs_files_of_pid(pid)
        return {"user": self.agent._task_user(spec), "cwd": str(sandbox),
                "env": self.agent._task_env(spec, t.resources, sandbox), "procs": [str(p) for p in procs]}

    async def exec(self, request: web.Request) -> web.StreamResponse:
        if not self.agent.config.secret:
            raise Unauthorized("exec is off: this agent was started without the cluster secret")
        self.agent.require_secret(request)
        body = await read_json(request)
        command = body.get("command")
        if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
            raise ValidationError("command must be a non-empty list of strings")
        timeout = float(body.get("timeout") or DEFAULT_TIMEOUT)
        if not 0 < timeout <= MAX_TIMEOUT:
            raise ValidationError(f"timeout must be in (0, {MAX_TIMEOUT:g}] seconds")
        task_id = body.get("task_id")
        if task_id:
            ctx = self._task_context(str(task_id))
            argv = command
        else:
            from dcosd.agent import fingerprint

            env = {**os.environ, "DCOSD_NODE_ID": self.agent.agent_id or "",
                   "DCOSD_NODE_HOSTNAME": self.agent.config.hostname or fingerprint.hostname()}
            ctx = {"user": None, "cwd": "/", "env": env, "procs": []}
            argv = ["/bin/sh", "-c", " ".join(command)] if len(command) == 1 else command
        preexec = _child_setup(ctx["procs"], ctx["user"])
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=ctx["cwd"], env=ctx["env"], preexec_fn=preexec,
                start_new_session=True)
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot start {argv[0]!r}: {exc}") from exc
        except Exception as exc:  # subprocess.SubprocessError from the child's setup
            raise ValidationError(f"cannot start {argv[0]!r}: {exc}") from exc
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        out: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def pump(reader: asyncio.StreamReader, name: str) -> None:
            dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
            while True:
                chunk = await reader.read(READ_CHUNK)
                text = dec.decode(chunk, final=not chunk)
                if text:
                    out.put_nowait((json.dumps({"stream": name, "data": text}) + "\n").encode())
                if not chunk:
                    return

        async def run() -> tuple[int | None, bool]:
            pumps = asyncio.gather(pump(proc.stdout, "stdout"), pump(proc.stderr, "stderr"))  # type: ignore[arg-type]
            try:
                await asyncio.wait_for(asyncio.shield(pumps), timeout)
                return await proc.wait(), False
            except asyncio.TimeoutError:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await proc.wait()
                pumps.cancel()
                await asyncio.gather(pumps, return_exceptions=True)
                return None, True
            finally:
                out.put_nowait(None)

        runner = asyncio.ensure_future(run())
        try:
            while True:
                line = await out.get()
                if line is None:
                    break
                await resp.write(line)
            code, timed_out = await runner
        except (ConnectionResetError, asyncio.CancelledError):
            if proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            runner.cancel()
            raise
        await resp.write((json.dumps({"exit_code": code, "timed_out": timed_out}) + "\n").encode())
        await resp.write_eof()
        return resp


def _child_setup(procs: list[str], user: str | None) -> Any:
    """What the child runs between fork and exec: join the task's cgroups, then become the task's user."""
    ids = None
    if user is not None and os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        ids = (pw.pw_uid, pw.pw_gid, os.getgrouplist(user, pw.pw_gid))
    if not procs and ids is None:
        return None

    def setup() -> None:
        pid = str(os.getpid())
        for p in procs:
            with open(p, "w") as f:
                f.write(pid)
        if ids is not None:
            os.setgroups(ids[2])
            os.setgid(ids[1])
            os.setuid(ids[0])

    return setup
