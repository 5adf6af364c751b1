"""cgroup filesystems: which hierarchy this host has, and one task's cgroup in it.

v1 (separate hierarchies per controller, as on this kind of host without
systemd): the task gets ``<mount of ctrl>/<parent>/<name>`` for each of cpu,
cpuacct, memory, pids (co-mounted controllers share a directory). The tree is
managed with cgroupspy; limits are single-line writes to control files.

v2 (one unified hierarchy, controllers enabled): the task gets
``<mount>/<parent>/<name>`` with cpu.max, memory.max and memory.swap.max=0;
the controllers are enabled in each ancestor's cgroup.subtree_control.

Only the kernel knows whether a write is accepted, so every write goes straight
to the file and a refusal surfaces as OSError naming the file.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import re
import signal
from pathlib import Path
from typing import Mapping

from cgroupspy.nodes import Node

CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
REQUIRED = ("cpu", "cpuacct", "memory")
CFS_PERIOD_US = 100_000
MB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    version: str  # "v1" or "v2"
    # v1: controller -> its mount point; v2: {"unified": the mount point}
    mounts: Mapping[str, Path]

    def describe(self) -> str:
        if self.version == "v2":
            return f"cgroup v2 at {self.mounts['unified']}"
        return "cgroup v1 (" + ", ".join(f"{c} at {p}" for c, p in sorted(self.mounts.items())) + ")"


def parse_mountinfo(text: str) -> tuple[dict[str, Path], list[Path]]:
    """The v1 controller mounts and the cgroup2 mounts listed in /proc/self/mountinfo."""
    v1: dict[str, Path] = {}
    v2: list[Path] = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        fields, extra = head.split(), tail.split()
        if len(fields) < 5 or len(extra) < 3:
            continue
        mount_point = Path(fields[4].replace("\\040", " "))
        if extra[0] == "cgroup2":
            v2.append(mount_point)
        elif extra[0] == "cgroup" and fields[3] == "/":  # a bind mount of a sub-tree cannot host ours
            for option in extra[2].split(","):
                if option in CONTROLLERS:
                    v1.setdefault(option, mount_point)
    return v1, v2


def detect(mountinfo: str | None = None) -> tuple[Hierarchy | None, str]:
    """The hierarchy to put tasks in, and a sentence saying why (or why there is none)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError as exc:
            return None, f"cannot read /proc/self/mountinfo: {exc}"
    v1, v2 = parse_mountinfo(mountinfo)
    if all(c in v1 for c in REQUIRED):
        # A hybrid host binds the controllers to v1; its cgroup2 mount then has none of them.
        return Hierarchy("v1", {c: p for c, p in v1.items()}), "cgroup v1 controllers cpu, cpuacct, memory are mounted"
    for root in v2:
        try:
            available = set((root / "cgroup.controllers").read_text().split())
        except OSError:
            continue
        if {"cpu", "memory"} <= available:
            return Hierarchy("v2", {"unified": root}), f"cgroup v2 at {root} has the cpu and memory controllers"
    missing = [c for c in REQUIRED if c not in v1]
    return None, (f"no usable cgroup hierarchy: v1 lacks {', '.join(missing)} and no cgroup2 mount "
                  "offers the cpu and memory controllers")


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# Names a task's directory must not take: the control files of a cgroup directory.
_CONTROL_FILE = re.compile(r"^(tasks|notify_on_release|release_agent|(cgroup|cpu|cpuacct|cpuset|memory|pids|io|blkio"
                           r"|devices|freezer|hugetlb|net_cls|net_prio|perf_event|rdma|misc)\..*)$")


def cgroup_name(task_id: str) -> str:
    """A directory name for the task: its id with unsafe characters replaced, kept unique by a hash."""
    safe = _UNSAFE.sub("_", task_id)
    if safe != task_id or _CONTROL_FILE.match(safe):
        safe = f"task-{safe[:180]}-{hashlib.sha1(task_id.encode()).hexdigest()[:8]}"
    return safe


def _write(path: Path, value: object) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def _read_key(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        pass
    return None


class TaskCgroup:
    """One task's cgroup(s). Subclasses know where the files are for their version."""

    def __init__(self, hierarchy: Hierarchy, parent: str, name: str) -> None:
        self.hierarchy = hierarchy
        self.parent = parent.strip("/")
        self.name = name

    def dirs(self) -> list[Path]:
        raise NotImplementedError

    def create(self, cpus: float, mem_mb: float) -> None:
        raise NotImplementedError

    def oom_events(self) -> dict[str, str]:
        """Where the kernel counts this cgroup's OOM kills: {"path", "key"}."""
        raise NotImplementedError

    def usage(self) -> dict[str, float]:
        raise NotImplementedError

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs()]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files():
            try:
                found.update(int(x) for x in procs.read_text().split())
            except (OSError, ValueError):
                pass
        return found

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except OSError:
                pass

    def remove(self) -> bool:
        """Remove the (empty) directories; False if some still hold processes."""
        ok = True
        for d in self.dirs():
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                ok = False
        return ok

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs())


