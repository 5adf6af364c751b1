"""VIP: throughput and p99 connect latency through a VIP beside a direct connection to the backend.

    sudo python bench/vip.py [--seconds 3] [--connects 2000]

Two network namespaces on a private bridge (tests/harness/netns.py): ``a1`` runs the client and
the VIP (as an agent does: the client is a task on the same machine), ``a2`` runs the backend.
Measured in the same run, each against the same backend:

- direct   client → 10.214.9.2:PORT
- proxy    client → VIP 11.x:7000 → dcosd's asyncio proxy (dcosd/vips/proxy.py) → backend
- dnat     client → 11.x:7001 → iptables DNAT in a1's OUTPUT chain (kernel, conntrack), when iptables exists

"connect" is connect() plus the backend's first byte (the backend greets on accept: through a
proxy, connect() alone would only measure the local accept); p50/p99 of ``--connects``
sequential ones. "conn/s" is 32 concurrent clients doing that for ``--seconds``. "MB/s" is one
connection streaming 256 KiB writes into the backend for ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

BACKEND_PORT = 31500
VIP_IP, VIP_PORT = "11.214.9.9", 7000
DNAT_IP, DNAT_PORT = "11.214.9.10", 7001  # not on lo: routed out of eth0, so the source is a1's own address
CHUNK = 256 * 1024


# --------------------------------------------------------------------------- roles (inside namespaces)
def backend(port: int) -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(1024)
    print("ready", flush=True)

    def serve(c: socket.socket) -> None:
        buf = bytearray(1 << 20)
        try:
            c.sendall(b"x")
            while c.recv_into(buf):
                pass
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def proxy(backend_ip: str, port: int) -> None:
    from dcosd.vips.netlink import Rtnl
    from dcosd.vips.proxy import VipProxy
    from dcosd.vips.table import Vip, VipTable

    async def main() -> None:
        rtnl = Rtnl()
        p = VipProxy(rtnl)
        await p.apply(VipTable((Vip("bench", VIP_PORT, VIP_IP, ((backend_ip, port),)),)))
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await p.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


def _first_byte(ip: str, port: int) -> float:
    t0 = time.perf_counter()
    with socket.create_connection((ip, port), timeout=5) as s:
        if s.recv(1) != b"x":
            raise OSError("no greeting")
        return time.perf_counter() - t0


def client(ip: str, port: int, connects: int, seconds: float) -> None:
    for _ in range(50):
        _first_byte(ip, port)  # warm-up
    lat = sorted(_first_byte(ip, port) for _ in range(connects))
    done, stop = [0], time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < stop:
            _first_byte(ip, port)
            done[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(32)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = done[0] / (time.monotonic() - t0)
    data, sent = b"\0" * CHUNK, 0
    with socket.create_connection((ip, port), timeout=5) as s:
        s.recv(1)
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            s.sendall(data)
            sent += CHUNK
        elapsed = time.monotonic() - t0
    print(json.dumps({"p50_ms": statistics.median(lat) * 1e3, "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1e3,
                      "conn_per_s": rate, "mb_per_s": sent / elapsed / 1e6}))


# --------------------------------------------------------------------------- orchestration (host)
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--connects", type=int, default=2000)
    args = ap.parse_args()
    from harness.netns import NetLab, available

    ok, why = available()
    if not ok:
        sys.exit(f"bench/vip.py: {why}")
    py = sys.executable
    me = str(Path(__file__).resolve())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs: list[subprocess.Popen] = []
    with NetLab("dvipb") as lab:
        lab.add_node("a1", "10.214.9.1/24")
        lab.add_node("a2", "10.214.9.2/24")
        try:
            for node, role in (("a2", ["backend", str(BACKEND_PORT)]),
                               ("a1", ["proxy", "10.214.9.2", str(BACKEND_PORT)])):
                p = subprocess.Popen([*lab.prefix_argv(node), py, me, *role], stdout=subprocess.PIPE, text=True, env=env)
                procs.append(p)
                assert p.stdout is not None and p.stdout.readline().strip() == "ready", f"{role[0]} did not start"
            targets = [("direct", "10.214.9.2", BACKEND_PORT), ("proxy", VIP_IP, VIP_PORT)]
            if shutil.which("iptables"):
                lab.run("a1", ["ip", "route", "add", f"{DNAT_IP}/32", "dev", "eth0"], check=True)
                rule = lab.run("a1", ["iptables", "-t", "nat", "-A", "OUTPUT", "-d", f"{DNAT_IP}/32", "-p", "tcp",
                                      "--dport", str(DNAT_PORT), "-j", "DNAT", "--to-destination",
                                      f"10.214.9.2:{BACKEND_PORT}"])
                if rule.returncode == 0:
                    targets.append(("dnat", DNAT_IP, DNAT_PORT))
                else:
                    print(f"(iptables DNAT not measured: {rule.stderr.strip()})")
            results = {}
            for name, ip, port in targets:
                cp = lab.run("a1", [py, me, "client", ip, str(port), str(args.connects), str(args.seconds)],
                             env=env, timeout=120)
                if cp.returncode != 0:
                    print(f"({name} not measured: {cp.stderr.strip().splitlines()[-1:]})")
                    continue
                results[name] = json.loads(cp.stdout.strip().splitlines()[-1])
        finally:
            for p in procs:
                p.kill()
                p.wait()
    d = results["direct"]
    print(f"{'path':8} {'p50 ms':>8} {'p99 ms':>8} {'conn/s':>9} {'MB/s':>9}   ratio to direct (p99, conn/s, MB/s)")
    for name, r in results.items():
        print(f"{name:8} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['conn_per_s']:9.0f} {r['mb_per_s']:9.0f}   "
              f"{r['p99_ms'] / d['p99_ms']:.2f}x  {r['conn_per_s'] / d['conn_per_s']:.2f}x  "
              f"{r['mb_per_s'] / d['mb_per_s']:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "backend":
        backend(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "proxy":
        proxy(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        main()
