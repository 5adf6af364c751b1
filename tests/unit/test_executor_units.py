"""Pure parts of the supervised backends: hierarchy detection, names, v2 limit files, outcomes, choice."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from dcosd.errors import ExecutorError
from dcosd.executor import cgroupfs
from dcosd.executor import sandbox as sb
from dcosd.executor.base import ExecutorBackend
from dcosd.executor.process import ProcessBackend
from dcosd.executor.select import choose_backend
from dcosd.executor.supervised import ended_from_record
from dcosd.executor.supervisor import _exec_error
from dcosd.model.states import Reason, TaskState

V1_SEPARATE = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

V1_COMOUNTED = """\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory
"""


def test_v1_separate_mounts_are_found():
    hierarchy, why = cgroupfs.detect(V1_SEPARATE)
    assert hierarchy is not None and hierarchy.version == "v1"
    assert hierarchy.mounts["cpu"] == Path("/sys/fs/cgroup/cpu")
    assert hierarchy.mounts["pids"] == Path("/sys/fs/cgroup/pids")
    assert "v1" in why


def test_v1_comounted_cpu_and_cpuacct_share_one_directory():
    hierarchy, _ = cgroupfs.detect(V1_COMOUNTED)
    assert hierarchy is not None
    cg = cgroupfs.task_cgroup(hierarchy, "dcosd", "web.1")
    assert cg.dirs() == [Path("/sys/fs/cgroup/cpu,cpuacct/dcosd/web.1"), Path("/sys/fs/cgroup/memory/dcosd/web.1")]
    assert cg.oom_events() == {"path": "/sys/fs/cgroup/memory/dcosd/web.1/memory.oom_control", "key": "oom_kill"}


def test_pure_v2_needs_its_controllers(tmp_path):
    info = f"30 1 0:26 / {tmp_path} rw - cgroup2 cgroup2 rw\n"
    (tmp_path / "cgroup.controllers").write_text("io pids\n")
    hierarchy, why = cgroupfs.detect(info)
    assert hierarchy is None and "no usable cgroup hierarchy" in why
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    hierarchy, _ = cgroupfs.detect(info)
    assert hierarchy == cgroupfs.Hierarchy("v2", {"unified": tmp_path})


def test_v2_limits_are_written_and_controllers_delegated(tmp_path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    cg = cgroupfs.task_cgroup(cgroupfs.Hierarchy("v2", {"unified": tmp_path}), "dcosd", "db.7")
    (tmp_path / "dcosd").mkdir()
    (tmp_path / "dcosd" / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "dcosd" / "db.7").mkdir()
    (tmp_path / "dcosd" / "db.7" / "memory.swap.max").write_text("max\n")
    cg.create(cpus=1.5, mem_mb=128)
    d = tmp_path / "dcosd" / "db.7"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (tmp_path / "dcosd" / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (d / "cpu.max").read_text() == "150000 100000"
    assert (d / "memory.max").read_text() == str(128 * 1024 * 1024)
    assert (d / "memory.swap.max").read_text() == "0"
    (d / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (d / "memory.current").write_text("4096\n")
    assert cg.usage() == {"cpu_seconds": 2.5, "mem_bytes": 4096.0, "mem_limit_bytes": float(128 * 1024 * 1024)}
    assert cg.oom_events() == {"path": str(d / "memory.events"), "key": "oom_kill"}


@pytest.mark.parametrize("task_id, expected", [
    ("web.1", "web.1"),
    ("app_x-2", "app_x-2"),
])
def test_safe_ids_name_their_cgroup_directly(task_id, expected):
    assert cgroupfs.cgroup_name(task_id) == expected


@pytest.mark.parametrize("task_id", ["web:1@host", "tasks", "cgroup.procs", "memory.limit_in_bytes"])
def test_unsafe_ids_are_renamed_uniquely(task_id):
    name = cgroupfs.cgroup_name(task_id)
    assert name.startswith("task-") and "/" not in name and ":" not in name and "@" not in name
    assert name != cgroupfs.cgroup_name(task_id + "x")


def test_outcomes_from_exit_records():
    def ended(shell=False, **record):
        return ended_from_record("t", record, shell=shell)

    assert ended(exit_code=0).state is TaskState.FINISHED
    assert (ended(exit_code=3).state, ended(exit_code=3).exit_code) == (TaskState.FAILED, 3)
    assert "command not found" in ended(shell=True, exit_code=127).message
    assert "not executable" in ended(shell=True, exit_code=126).message
    assert "127" in ended(shell=False, exit_code=127).message  # argv tasks: 127 is the program's own status
    oom = ended(signal=signal.SIGKILL, oom=True)
    assert (oom.state, oom.reason) == (TaskState.FAILED, Reason.CONTAINER_LIMITATION_MEMORY)
    assert ended(signal=signal.SIGTERM, killed=True).state is TaskState.KILLED
    failed = ended(launch_failed=True, message="command not found: x")
    assert (failed.reason, failed.message) == (Reason.CONTAINER_LAUNCH_FAILED, "command not found: x")
    gone = ended(vanished=True, message="the task's supervisor disappeared")
    assert (gone.state, gone.reason) == (TaskState.FAILED, Reason.EXECUTOR_TERMINATED)


def test_exec_errors_say_what_went_wrong():
    assert _exec_error("exec", "nosuchcmd", FileNotFoundError(2, "x")) == "command not found: nosuchcmd"
    assert _exec_error("exec", "./x", PermissionError(13, "x")).startswith("command not executable: ./x")
    assert _exec_error("exec", "./x", OSError(8, "Exec format error")).startswith("command not executable")
    assert _exec_error("join its cgroups", "app", OSError(28, "No space")).startswith("cannot join its cgroups for app")


def test_sandbox_paths_are_under_the_work_dir_and_refuse_traversal(tmp_path):
    backend = ProcessBackend(tmp_path, lambda e: None)
    assert backend.sandbox_path("web.1") == tmp_path / "sandboxes" / "web.1"
    for bad in ("..", "a/b", "", "x/../y"):
        with pytest.raises(ExecutorError):
            backend.sandbox_path(bad)
    paths = sb.Paths(backend.sandbox_path("web.1"))
    assert paths.exit == tmp_path / "sandboxes" / "web.1" / ".executor" / "exit.json"


def test_records_are_written_durably_and_read_back(tmp_path):
    sb.durable_write_json(tmp_path / "r.json", {"exit_code": 7})
    assert sb.read_json(tmp_path / "r.json") == {"exit_code": 7}
    assert sb.read_json(tmp_path / "absent.json") is None
    (tmp_path / "bad.json").write_text("[1, 2")
    assert sb.read_json(tmp_path / "bad.json") is None


def test_start_ticks_identify_a_live_process():
    assert sb.start_ticks(os.getpid()) == sb.start_ticks(os.getpid())
    assert sb.start_ticks(os.getpid()) > 0
    assert sb.start_ticks(2**22 + 1) is None  # beyond pid_max


def test_choose_backend(tmp_path):
    backend, why = choose_backend(None, tmp_path, lambda e: None)
    assert isinstance(backend, ExecutorBackend) and backend.name in why
    backend, why = choose_backend("process", tmp_path, lambda e: None)
    assert backend.name == "process" and "configured" in why
    with pytest.raises(ExecutorError, match="unknown executor backend"):
        choose_backend("docker", tmp_path, lambda e: None)
    if not Path("/run/systemd/system").is_dir():
        with pytest.raises(ExecutorError, match="systemd executor backend was asked for but cannot run here"):
            choose_backend("systemd", tmp_path, lambda e: None)
        assert backend.name != "systemd"
