"""Pure parts of the systemd backend: unit names, unit properties and the exit record.

No D-Bus here: these functions turn a launch request into the (name, D-Bus signature, value)
triples of StartTransientUnit, and the exit record a unit leaves behind into a TaskEnded.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal as signal_mod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from dcosd.executor.base import TaskEnded, ended_from_wait_status

UNIT_PREFIX = "dcosd-"
UNIT_PATTERN = "dcosd-*.service"
TASK_SLICE = "dcosd-tasks.slice"
# Written by the unit's ExecStopPost, as the task's user, into the task's sandbox.
EXIT_RECORD = ".dcosd-exit"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_UNIT_UNSAFE = re.compile(r"[^A-Za-z0-9:_.\-]")

# Exit statuses systemd itself uses when it cannot set a process up (systemd.exec(5)).
SYSTEMD_EXIT_NAMES = {
    200: "CHDIR", 201: "NICE", 202: "FDS", 203: "EXEC", 204: "MEMORY", 205: "LIMITS", 206: "OOM_ADJUST",
    207: "SIGNAL_MASK", 208: "STDIN", 209: "STDOUT", 210: "CHROOT", 211: "IOPRIO", 212: "TIMERSLACK",
    213: "SECUREBITS", 214: "SETSCHEDULER", 215: "CPUAFFINITY", 216: "GROUP", 217: "USER",
    218: "CAPABILITIES", 219: "CGROUP", 220: "SETSID", 221: "CONFIRM", 222: "STDERR", 224: "PAM",
    225: "NETWORK", 226: "NAMESPACE", 227: "NO_NEW_PRIVILEGES", 228: "SECCOMP", 229: "SELINUX_CONTEXT",
    230: "PERSONALITY", 231: "APPARMOR_PROFILE", 232: "ADDRESS_FAMILIES", 233: "RUNTIME_DIRECTORY",
    235: "CHOWN", 236: "SMACK_PROCESS_LABEL", 237: "KEYRING", 238: "STATE_DIRECTORY",
    239: "CACHE_DIRECTORY", 240: "LOGS_DIRECTORY", 241: "CONFIGURATION_DIRECTORY", 242: "NUMA_POLICY",
    243: "CREDENTIALS", 245: "BPF",
}

# The ExecStopPost recorder. It runs as the task's user after every process of the unit is gone
# (KillMode=control-group stops the rest first) and before the unit turns inactive, so the record
# exists whenever systemd reports the unit ended, and it outlives the unit's garbage collection.
# It also reads the cgroup's OOM-kill counter: on cgroup v1 systemd cannot see OOM kills itself
# (Result=oom-kill needs v2's memory.events), while memory.oom_control counts them.
# Written to a temporary name then renamed, so a reader never sees half a record.
RECORDER = r"""
o=0
while IFS=: read -r _ c p; do
  f=
  case ",$c," in
    *,memory,*) f="/sys/fs/cgroup/memory$p/memory.oom_control" ;;
    ,,) f="/sys/fs/cgroup$p/memory.events" ;;
  esac
  if [ -n "$f" ] && [ -r "$f" ]; then
    while read -r k v; do [ "$k" = oom_kill ] && [ "$v" != 0 ] && o=$v; done < "$f"
  fi
done < /proc/self/cgroup
printf '%s %s %s %s\n' "${SERVICE_RESULT:--}" "${EXIT_CODE:--}" "${EXIT_STATUS:--}" "$o" > "$1.tmp" &&
  /bin/mv -f "$1.tmp" "$1"
