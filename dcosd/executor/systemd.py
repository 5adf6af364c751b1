"""Tasks as transient systemd units, through pystemd (design: DESIGN-systemd.md beside this file).

One transient service per task (``systemd_units.unit_name``) in ``dcosd-tasks.slice``, started with
StartTransientUnit: never a unit file, never a daemon-reload. systemd owns the processes, so tasks
outlive the agent; a new backend's ``recover()`` finds them again by name.

Threading: pystemd buses are not thread-safe, so there are two.
- the *call bus* lives in one dedicated worker thread; every blocking D-Bus call runs there;
- the *watch bus* is opened and subscribed in that thread, then handed to the event loop, which
  only ever calls ``process()`` on it when its file descriptor is readable (``loop.add_reader``).
Signals (JobRemoved, UnitRemoved, PropertiesChanged) are thus dispatched on the loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import grp
import json
import logging
import os
import pwd
import signal
from pathlib import Path
from typing import Any, Callable, TypeVar

from dcosd.executor import systemd_units as su
from dcosd.executor.base import (
    ExecutorBackend,
    ExitCallback,
    LaunchFailed,
    LaunchRequest,
    RecoveredTask,
    TaskEnded,
)
from dcosd.errors import ExecutorError
from dcosd.model.states import Reason, TaskState

log = logging.getLogger(__name__)

try:  # pystemd is an optional dependency: the backend is only chosen where systemd runs.
    from pystemd.dbusexc import DBusError
    from pystemd.dbuslib import DBus, DBusAddress, apply_signature, path_decode, path_encode
except ImportError:  # pragma: no cover - exercised on machines without pystemd
    DBus = DBusAddress = None  # type: ignore[assignment,misc]
    DBusError = OSError  # type: ignore[assignment,misc]

SYSTEMD = b"org.freedesktop.systemd1"
SYSTEMD_PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
UNIT_IFACE = b"org.freedesktop.systemd1.Unit"
SERVICE_IFACE = b"org.freedesktop.systemd1.Service"
UNIT_PATH_PREFIX = b"/org/freedesktop/systemd1/unit/"
UNIT_PATH_MATCH = path_encode(b"/org/freedesktop/systemd1/unit", su.UNIT_PREFIX.encode()) if DBus else b""
DBUS = b"org.freedesktop.DBus"
DBUS_PATH = b"/org/freedesktop/DBus"
_SIG = "type='signal',sender='org.freedesktop.systemd1',"
MATCH_RULES = [
    (_SIG + "path='/org/freedesktop/systemd1',interface='org.freedesktop.systemd1.Manager',member='JobRemoved'").encode(),
    (_SIG + "path='/org/freedesktop/systemd1',interface='org.freedesktop.systemd1.Manager',member='UnitRemoved'").encode(),
    (_SIG + "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',"
     "path_namespace='/org/freedesktop/systemd1/unit',arg0='org.freedesktop.systemd1.Unit'").encode(),
]
ALIVE_STATES = ("active", "activating", "deactivating", "reloading")
ENDED_STATES = ("inactive", "failed")
U64_MAX = (1 << 64) - 1

T = TypeVar("T")


def systemd_available(bus_address: str | None = None) -> tuple[bool, str]:
    """Whether this machine's PID 1 is systemd and its bus answers; the string says why not."""
    if DBus is None:
        return False, "pystemd is not installed (pip install pystemd; needs libsystemd-dev, pkg-config)"
    if not os.path.isdir("/run/systemd/system"):
        return False, "/run/systemd/system does not exist: the system was not booted with systemd"
    try:
        comm = Path("/proc/1/comm").read_text().strip()
    except OSError as exc:
        return False, f"cannot read /proc/1/comm: {exc}"
    if comm != "systemd":
        return False, f"PID 1 is {comm!r}, not systemd"
    try:
        bus = _open_bus(bus_address)
        try:
            version = bus.get_property(SYSTEMD, SYSTEMD_PATH, MANAGER, b"Version", b"s")
        finally:
            bus.close()
    except (DBusError, OSError) as exc:
        return False, f"systemd's D-Bus API does not answer: {exc}"
    return True, f"systemd {version.decode() if isinstance(version, bytes) else version}"


