"""A private network for tests and benchmarks: network namespaces on a bridge, torn down always.

``NetLab`` creates a hub namespace holding a bridge, and one namespace per node joined to it
by a veth pair, with the addresses the caller chooses (e.g. 10.214.0.x/24). Nothing is
created in — and no traffic leaves through — the host's own namespace: the bridge lives in
the hub namespace. ``close()`` (also at exit, also after a failure) kills every process
still inside the lab's namespaces, by pid, and deletes the namespaces, which removes their
interfaces, addresses and routes.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import ctypes
import os
import shutil
import signal
import subprocess
import time

_CLONE_NEWNET = 0x40000000


def available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "network namespaces need root"
    if shutil.which("ip") is None:
        return False, "iproute2's ip is not installed"
    return True, ""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


class NetLab:
    def __init__(self, prefix: str = "dcosd") -> None:
        self.prefix = f"{prefix}-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
        self.hub = f"{self.prefix}-hub"
        self.nodes: dict[str, str] = {}  # node name → its namespace
        self.addresses: dict[str, str] = {}
        self._closed = False
        atexit.register(self.close)
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")

    def ns(self, node: str) -> str:
        return self.nodes[node]

    def add_node(self, node: str, cidr: str) -> str:
        ns = f"{self.prefix}-{node}"
        _ip("netns", "add", ns)
        self.nodes[node] = ns
        port = f"p{len(self.nodes)}"
        _ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", cidr, "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        self.addresses[node] = cidr.split("/")[0]
        return ns

    def route(self, node: str, prefix: str, via_node: str) -> None:
        _ip("-n", self.ns(node), "route", "add", prefix, "via", self.addresses[via_node])

    def prefix_argv(self, node: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node)]

    def run(self, node: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run([*self.prefix_argv(node), *argv], **kw)

    def executor(self, node: str) -> concurrent.futures.ThreadPoolExecutor:
        """One thread inside ``node``'s network namespace (setns is per thread): sockets it opens are
        the node's, so a test can speak HTTP and DNS from there without a subprocess per call."""
        path = f"/run/netns/{self.ns(node)}"

        def enter() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(path, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {path}: {os.strerror(err)}")
            finally:
                os.close(fd)

        return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"netns-{node}", initializer=enter)

    def addresses_on_lo(self, node: str, label: str = "lo:dcosdvip") -> list[str]:
        out = _ip("-n", self.ns(node), "-4", "-o", "addr", "show", "dev", "lo", "label", label).stdout
        return [line.split()[3].split("/")[0] for line in out.splitlines() if line.strip()]

    def pids(self) -> list[int]:
        pids: list[int] = []
        for ns in [*self.nodes.values(), self.hub]:
            out = _ip("netns", "pids", ns, check=False).stdout
            pids += [int(p) for p in out.split() if p.isdigit()]
        return pids

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in range(3):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for ns in [*self.nodes.values(), self.hub]:
            _ip("netns", "del", ns, check=False)
        atexit.unregister(self.close)

    def __enter__(self) -> "NetLab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
