"""A real systemd 252 as PID 1 of fresh pid + mount + cgroup namespaces, for system tests.

Built on /work/shared/recipes/SYSTEMD-SANDBOX.md. The two traps it guards against:

- systemd must be confined to a cgroup of its own (NAME, created in every hierarchy) and must see a
  fresh tmpfs on /sys/fs/cgroup with the controllers mounted again inside its cgroup namespace;
  otherwise it builds init.scope/system.slice at the host's cgroup roots and remounts the host's
  /sys/fs/cgroup tmpfs read-only (the superblock is shared across mount namespaces).
- the systemd-tmpfiles units must be masked (in a private tmpfs /run) or it empties the host's /tmp.

On top of the recipe, /proc is mounted fresh inside (``unshare --mount-proc``) so that pids seen by
systemd and by processes run inside match the sandbox's pid namespace (/proc/1/comm is systemd).

Usage::

    sb = SystemdSandbox()
    sb.start()                 # returns once `systemctl is-system-running` is running/degraded
    sb.run(["systemctl", "list-units"])
    sb.stop()                  # always safe to call, idempotent; also registered with atexit

systemd's console log goes to a temporary directory, removed by stop() unless
DCOSD_SANDBOX_KEEP_LOGS is set; a sandbox that fails to start puts its tail in the exception.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SYSTEMD = "/lib/systemd/systemd"
# Masked (linked to /dev/null in the private /run) before systemd starts. The tmpfiles units empty the
# host's /tmp; the others would write host files or kernel-wide settings through the shared root
# filesystem, /proc/sys and /sys (journal into /var/log/journal, /etc/passwd, sysctls, modules,
# binfmt, the clock, utmp, fstab remount), and the timers would run apt or fstrim on the host.
MASKED_UNITS = (
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-clean.timer",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-journal-flush.service",
    "systemd-sysusers.service",
    "systemd-update-utmp.service",
    "systemd-remount-fs.service",
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-random-seed.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
    "systemd-repart.service",
    "systemd-hwdb-update.service",
    "ldconfig.service",
    "kmod-static-nodes.service",
    "timers.target",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "man-db.timer",
)


class SandboxError(RuntimeError):
    pass


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, fstype, options) of every cgroup hierarchy mounted under /sys/fs/cgroup."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point = left.split()[4]
            fstype, _src, opts = right.split()[:3]
            if fstype in ("cgroup", "cgroup2") and point.startswith(str(CGROUP_ROOT) + "/"):
                keep = [o for o in opts.split(",") if o not in ("rw", "ro")]
                out.append((point, fstype, ",".join(keep)))
    return out


def available() -> tuple[bool, str]:
    """Whether this machine can run the sandbox at all (root, systemd binary, unshare, nsenter)."""
    if os.geteuid() != 0:
        return False, "the systemd sandbox needs root (cgroups, namespaces)"
    for tool in (SYSTEMD, "/usr/bin/unshare", "/usr/bin/nsenter"):
        if not os.path.exists(tool):
            return False, f"{tool} is not installed"
    if not cgroup_mounts():
        return False, "no cgroup hierarchy under /sys/fs/cgroup"
    return True, ""


class SystemdSandbox:
    def __init__(self, name: str | None = None, log_dir: Path | None = None) -> None:
        self.name = name or f"dcosd-sbx-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.log_path = self.log_dir / "systemd.log"
        self.mounts = cgroup_mounts()
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None  # systemd's pid as the host sees it
        self._stopped = False
        self._log = None

    # -- life cycle -------------------------------------------------------------------------
    def cgroup_dirs(self) -> list[Path]:
        return [Path(point) / self.name for point, _, _ in self.mounts]

    def _inner_script(self) -> str:
        lines = ["set -eu", "mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup"]
        for point, fstype, opts in self.mounts:
            q = shlex.quote(point)
            if fstype == "cgroup2":
                lines.append(f"mkdir -p {q}; mount -t cgroup2 cgroup2 {q}")
            else:
                lines.append(f"mkdir -p {q}; mount -t cgroup -o {shlex.quote(opts)} cgroup {q}")
        lines.append("mount -t tmpfs -o mode=755 tmpfs /run; mkdir -p /run/lock /run/systemd/system")
        for unit in MASKED_UNITS:
            lines.append(f"ln -s /dev/null /run/systemd/system/{unit}")
        lines.append(f"exec env container={shlex.quote(self.name)} {SYSTEMD} --system --unit=basic.target "
                     "--log-target=console --log-level=info --show-status=no")
        return "\n".join(lines)

    def start(self, timeout: float = 60.0) -> None:
        ok, why = available()
        if not ok:
            raise SandboxError(why)
        atexit.register(self.stop)
        for d in self.cgroup_dirs():
            d.mkdir(exist_ok=True)
            cpus = d / "cpuset.cpus"
            if cpus.exists() and not cpus.read_text().strip():
                cpus.write_text((d.parent / "cpuset.cpus").read_text())
                (d / "cpuset.mems").write_text((d.parent / "cpuset.mems").read_text())
        # The launching shell joins NAME in every hierarchy, then becomes unshare; its forked child is
        # pid 1 of the new namespaces and execs systemd.
        procs = " ".join(shlex.quote(str(d / "cgroup.procs")) for d in self.cgroup_dirs())
        outer = (f"for f in {procs}; do echo $$ > \"$f\"; done\n"
                 "exec unshare --cgroup --pid --mount --fork --propagation private --mount-proc "
                 f"/bin/bash -c {shlex.quote(self._inner_script())}")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["/bin/bash", "-c", outer], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            self.pid = self._find_systemd(deadline)
            self.wait_running(deadline)
        except BaseException:
            self.stop()
            raise

    def _find_systemd(self, deadline: float) -> int:
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SandboxError(f"sandbox exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
            except OSError:
                pass
            time.sleep(0.02)
        raise SandboxError(f"systemd did not start: {self.log_tail()}")

    def wait_running(self, deadline: float) -> str:
        """Poll `systemctl is-system-running` until running (or degraded: failed units are reported)."""
        state = ""
        while time.monotonic() < deadline:
            r = self.run(["systemctl", "is-system-running"], timeout=10)
            state = r.stdout.strip()
            if state == "running":
                return state
            if state == "degraded":
                failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"]).stdout
                print(f"systemd sandbox {self.name} is degraded; failed units:\n{failed}")
                return state
            time.sleep(0.1)
        raise SandboxError(f"systemd sandbox not running before the deadline (last state {state!r}): "
                           f"{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop systemd (systemctl exit, SIGKILL after timeout) and remove NAME's cgroups. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.proc is not None and self.proc.poll() is None:
                if self.pid is not None:
                    try:
                        self.run(["systemctl", "exit"], timeout=10)
                    except (subprocess.SubprocessError, OSError):
                        pass
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
                if self.proc.poll() is None:
                    # Killing pid 1 of the namespace kills every process in it.
                    for pid in (self.pid, self.proc.pid):
                        if pid is not None:
                            try:
                                os.kill(pid, signal.SIGKILL)
                            except ProcessLookupError:
                                pass
                    self.proc.wait(timeout=30)
        finally:
            if self._log is not None:
                self._log.close()
            self._remove_cgroups()
            if self._own_log_dir and not os.environ.get("DCOSD_SANDBOX_KEEP_LOGS"):
                shutil.rmtree(self.log_dir, ignore_errors=True)

    def _remove_cgroups(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        left: list[Path] = []
        while True:
            left = []
            for top in self.cgroup_dirs():
                if not top.exists():
                    continue
                for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
                    try:
                        os.rmdir(dirpath)
                    except FileNotFoundError:
                        pass
                    except OSError:
                        left.append(Path(dirpath))
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if left:
            raise SandboxError(f"cgroups of sandbox {self.name} could not be removed: {left[:5]}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- running things inside --------------------------------------------------------------
    def command(self, argv: list[str], wd: str | None = None) -> list[str]:
        """argv wrapped to run in the sandbox's mount and pid namespaces."""
        if self.pid is None:
            raise SandboxError("sandbox not started")
        return ["nsenter", "-t", str(self.pid), "-m", "-p", f"--wd={wd or '/'}", "--", *argv]

    def run(self, argv: list[str], *, timeout: float = 60.0, wd: str | None = None, check: bool = False,
            env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv, wd), capture_output=True, text=True, timeout=timeout,
                              check=check, env=env, input=input)

    def popen(self, argv: list[str], *, wd: str | None = None, env: dict[str, str] | None = None,
              **kw) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(argv, wd), text=True, env=env, **kw)

    def host_cgroup(self, controller: str, inner_path: str = "") -> Path:
        """A cgroup directory of the sandbox as seen from the host, e.g. ("memory", "dcosd.slice")."""
        return CGROUP_ROOT / controller / self.name / inner_path.lstrip("/")