def _open_bus(address: str | None) -> Any:
    bus = DBusAddress(address.encode()) if address else DBus()
    bus.open()
    return bus


def _write_record(path: Path, data: bytes) -> None:
    """Write-then-rename without fsync: these records must survive an agent crash, which the page
    cache does; a machine crash takes the transient units with it, so durability would buy nothing."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _s(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def _props_args(props: list[su.Property]) -> list[Any]:
    """An a(sv) argument from (name, signature, value) triples (pystemd's table lacks the *Ex types)."""
    args: list[Any] = [(ord("a"), b"(sv)")]
    for name, sig, value in props:
        args += [(ord("r"), b"sv"), (ord("s"), name.encode()), (ord("v"), sig.encode())]
        args += apply_signature(sig.encode(), [_encode(value)])
        args += [(-1, None), (-1, None)]
    args += [(-1, None)]
    return args


def _encode(v: Any) -> Any:
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, (list, tuple)):
        return type(v)(_encode(x) for x in v)
    return v


@dataclasses.dataclass
class _Task:
    task_id: str
    unit: str
    sandbox: Path
    grace: float
    started: bool = False  # the start job completed: launch() returned (or recover() adopted it)
    maybe_ended: bool = False  # an end hint arrived before the start job completed
    seen_alive: bool = False  # ActiveState was seen active/activating/deactivating
    ending: bool = False  # the end is being collected; no second on_exit
    killed: bool = False
    start_job: asyncio.Future[str] | None = None


