"""One machine under a real systemd, for the built binary: a sandbox (tests/system/sandbox.py) whose
/etc, /usr/local and /var/lib are copy-on-write overlays and whose /tmp is a tmpfs, so that
`dcosd install` can write where it writes on a real machine without touching the host's files.

Used by tests/system/test_binary.py and bench/binary.py (both load it by path).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

BIN = "/usr/local/bin/dcosd"
OVERLAID = ("/etc", "/usr/local", "/var/lib")


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Machine:
    """The sandbox seen as one machine: run commands in it, the binary's CLI against its master."""

    def __init__(self, sb: Any, layers: Path) -> None:
        self.sb = sb
        self.layers = layers
        self.master_port = free_port()
        self.agent_port = free_port()
        self.master_url = f"http://127.0.0.1:{self.master_port}"

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 120,
            wd: str | None = None) -> subprocess.CompletedProcess[str]:
        r = self.sb.run(argv, timeout=timeout, wd=wd)
        if check:
            assert r.returncode == 0, f"{argv} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run([BIN, "--master", self.master_url, *args], check=check)

    def show(self, unit: str, prop: str) -> str:
        return self.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()

    def units(self, pattern: str = "dcosd*") -> list[str]:
        out = self.run(["systemctl", "list-units", "--all", "--no-legend", "--plain", pattern]).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def task(self, task_id: str) -> dict[str, Any]:
        return json.loads(self.cli("task", "show", task_id, "--json").stdout)

    def journal(self, unit: str) -> str:
        return self.run(["journalctl", "-u", unit, "--no-pager", "-q", "-o", "cat"]).stdout


    def host_path(self, path: str) -> Path:
        """Where a file written in the sandbox under an overlaid directory lies on the host."""
        for top in OVERLAID:
            if path.startswith(top + "/"):
                return self.layers / top.strip("/").replace("/", "_") / "upper" / path[len(top) + 1:]
        return Path(path)


def start_machine(sandbox_mod: Any) -> Machine:
    """A started sandbox with the overlays mounted; stop with stop_machine() (always)."""
    sb = sandbox_mod.SystemdSandbox()
    layers = Path(tempfile.mkdtemp(prefix="dcosd-binary-layers-"))
    m = Machine(sb, layers)
    try:
        sb.start()
        for path in OVERLAID:
            layer = layers / path.strip("/").replace("/", "_")
            (layer / "upper").mkdir(parents=True)
            (layer / "work").mkdir()
            opts = f"lowerdir={path},upperdir={layer / 'upper'},workdir={layer / 'work'}"
            r = sb.run(["mount", "-t", "overlay", "overlay", "-o", opts, path])
            if r.returncode != 0:
                raise RuntimeError(f"overlay on {path}: {r.stderr}")
        # A clone that lives under /tmp (CI's may) must stay visible under the private /tmp: park it
        # on /run (the sandbox's own tmpfs) first, then bind it back at the same path.
        repo = Path(__file__).resolve().parents[2]
        keep = Path("/tmp") / repo.relative_to("/tmp").parts[0] if repo.is_relative_to("/tmp") else None
        if keep is not None:
            for argv in (["mkdir", "-p", "/run/dcosd-keep"], ["mount", "--bind", str(keep), "/run/dcosd-keep"]):
                r = sb.run(argv)
                if r.returncode != 0:
                    raise RuntimeError(f"{' '.join(argv)}: {r.stderr}")
        r = sb.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/tmp"])
        if r.returncode != 0:
            raise RuntimeError(f"tmpfs on /tmp: {r.stderr}")
        if keep is not None:
            for argv in (["mkdir", "-p", str(keep)], ["mount", "--bind", "/run/dcosd-keep", str(keep)]):
                r = sb.run(argv)
                if r.returncode != 0:
                    raise RuntimeError(f"{' '.join(argv)}: {r.stderr}")
    except BaseException:
        stop_machine(m)
        raise
    return m


def stop_machine(m: Machine) -> None:
    """Stop systemd (the mounts go with its namespace), then remove the overlay layers."""
    try:
        m.sb.stop()
    finally:
        shutil.rmtree(m.layers, ignore_errors=True)