class V1TaskCgroup(TaskCgroup):
    def _dir(self, controller: str) -> Path:
        return self.hierarchy.mounts[controller] / self.parent / self.name

    def dirs(self) -> list[Path]:
        seen: list[Path] = []
        for c in CONTROLLERS:
            if c in self.hierarchy.mounts and self._dir(c) not in seen:
                seen.append(self._dir(c))
        return seen

    def create(self, cpus: float, mem_mb: float) -> None:
        for mount in dict.fromkeys(self.hierarchy.mounts[c] for c in CONTROLLERS if c in self.hierarchy.mounts):
            node = Node(str(mount.parent).encode())
            node = Node(mount.name.encode(), parent=node)
            for component in [*self.parent.split("/"), self.name]:
                if not component:
                    continue
                # create_cgroup tolerates an existing directory: parents are shared by all tasks.
                node = node.create_cgroup(component)
        cpu = self._dir("cpu")
        _write(cpu / "cpu.cfs_period_us", CFS_PERIOD_US)
        _write(cpu / "cpu.cfs_quota_us", max(1000, round(cpus * CFS_PERIOD_US)))
        _write(cpu / "cpu.shares", max(2, round(cpus * 1024)))
        mem = self._dir("memory")
        limit = int(mem_mb * MB)
        _write(mem / "memory.limit_in_bytes", limit)
        if (mem / "memory.memsw.limit_in_bytes").exists():
            # memory+swap at the same limit: the task cannot swap beyond its memory.
            _write(mem / "memory.memsw.limit_in_bytes", limit)

    def oom_events(self) -> dict[str, str]:
        return {"path": str(self._dir("memory") / "memory.oom_control"), "key": "oom_kill"}

    def usage(self) -> dict[str, float]:
        stats = {
            "cpu_seconds": (_read_int(self._dir("cpuacct") / "cpuacct.usage") or 0) / 1e9,
            "mem_bytes": float(_read_int(self._dir("memory") / "memory.usage_in_bytes") or 0),
        }
        limit = _read_int(self._dir("memory") / "memory.limit_in_bytes")
        if limit is not None and limit < 1 << 62:  # "unlimited" reads as a huge number
            stats["mem_limit_bytes"] = float(limit)
        return stats


class V2TaskCgroup(TaskCgroup):
    def _dir(self) -> Path:
        return self.hierarchy.mounts["unified"] / self.parent / self.name

    def dirs(self) -> list[Path]:
        return [self._dir()]

    def create(self, cpus: float, mem_mb: float) -> None:
        # Each ancestor must delegate the controllers to its children before the task's cgroup has them.
        level = self.hierarchy.mounts["unified"]
        for component in [*self.parent.split("/"), self.name]:
            if not component:
                continue
            available = _read_words(level / "cgroup.controllers")
            enabled = _read_words(level / "cgroup.subtree_control")
            wanted = [c for c in ("cpu", "memory", "pids") if c in available and c not in enabled]
            if wanted:
                _write(level / "cgroup.subtree_control", " ".join("+" + c for c in wanted))
            level = level / component
            level.mkdir(exist_ok=True)
        d = self._dir()
        _write(d / "cpu.max", f"{max(1000, round(cpus * CFS_PERIOD_US))} {CFS_PERIOD_US}")
        _write(d / "memory.max", int(mem_mb * MB))
        if (d / "memory.swap.max").exists():
            _write(d / "memory.swap.max", 0)

    def oom_events(self) -> dict[str, str]:
        return {"path": str(self._dir() / "memory.events"), "key": "oom_kill"}

    def usage(self) -> dict[str, float]:
        d = self._dir()
        stats = {
            "cpu_seconds": (_read_key(d / "cpu.stat", "usage_usec") or 0) / 1e6,
            "mem_bytes": float(_read_int(d / "memory.current") or 0),
        }
        limit = _read_int(d / "memory.max")
        if limit is not None:
            stats["mem_limit_bytes"] = float(limit)
        return stats


def task_cgroup(hierarchy: Hierarchy, parent: str, task_id: str) -> TaskCgroup:
    cls = V1TaskCgroup if hierarchy.version == "v1" else V2TaskCgroup
    return cls(hierarchy, parent, cgroup_name(task_id))
