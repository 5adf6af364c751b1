"""The per-task supervisor: ``dcosd executor run --sandbox DIR [--report-fd N]``.

One supervisor runs per task, detached from the agent (own session), so that a
crash or restart of the agent neither kills the task nor loses how it ended. It

1. reads the launch request the agent wrote to ``.executor/launch.json``;
2. forks the task: the child puts itself in its own process group and in the
   task's cgroups *before* exec (so no instruction of the command runs outside
   its limits), sets rlimits, opens stdout/stderr for append, drops to the
   task's user, and execs. Exec errors come back through a CLOEXEC pipe, so
   "command not found" is told apart from a command that exited 127;
3. tells the agent "started" (or the exec error) on the report pipe;
4. waits for the task; on SIGTERM (the agent's kill) it sends SIGTERM to the
   task's process group and cgroup, and SIGKILL after the grace period — the
   grace is timed here, so it still holds if the agent dies meanwhile;
5. records the outcome durably in ``.executor/exit.json`` and removes the
   task's cgroups. The agent learns of the end by watching this process exit.

Imports are stdlib only and few: this start-up time is launch latency.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time
from typing import Any

from dcosd.executor.sandbox import Paths, durable_write_json, read_json, start_ticks

_term_requested = False


def _on_term(signum: int, frame: Any) -> None:
    global _term_requested
    _term_requested = True


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--sandbox":
        print("usage: dcosd executor run --sandbox DIR [--report-fd N]", file=sys.stderr)
        return 2
    paths = Paths(argv[2])
    report_fd = int(argv[4]) if len(argv) >= 5 and argv[3] == "--report-fd" else None
    if report_fd is not None:
        os.set_inheritable(report_fd, False)  # the task must not hold the agent's pipe open
    # Signals arrive as bytes on a pipe so that one poll() waits for them and the task together.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no terminal; an agent's session ending is not a kill
    request = read_json(paths.launch)
    if request is None:
        print(f"supervisor: no launch request at {paths.launch}", file=sys.stderr)
        _report(report_fd, {"error": f"the supervisor found no launch request in {paths.sandbox}"})
        return 2
    return Supervisor(paths, request, report_fd, wake_r).run()


def _report(fd: int | None, message: dict[str, Any]) -> None:
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the agent is gone; the records on disk tell the next one
    finally:
        os.close(fd)


class Supervisor:
    def __init__(self, paths: Paths, request: dict[str, Any], report_fd: int | None, wake_r: int) -> None:
        self.paths = paths
        self.req = request
        self.report_fd = report_fd
        self.wake_r = wake_r
        cg = request.get("cgroup") or {}
        self.procs_files: list[str] = cg.get("procs", [])
        self.oom_events: dict[str, str] | None = cg.get("oom_events")
        self.remove_dirs: list[str] = cg.get("remove", [])
        self.task_pid = 0
        self.killed = False

    def run(self) -> int:
        me = os.getpid()
        durable_write_json(self.paths.supervisor, {"pid": me, "start_ticks": start_ticks(me)})
        oom_before = self._oom_kills()
        try:
            pid, error = self._spawn()
        except Exception as exc:  # noqa: BLE001 - anything here is a launch failure to report, not a crash
            pid, error = 0, f"the supervisor could not start the task: {exc}"
        if error is not None:
            self._record(exit_code=None, sig=None, oom=False, message=error, launch_failed=True)
            _report(self.report_fd, {"error": error})
            self._remove_cgroups()
            return 1
        self.task_pid = pid
        durable_write_json(self.paths.supervisor, {"pid": me, "start_ticks": start_ticks(me),
                                                   "task_pid": pid, "task_start_ticks": start_ticks(pid)})
        _report(self.report_fd, {"started": True, "task_pid": pid})
        status = self._wait(pid)
        # The task is its main process: once that has ended, nothing it left behind may keep running
        # (and the cgroup cannot be removed while anything is in it).
        self._signal_task(signal.SIGKILL)
        exit_code = os.waitstatus_to_exitcode(status)
        sig = -exit_code if exit_code < 0 else None
        code = exit_code if exit_code >= 0 else None
        kills = self._oom_kills()
        # The kernel's OOM killer sends SIGKILL; a shell running the command reports that as 128+9.
        oom = kills > oom_before and (sig == signal.SIGKILL or code == 128 + signal.SIGKILL)
        self._record(exit_code=code, sig=sig, oom=oom, message="")
        self._remove_cgroups()
        return 0

    # -- the task process ------------------------------------------------------------
    def _spawn(self) -> tuple[int, str | None]:
        argv: list[str] = self.req["argv"]
        env: dict[str, str] = self.req.get("env", {})
        user = self.req.get("user")
        ids = None
        if user is not None:
            import pwd

            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                return 0, f"unknown user: {user}"
            if os.geteuid() != 0 and pw.pw_uid != os.geteuid():
                return 0, f"cannot run as user {user}: the agent is not running as root"
            ids = (pw.pw_uid, pw.pw_gid, os.getgrouplist(user, pw.pw_gid))
        rlimits = [(getattr(resource, name), value) for name, value in self.req.get("rlimits", {}).items()]
        err_r, err_w = os.pipe()  # both CLOEXEC: a successful exec closes err_w, and the parent reads EOF
        pid = os.fork()
        if pid == 0:  # the child: only exec or _exit from here
            stage = "start"
            try:
                stage = "create its process group"
                os.setpgid(0, 0)
                stage = "join its cgroups"
                for procs in self.procs_files:
                    with open(procs, "w") as f:
                        f.write(str(os.getpid()))
                stage = "set its resource limits"
                for res, value in rlimits:
                    resource.setrlimit(res, (value, value))
                stage = "open its output files"
                null = os.open(os.devnull, os.O_RDONLY)
                out = os.open(self.paths.stdout, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                err = os.open(self.paths.stderr, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(err, 2)
                stage = "enter its sandbox"
                os.chdir(self.paths.sandbox)
                # Python ignores SIGPIPE and we ignore SIGHUP; ignored signals survive exec, so restore them.
                signal.set_wakeup_fd(-1)
                for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                    signal.signal(s, signal.SIG_DFL)
                if ids is not None:
                    stage = f"give the sandbox to user {user}"
                    # The task may write its sandbox (not the records in .executor/, which stay ours).
                    for fd in (out, err):
                        os.fchown(fd, ids[0], ids[1])
                    os.chown(self.paths.sandbox, ids[0], ids[1])
                    stage = f"switch to user {user}"
                    os.setgroups(ids[2])
                    os.setgid(ids[1])
                    os.setuid(ids[0])
                stage = "exec"
                os.execvpe(argv[0], argv, env)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent as text
                os.write(err_w, _exec_error(stage, argv[0], exc).encode())
            finally:
                os._exit(127)
        os.close(err_w)
        chunks = []
        while chunk := os.read(err_r, 4096):
            chunks.append(chunk)
        os.close(err_r)
        if chunks:
            os.waitpid(pid, 0)
            return 0, b"".join(chunks).decode(errors="replace")
        return pid, None

    def _wait(self, pid: int) -> int:
        """Wait for the task, carrying out kill requests; return its wait status."""
        global _term_requested
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        kill_at: float | None = None
        while True:
            if _term_requested:
                _term_requested = False
                grace = self._grace()
                if not self.killed:
                    self.killed = True
                    self._signal_task(signal.SIGTERM)
                # A second request may shorten the grace, never lengthen it.
                deadline = time.monotonic() + grace
                kill_at = deadline if kill_at is None else min(kill_at, deadline)
            timeout = None if kill_at is None else max(0.0, kill_at - time.monotonic()) * 1000
            ready = {fd for fd, _ in poller.poll(timeout)}
            if self.wake_r in ready:
                os.read(self.wake_r, 512)
            if pidfd in ready:
                _, status = os.waitpid(pid, 0)
                os.close(pidfd)
                return status
            if kill_at is not None and time.monotonic() >= kill_at:
                self._signal_task(signal.SIGKILL)
                kill_at = None

    def _grace(self) -> float:
        kill = read_json(self.paths.kill) or {}
        grace = kill.get("grace_seconds", self.req.get("kill_grace_seconds", 3.0))
        return max(0.0, float(grace))

    def _signal_task(self, sig: int) -> None:
        """Signal the task's process group and, with cgroups, everything in its cgroups."""
        if self.task_pid:
            try:
                os.killpg(self.task_pid, sig)
            except OSError:
                pass  # the group is empty
        for procs in self.procs_files:
            for pid in _read_pids(procs):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

    # -- records ----------------------------------------------------------------------
    def _oom_kills(self) -> int:
        if not self.oom_events:
            return 0
        try:
            with open(self.oom_events["path"]) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == self.oom_events["key"]:
                        return int(value)
        except OSError:
            pass
        return 0

    def _record(self, *, exit_code: int | None, sig: int | None, oom: bool, message: str,
                launch_failed: bool = False) -> None:
        durable_write_json(self.paths.exit, {
            "exit_code": exit_code, "signal": sig, "killed": self.killed and not launch_failed, "oom": oom,
            "message": message, "launch_failed": launch_failed, "finished_at": time.time(),
            "task_pid": self.task_pid or None,
        })

    def _remove_cgroups(self) -> None:
        # Killed processes leave their cgroup only once the kernel has torn them down: retry briefly.
        deadline = time.monotonic() + 5.0
        pending = list(self.remove_dirs)
        while pending:
            left = []
            for d in pending:
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(d)
            pending = left
            if not pending or time.monotonic() > deadline:
                break
            self._signal_task(signal.SIGKILL)
            time.sleep(0.02)
        if pending:
            print(f"supervisor: could not remove cgroups {pending}; the agent will retry", file=sys.stderr)


def _read_pids(procs: str) -> list[int]:
    try:
        with open(procs) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _exec_error(stage: str, program: str, exc: BaseException) -> str:
    if stage == "exec":
        if isinstance(exc, FileNotFoundError):
            return f"command not found: {program}"
        if isinstance(exc, PermissionError):
            return f"command not executable: {program} (permission denied)"
        if isinstance(exc, OSError) and exc.errno == 8:  # ENOEXEC
            return f"command not executable: {program} (not a program the kernel can run)"
        return f"cannot execute {program}: {exc}"
    return f"cannot {stage} for {program}: {exc}"


if __name__ == "__main__":  # pragma: no cover - run through `dcosd executor`
    sys.exit(main(sys.argv[1:]))