class SystemdBackend(ExecutorBackend):
    name = "systemd"

    def __init__(self, work_dir: Path, on_exit: ExitCallback, *, default_user: str = "nobody",
                 allow_root: bool = False, slice_name: str = su.TASK_SLICE, tasks_max: int = 4096,
                 bus_address: str | None = None) -> None:
        super().__init__(work_dir, on_exit)
        if DBus is None:
            raise ExecutorError("the systemd backend needs pystemd (pip install pystemd)")
        self.default_user = default_user
        self.allow_root = allow_root
        self.slice_name = slice_name
        self.tasks_max = tasks_max
        self.bus_address = bus_address
        self.layout = su.cgroup_layout()
        self.cgroup_version = "v2" if self.layout == "v2" else ("v1" if self.layout in ("v1", "hybrid") else "none")
        # Backend-owned records (root only): <unit>.json per launched task, <unit>.killed per kill asked.
        self.state_dir = self.work_dir / "systemd"
        self._tasks: dict[str, _Task] = {}  # by task id
        self._by_unit: dict[str, _Task] = {}
        self._untracked_ends: set[str] = set()  # dcosd units seen ending while not tracked (recover race)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._call_bus: Any = None  # only touched in the worker thread
        self._watch_bus: Any = None  # only touched on the loop thread once started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: asyncio.Future[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False

    # -- plumbing -----------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        await self._ensure_started()
        assert self._loop is not None and self._pool is not None
        return await self._loop.run_in_executor(self._pool, fn, *args)

    async def _ensure_started(self) -> None:
        if self._closed:
            raise ExecutorError("the systemd backend is closed")
        if self._started is None:
            self._loop = asyncio.get_running_loop()
            self._started = self._loop.create_future()
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dcosd-systemd")
            try:
                self._watch_bus = await self._loop.run_in_executor(self._pool, self._open_buses)
                self._loop.add_reader(self._watch_bus.get_fd(), self._on_readable)
                self._on_readable()  # messages queued while subscribing
                self._started.set_result(None)
            except BaseException as exc:
                self._started.set_exception(ExecutorError(f"cannot reach systemd over D-Bus: {exc}"))
        await asyncio.shield(self._started)

    def _open_buses(self) -> Any:
        """Worker thread: open the call bus, and open + subscribe the watch bus for the loop.

        The watch bus asks the bus daemon for exactly the signals it handles (AddMatch rules; the
        PropertiesChanged rule keeps only the Unit interface, not the much larger Service one) and
        takes them as the unhandled messages ``process()`` returns: no callbacks into Python from C.
        """
        self._call_bus = _open_bus(self.bus_address)
        watch = _open_bus(self.bus_address)
        for rule in MATCH_RULES:
            watch.call_method(DBUS, DBUS_PATH, DBUS, b"AddMatch", apply_signature(b"s", [rule]))
        watch.call_method(SYSTEMD, SYSTEMD_PATH, MANAGER, b"Subscribe", [])
        return watch

    def _on_readable(self) -> None:
        """Loop thread: take what the watch bus has, one message per process() (sd-bus reads one
        message at a time from the socket, so the fd stays readable while more are pending)."""
        bus = self._watch_bus
        if bus is None:
            return
        for _ in range(512):
            try:
                msg = bus.process()
            except DBusError as exc:
                log.error("systemd watch bus failed: %s", exc)
                return
            if msg.is_empty():  # nothing (more) to read; our signals all have a body
                return
            try:
                self._on_signal(msg)
            except Exception:
                log.exception("error handling a systemd signal")
        # More is pending than one turn should handle: let the loop breathe, then continue.
        assert self._loop is not None
        self._loop.call_soon(self._on_readable)

    def _on_signal(self, msg: Any) -> None:
        msg.process_reply(True)
        if msg.headers.get("Typename") != "signal":
            return
        member = msg.headers.get("Member")
        body = msg.body
        if member == b"JobRemoved":
            _id, _job, unit, result = body
            self._job_removed(_s(unit), _s(result))
        elif member == b"UnitRemoved":
            unit, _path = body
            self._end_hint(_s(unit))
        elif member == b"PropertiesChanged":
            path = msg.headers.get("Path") or b""
            if not path.startswith(UNIT_PATH_MATCH) or body[0] != UNIT_IFACE or b"ActiveState" not in body[1]:
                return
            unit = _s(path_decode(path, b"/org/freedesktop/systemd1/unit"))
            state = _s(body[1][b"ActiveState"])
            task = self._by_unit.get(unit)
            if state in ALIVE_STATES:
                if task is not None:
                    task.seen_alive = True
            # A new transient unit reports "inactive" once before it starts: not an end.
            elif state == "failed" or task is None or task.seen_alive:
                self._end_hint(unit)

    def _job_removed(self, unit: str, result: str) -> None:
        task = self._by_unit.get(unit)
        if task is not None and task.start_job is not None and not task.start_job.done():
            task.start_job.set_result(result)

    def _end_hint(self, unit: str) -> None:
        task = self._by_unit.get(unit)
        if task is None:
            if unit.startswith(su.UNIT_PREFIX):
                self._untracked_ends.add(unit)
                if len(self._untracked_ends) > 10_000:
                    self._untracked_ends.clear()
            return
        if not task.started:
            task.maybe_ended = True
            return
        self._schedule_collect(task)

    def _schedule_collect(self, task: _Task) -> None:
        if task.ending:
            return
        task.ending = True
        assert self._loop is not None
        self._loop.create_task(self._collect(task))

    async def _collect(self, task: _Task) -> None:
        """Decide whether the unit ended; if so build its TaskEnded and deliver it once."""
        try:
            ended = await self._call(self._ended_now, task)
        except Exception:
            log.exception("cannot read how %s ended", task.unit)
            ended = None
        if ended is None:  # still alive (an early hint): a later signal will tell
            task.ending = False
            return
        self._forget(task)
        await self._call(self._drop_records, task.unit)
        try:
            self.on_exit(ended)
        except Exception:
            log.exception("on_exit failed for %s", task.task_id)

    def _forget(self, task: _Task) -> None:
        self._tasks.pop(task.task_id, None)
        self._by_unit.pop(task.unit, None)

    # -- worker-thread helpers (call bus) ---------------------------------------------------
    def _unit_state(self, unit: str) -> str | None:
        """ActiveState of a loaded unit, or None when systemd no longer knows it."""
        path = path_encode(b"/org/freedesktop/systemd1/unit", unit.encode())
        try:
            load = _s(self._call_bus.get_property(SYSTEMD, path, UNIT_IFACE, b"LoadState", b"s"))
            if load == "not-found":
                return None
            return _s(self._call_bus.get_property(SYSTEMD, path, UNIT_IFACE, b"ActiveState", b"s"))
        except DBusError:
            return None

    def _ended_now(self, task: _Task) -> TaskEnded | None:
        rec = su.read_exit_record(task.sandbox)
        killed = task.killed or (self.state_dir / f"{task.unit}.killed").exists()
        if rec is not None:
            return su.ended_from_record(task.task_id, rec, killed=killed)
        state = self._unit_state(task.unit)
        if state in ALIVE_STATES:
            return None
        if state is not None:  # ended, not collected yet: systemd still has the exit status
            props = self._service_props(task.unit)
            if props:
                return su.ended_from_properties(task.task_id, props, killed=killed)
        return TaskEnded(task.task_id, TaskState.KILLED if killed else TaskState.FAILED, None, None,
                         None if killed else Reason.EXECUTOR_TERMINATED,
                         f"unit {task.unit} ended without an exit record")

    def _write_state(self, name: str, data: bytes) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_record(self.state_dir / name, data)

    def _service_props(self, unit: str) -> dict[str, Any]:
        path = path_encode(b"/org/freedesktop/systemd1/unit", unit.encode())
        get = self._call_bus.get_property
        try:
            return {"Result": _s(get(SYSTEMD, path, SERVICE_IFACE, b"Result", b"s")),
                    "ExecMainCode": get(SYSTEMD, path, SERVICE_IFACE, b"ExecMainCode", b"i"),
                    "ExecMainStatus": get(SYSTEMD, path, SERVICE_IFACE, b"ExecMainStatus", b"i")}
        except DBusError:
            return {}

    def _drop_records(self, unit: str) -> None:
        for suffix in (".json", ".killed"):
            try:
                os.unlink(self.state_dir / f"{unit}{suffix}")
            except FileNotFoundError:
                pass

    def _prepare(self, request: LaunchRequest, task: _Task) -> list[su.Property]:
        spec = request.spec
        user = request.user or self.default_user
        try:
            pw = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        except KeyError:
            raise LaunchFailed(f"unknown user {user!r}") from None
        if pw.pw_uid == 0 and not self.allow_root:
            raise LaunchFailed(f"refusing to run task {spec.task_id} as {user!r} (uid 0): root tasks are not allowed "
                               "on this agent")
        try:
            group = grp.getgrgid(pw.pw_gid).gr_name
        except KeyError:
            group = str(pw.pw_gid)
        sandbox = request.sandbox
        try:
            try:
                os.unlink(sandbox / su.EXIT_RECORD)  # a stale record would read as an instant end
            except FileNotFoundError:
                pass
            os.chown(sandbox, pw.pw_uid, pw.pw_gid)  # the task (and its recorder) write there
            self._write_state(f"{task.unit}.json", json.dumps(
                {"task_id": spec.task_id, "sandbox": str(sandbox), "grace": task.grace}).encode())
        except OSError as exc:
            raise LaunchFailed(f"cannot prepare the sandbox of task {spec.task_id}: {exc}") from exc
        config = su.UnitConfig(
            task_id=spec.task_id, argv=spec.command_line(), sandbox=sandbox, env=dict(request.env),
            user=pw.pw_name, group=group, cpus=spec.resources.get("cpus") or 0.1,
            mem_mb=spec.resources.get("mem") or 32, tasks_max=self.tasks_max,
            kill_grace_seconds=spec.kill_grace_seconds, slice_name=self.slice_name)
        return su.unit_properties(config)

    def _prepare_and_start(self, request: LaunchRequest, task: _Task) -> None:
        """Worker thread, one hop per launch: user, sandbox, launch record, StartTransientUnit."""
        props = self._prepare(request, task)
        args = apply_signature(b"ss", [task.unit.encode(), b"fail"]) + _props_args(props)
        args += [(ord("a"), b"(sa(sv))"), (-1, None)]
        try:
            self._call_bus.call_method(SYSTEMD, SYSTEMD_PATH, MANAGER, b"StartTransientUnit", args)
        except DBusError as exc:
            self._drop_records(task.unit)
            raise LaunchFailed(f"systemd refused unit {task.unit} for task {task.task_id}: {exc}") from exc

    def _manager(self, method: bytes, signature: bytes, values: list[Any]) -> Any:
        return self._call_bus.call_method(SYSTEMD, SYSTEMD_PATH, MANAGER, method,
                                          apply_signature(signature, _encode(values))).body

    def _launch_failure(self, task: _Task, job_result: str) -> LaunchFailed | None:
        """Why the start job did not complete, or None when the command did run (and already ended)."""
        rec = su.read_exit_record(task.sandbox)
        if job_result == "failed" and rec is not None and not rec.setup_failed():
            return None
        why = rec.describe() if rec is not None else f"start job {job_result}"
        self._drop_records(task.unit)
        return LaunchFailed(f"systemd could not start {task.unit} for task {task.task_id}: {why}")

    # -- the protocol -------------------------------------------------------------------------
    async def launch(self, request: LaunchRequest) -> None:
        spec = request.spec
        if spec.task_id in self._tasks:
            raise LaunchFailed(f"task {spec.task_id} is already running")
        await self._ensure_started()
        assert self._loop is not None
        unit = su.unit_name(spec.task_id)
        task = _Task(spec.task_id, unit, Path(request.sandbox), spec.kill_grace_seconds)
        task.start_job = self._loop.create_future()
        # Registered before the call, so the job's JobRemoved cannot arrive unseen.
        self._tasks[spec.task_id] = task
        self._by_unit[unit] = task
        try:
            await self._call(self._prepare_and_start, request, task)
            result = await task.start_job
            if result != "done":
                failure = await self._call(self._launch_failure, task, result)
                if failure is not None:
                    raise failure
                # The command ran and ended before systemd saw the exec succeed (a race inside
                # Type=exec for commands that exit at once): launched; its end follows by on_exit.
                task.maybe_ended = True
        except BaseException:
            self._forget(task)
            raise
        task.started = True
        if task.maybe_ended:
            self._schedule_collect(task)

    async def kill(self, task_id: str, grace_seconds: float) -> None:
        task = self._tasks.get(task_id)
        if task is None or task.killed:
            return
        task.killed = True
        await self._call(self._write_state, f"{task.unit}.killed", b"")
        try:
            if abs(grace_seconds - task.grace) < 1e-3:
                # The unit's TimeoutStopSec is this grace: systemd sends SIGTERM, SIGKILL after it.
                await self._call(self._manager, b"StopUnit", b"ss", [task.unit, "replace"])
            else:
                await self._call(self._manager, b"KillUnit", b"ssi", [task.unit, "all", int(signal.SIGTERM)])
                assert self._loop is not None
                handle = self._loop.call_later(max(0.0, grace_seconds), self._sigkill_later, task)
                self._timers.add(handle)
        except DBusError as exc:  # the unit is already gone: its end arrives (or arrived) by signal
            log.info("kill %s: %s", task.unit, exc)

    def _sigkill_later(self, task: _Task) -> None:
        if self._by_unit.get(task.unit) is not task or self._closed:
            return

        async def go() -> None:
            try:
                await self._call(self._manager, b"KillUnit", b"ssi", [task.unit, "all", int(signal.SIGKILL)])
            except DBusError:
                pass

        assert self._loop is not None
        self._loop.create_task(go())

    async def stats(self, task_id: str) -> dict[str, float]:
        task = self._tasks.get(task_id)
        if task is None:
            raise ExecutorError(f"task {task_id} is not running")
        return await self._call(self._stats, task.unit)

    def _stats(self, unit: str) -> dict[str, float]:
        path = path_encode(b"/org/freedesktop/systemd1/unit", unit.encode())
        get = self._call_bus.get_property
        try:
            cpu = get(SYSTEMD, path, SERVICE_IFACE, b"CPUUsageNSec", b"t")
            mem = get(SYSTEMD, path, SERVICE_IFACE, b"MemoryCurrent", b"t")
            limit = get(SYSTEMD, path, SERVICE_IFACE, b"MemoryMax", b"t")
        except DBusError as exc:
            raise ExecutorError(f"no statistics for {unit}: {exc}") from exc
        out = {"cpu_seconds": 0.0 if cpu == U64_MAX else cpu / 1e9,
               "mem_bytes": 0.0 if mem == U64_MAX else float(mem)}
        if limit != U64_MAX:
            out["mem_limit_bytes"] = float(limit)
        return out

    async def list(self) -> list[str]:
        return sorted(t.task_id for t in self._tasks.values() if t.started)

    async def recover(self, known_task_ids: set[str]) -> dict[str, RecoveredTask]:
        await self._ensure_started()
        found = await self._call(self._scan, set(known_task_ids))
        out: dict[str, RecoveredTask] = {}
        for task_id, (running, task, ended) in found.items():
            if running:
                assert task is not None
                task.started = True
                self._tasks[task_id] = task
                self._by_unit[task.unit] = task
                out[task_id] = RecoveredTask(task_id, True)
                if task.unit in self._untracked_ends:  # it ended while we were listing
                    self._schedule_collect(task)
            else:
                out[task_id] = RecoveredTask(task_id, False, ended)
        self._untracked_ends.clear()
        return out

    def _scan(self, known: set[str]) -> dict[str, tuple[bool, _Task | None, TaskEnded | None]]:
        """Worker thread: every dcosd unit systemd knows, every launch record, every known id."""
        units = self._manager(b"ListUnitsByPatterns", b"asas", [[], [su.UNIT_PATTERN]])
        live: dict[str, str] = {}  # unit → active state
        desc_ids: dict[str, str] = {}
        for row in units or []:
            name, desc, _load, active = _s(row[0]), _s(row[1]), _s(row[2]), _s(row[3])
            live[name] = active
            tid = su.task_id_from_description(desc)
            if tid is not None and su.unit_name(tid) == name:
                desc_ids[tid] = name
        records: dict[str, dict[str, Any]] = {}
        if self.state_dir.is_dir():
            for p in self.state_dir.glob("*.json"):
                try:
                    rec = json.loads(p.read_text())
                    if su.unit_name(rec["task_id"]) == p.name[:-5]:
                        records[rec["task_id"]] = rec
                except (OSError, ValueError, KeyError, TypeError):
                    log.warning("unreadable launch record %s", p)
        out: dict[str, tuple[bool, _Task | None, TaskEnded | None]] = {}
        for task_id in known | set(desc_ids) | set(records):
            unit = su.unit_name(task_id)
            rec = records.get(task_id, {})
            try:
                sandbox = Path(rec["sandbox"]) if "sandbox" in rec else self.sandbox_path(task_id)
            except ExecutorError:
                continue
            task = _Task(task_id, unit, sandbox, float(rec.get("grace", 0.0)))
            task.killed = (self.state_dir / f"{unit}.killed").exists()
            if live.get(unit) in ALIVE_STATES:
                out[task_id] = (True, task, None)
                continue
            ended = self._ended_now(task)
            if ended is None:  # became alive between the listing and now: adopt it
                out[task_id] = (True, task, None)
                continue
            out[task_id] = (False, None, ended)
            # Reported here, once; the sandbox's exit record stays as the lasting trace.
            self._drop_records(unit)
        return out

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for h in self._timers:
            h.cancel()
        if self._watch_bus is not None and self._loop is not None:
            try:
                self._loop.remove_reader(self._watch_bus.get_fd())
            finally:
                self._watch_bus.close()
                self._watch_bus = None
        if self._pool is not None:
            def close_call_bus() -> None:
                if self._call_bus is not None:
                    self._call_bus.close()
                    self._call_bus = None
            await asyncio.get_running_loop().run_in_executor(self._pool, close_call_bus)
            self._pool.shutdown(wait=False)

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "cgroup_version": self.cgroup_version, "cgroup_layout": self.layout,
                "slice": self.slice_name, "default_user": self.default_user}