""".strip()


def unit_name(task_id: str) -> str:
    """``dcosd-<readable id>-<hash>.service``: unique per task id, valid, at most ~110 characters.

    Characters systemd does not allow in unit names become ``_``; the hash of the full id keeps
    names of ids that differ only there (or beyond the 80 readable characters) apart.
    """
    readable = _UNIT_UNSAFE.sub("_", task_id)[:80]
    digest = hashlib.sha256(task_id.encode()).hexdigest()[:10]
    return f"{UNIT_PREFIX}{readable}-{digest}.service"


def description(task_id: str) -> str:
    return f"dcosd task {task_id}"


def task_id_from_description(text: str) -> str | None:
    prefix = "dcosd task "
    return text[len(prefix):] if text.startswith(prefix) else None


def resolve_executable(argv0: str, env: Mapping[str, str], cwd: Path) -> str:
    """An absolute path for argv[0] where one can be found; otherwise argv[0] unchanged, so that
    systemd reports the failure (203/EXEC) in its own words."""
    if "/" in argv0:
        return argv0 if argv0.startswith("/") else str(cwd / argv0)
    for d in env.get("PATH", DEFAULT_PATH).split(":"):
        if d.startswith("/"):
            p = os.path.join(d, argv0)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return p
    return argv0


@dataclass(frozen=True)
class UnitConfig:
    task_id: str
    argv: list[str]
    sandbox: Path
    env: Mapping[str, str]
    user: str
    group: str
    cpus: float
    mem_mb: float
    tasks_max: int
    kill_grace_seconds: float
    slice_name: str = TASK_SLICE


Property = tuple[str, str, Any]


def unit_properties(c: UnitConfig) -> list[Property]:
    """The transient unit of one task, as StartTransientUnit (name, signature, value) triples."""
    exe = resolve_executable(c.argv[0], c.env, c.sandbox)
    record = str(c.sandbox / EXIT_RECORD)
    props: list[Property] = [
        ("Description", "s", description(c.task_id)),
        ("Slice", "s", c.slice_name),
        # exec: the start job completes once execve() succeeded, so launch() returning means the
        # command runs, and a missing binary fails the job (203/EXEC) instead of a later exit.
        ("Type", "s", "exec"),
        # no-env-expand: the argv is the task's, byte for byte; systemd must not expand $VARs in it.
        ("ExecStartEx", "a(sasas)", [(exe, list(c.argv), ["no-env-expand"])]),
        ("ExecStopPostEx", "a(sasas)",
         [("/bin/sh", ["/bin/sh", "-c", RECORDER, "dcosd-exit", record], ["ignore-failure", "no-env-expand"])]),
        ("WorkingDirectory", "s", str(c.sandbox)),
        ("Environment", "as", [f"{k}={v}" for k, v in c.env.items()]),
        ("User", "s", c.user),
        ("Group", "s", c.group),
        ("StandardInput", "s", "null"),
        ("StandardOutputFileToAppend", "s", str(c.sandbox / "stdout")),
        ("StandardErrorFileToAppend", "s", str(c.sandbox / "stderr")),
        ("CPUAccounting", "b", True),
        ("MemoryAccounting", "b", True),
        ("TasksAccounting", "b", True),
        ("CPUQuotaPerSecUSec", "t", max(1000, int(round(c.cpus * 1_000_000)))),
        # MemoryMax: memory.max on v2, memory.limit_in_bytes on v1 (systemd maps it there too).
        ("MemoryMax", "t", int(c.mem_mb * 1024 * 1024)),
        # memory.swap.max on v2; v1 has no per-cgroup swap limit through systemd (ignored there).
        ("MemorySwapMax", "t", 0),
        ("TasksMax", "t", c.tasks_max),
        ("KillMode", "s", "control-group"),
        ("SendSIGKILL", "b", True),
        ("TimeoutStopUSec", "t", int(c.kill_grace_seconds * 1_000_000)),
        ("CollectMode", "s", "inactive-or-failed"),
    ]
    return props


@dataclass(frozen=True)
class ExitRecord:
    """What the recorder wrote: $SERVICE_RESULT $EXIT_CODE $EXIT_STATUS and the OOM-kill count."""

    result: str  # success, exit-code, signal, core-dump, timeout, oom-kill, ...
    code: str  # exited, killed, dumped
    status: str  # a number when exited, a signal name (TERM) when killed or dumped
    oom_kills: int

    @classmethod
    def parse(cls, text: str) -> "ExitRecord | None":
        parts = text.split()
        if len(parts) != 4 or not parts[3].isdigit():
            return None
        return cls(parts[0], parts[1], parts[2], int(parts[3]))

    def exit_code(self) -> int | None:
        if self.code == "exited" and self.status.lstrip("-").isdigit():
            return int(self.status)
        return None

    def signal(self) -> int | None:
        if self.code not in ("killed", "dumped"):
            return None
        return signal_number(self.status)

    def setup_failed(self) -> bool:
        """systemd could not set the command up (chdir, user, exec...): it never ran.

        Ambiguous only for a command that itself exits with one of these codes at once.
        """
        code = self.exit_code()
        return code in SYSTEMD_EXIT_NAMES or self.code not in ("exited", "killed", "dumped")

    def describe(self) -> str:
        status = self.status
        code = self.exit_code()
        if code is not None and code in SYSTEMD_EXIT_NAMES:
            status = f"{code}/{SYSTEMD_EXIT_NAMES[code]}"
        return f"Result={self.result}, status={status}"


def signal_number(name: str) -> int | None:
    if name.isdigit():
        return int(name)
    try:
        return int(signal_mod.Signals["SIG" + name.upper().removeprefix("SIG")])
    except KeyError:
        return None


def read_exit_record(sandbox: Path) -> ExitRecord | None:
    """Read the record without following a link the task may have planted (the sandbox is the task's)."""
    try:
        fd = os.open(sandbox / EXIT_RECORD, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        data = os.read(fd, 256)
    finally:
        os.close(fd)
    return ExitRecord.parse(data.decode("ascii", "replace"))


def ended_from_record(task_id: str, rec: ExitRecord, *, killed: bool) -> TaskEnded:
    oom = rec.result == "oom-kill" or rec.oom_kills > 0
    return ended_from_wait_status(task_id, exit_code=rec.exit_code(), signal=rec.signal(), killed=killed, oom=oom)


def ended_from_properties(task_id: str, props: Mapping[str, Any], *, killed: bool) -> TaskEnded:
    """Fallback when no record exists: the Service properties last seen over D-Bus.

    ExecMainCode is a CLD_* code: 1 exited, 2 killed, 3 dumped; ExecMainStatus the status or signal.
    """
    result = props.get("Result", "")
    code = props.get("ExecMainCode", 0)
    status = props.get("ExecMainStatus", 0)
    if code == 1:
        return ended_from_wait_status(task_id, exit_code=int(status), signal=None, killed=killed,
                                      oom=result == "oom-kill")
    if code in (2, 3):
        return ended_from_wait_status(task_id, exit_code=None, signal=int(status), killed=killed,
                                      oom=result == "oom-kill")
    ended = ended_from_wait_status(task_id, exit_code=None, signal=None, killed=killed, oom=result == "oom-kill")
    return ended


def cgroup_layout(root: Path = Path("/sys/fs/cgroup")) -> str:
    """v2 (unified only), hybrid (v1 controllers + cgroup2 at unified/), v1, or none."""
    if (root / "cgroup.controllers").exists():
        return "v2"
    if (root / "memory").is_dir() or (root / "cpu").is_dir():
        return "hybrid" if (root / "unified" / "cgroup.controllers").exists() else "v1"
    return "none"
