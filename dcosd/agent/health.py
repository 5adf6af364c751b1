"""Health checks run on the agent, beside the task (Mesos-native health checking).

The launch message carries the checks (``spec.health_checks``, built by the
service framework from the app's ``healthChecks``). For each running task with
checks, one asyncio task probes every ``interval_seconds``:

    COMMAND   /bin/sh -c CMD in the sandbox with the task's environment (as the task's user); exit 0 = healthy
    HTTP(S)   GET http(s)://HOST:PORT/path; 200-399 = healthy
    TCP       a connection to HOST:PORT opens

The result travels to the master as a status update of the task's current
state with ``healthy`` set — only when it changes, so the master's committed
task row always has the latest verdict and a new leader inherits it. Failures
during ``grace_seconds`` before the first success are not counted; after
``max_failures`` consecutive failures (0: never) the task is killed, as a Mesos
executor does, and the service framework replaces it.

The probes are ``Probe`` callables: tests swap them for fakes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

import aiohttp

log = logging.getLogger(__name__)

Probe = Callable[[Mapping[str, Any], "CheckTarget"], Awaitable[tuple[bool, str]]]


@dataclass
class CheckTarget:
    host: str
    ports: list[int]
    env: dict[str, str]
    sandbox: Path
    user: str | None = None


@dataclass
class CheckState:
    healthy: bool | None = None
    consecutive_failures: int = 0
    ever_healthy: bool = False
    last_message: str = ""
    tasks: list[asyncio.Task] = field(default_factory=list)


async def probe_command(check: Mapping[str, Any], target: CheckTarget) -> tuple[bool, str]:
    kwargs: dict[str, Any] = {}
    if target.user and os.geteuid() == 0:
        try:
            pw = pwd.getpwnam(target.user)
            kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        except KeyError:
            return False, f"unknown user {target.user}"
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", check["command"], cwd=str(target.sandbox), env=target.env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        start_new_session=True, **kwargs)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), float(check.get("timeout_seconds", 20)))
    except asyncio.TimeoutError:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        await proc.wait()
        return False, f"command timed out after {check.get('timeout_seconds')}s"
    if proc.returncode == 0:
        return True, ""
    return False, f"command exited {proc.returncode}: {err.decode(errors='replace').strip()[:200]}"


def _port(check: Mapping[str, Any], target: CheckTarget) -> int | None:
    if check.get("port"):
        return int(check["port"])
    i = int(check.get("port_index", 0))
    return target.ports[i] if i < len(target.ports) else None


async def probe_http(check: Mapping[str, Any], target: CheckTarget) -> tuple[bool, str]:
    port = _port(check, target)
    if port is None:
        return False, "the task has no port for this check"
    scheme = "https" if check["protocol"] == "HTTPS" else "http"
    url = f"{scheme}://{target.host}:{port}{check.get('path', '/')}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url, ssl=False, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=float(check.get("timeout_seconds", 20)))) as r:
                return (200 <= r.status < 400), f"HTTP {r.status}"
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return False, f"{url}: {exc or type(exc).__name__}"


async def probe_tcp(check: Mapping[str, Any], target: CheckTarget) -> tuple[bool, str]:
    port = _port(check, target)
    if port is None:
        return False, "the task has no port for this check"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(target.host, port),
                                           float(check.get("timeout_seconds", 20)))
    except (OSError, asyncio.TimeoutError) as exc:
        return False, f"{target.host}:{port}: {exc or type(exc).__name__}"
    writer.close()
    return True, ""


PROBES: dict[str, Probe] = {"COMMAND": probe_command, "HTTP": probe_http, "HTTPS": probe_http, "TCP": probe_tcp}

# (task_id, healthy, message) → record a status update; (task_id, message) → kill the task.
Report = Callable[[str, bool, str], Awaitable[None]]
Kill = Callable[[str, str], Awaitable[None]]


class HealthMonitor:
    def __init__(self, report: Report, kill: Kill, probes: Mapping[str, Probe] | None = None) -> None:
        self.report = report
        self.kill = kill
        self.probes = dict(probes or PROBES)
        self.states: dict[str, CheckState] = {}

    def start(self, task_id: str, checks: list[Mapping[str, Any]], target: CheckTarget) -> None:
        if not checks or task_id in self.states:
            return
        st = self.states[task_id] = CheckState()
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        # Several checks: the task is healthy when all pass; each check keeps its own rhythm.
        results: dict[int, bool | None] = {i: None for i in range(len(checks))}
        for i, check in enumerate(checks):
            st.tasks.append(loop.create_task(self._run(task_id, i, check, target, st, results, started),
                                             name=f"health-{task_id}-{i}"))

    def stop(self, task_id: str) -> None:
        st = self.states.pop(task_id, None)
        if st is not None:
            for t in st.tasks:
                t.cancel()

    def close(self) -> None:
        for task_id in list(self.states):
            self.stop(task_id)

    async def _run(self, task_id: str, i: int, check: Mapping[str, Any], target: CheckTarget, st: CheckState,
                   results: dict[int, bool | None], started: float) -> None:
        probe = self.probes[check["protocol"]]
        interval = float(check.get("interval_seconds", 60))
        grace = float(check.get("grace_seconds", 300))
        max_failures = int(check.get("max_failures", 3))
        failures = 0
        while self.states.get(task_id) is st:
            try:
                ok, message = await probe(check, target)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — a probe that breaks is a failed probe
                ok, message = False, f"{type(exc).__name__}: {exc}"
            in_grace = not st.ever_healthy and time.monotonic() - started < grace
            if ok:
                failures = 0
                st.ever_healthy = True
                results[i] = True
            elif not in_grace:
                failures += 1
                results[i] = False
            verdict: bool | None
            if any(r is False for r in results.values()):
                verdict = False
            elif all(r is True for r in results.values()):
                verdict = True
            else:
                verdict = None
            if verdict is not None and verdict != st.healthy:
                st.healthy = verdict
                st.last_message = message
                await self.report(task_id, verdict, message if not verdict else "health check passed")
            if not ok and not in_grace and max_failures and failures >= max_failures:
                log.warning("task %s failed %d consecutive health checks (%s): killing it", task_id, failures,
                            message)
                self.stop(task_id)
                await self.kill(task_id, f"killed after {failures} consecutive failed health checks: {message}")
                return
            await asyncio.sleep(interval)
