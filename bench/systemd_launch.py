"""Launch latency of SystemdBackend and of the whole dcosd path, beside raw StartTransientUnit, in one run.

    python bench/systemd_launch.py [--n 200]          # from the host, as root: starts a sandbox
    python bench/systemd_launch.py --inside [--n 200] # where PID 1 is systemd (or inside a sandbox)

Backend: submit → launch() returned (the agent would report TASK_RUNNING), for N tasks of
``/bin/sleep 600`` with cpus/mem limits. Baseline: the same unit properties sent by hand through
pystemd — StartTransientUnit, then block on the bus until JobRemoved for that unit — i.e. the floor
any systemd backend pays. Printed: p50, p90, p99, max of each and the ratio backend/raw.
Whole path: `dcosd up` (master + agent, systemd backend) started in the same systemd; each task is
submitted over the HTTP API, one at a time, and timed from the client's submit to the agent's
TASK_RUNNING timestamp (same machine, same clock).
Tasks of every run are stopped at the end; the sandbox (when started here) is torn down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(xs: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(xs) * 1e3, "p90": pct(xs, 90) * 1e3, "p99": pct(xs, 99) * 1e3,
            "max": max(xs) * 1e3}


def raw_baseline(n: int, work: Path) -> list[float]:
    """StartTransientUnit + wait for its JobRemoved, synchronously, through pystemd only."""
    from pystemd.dbuslib import DBus, apply_signature

    from dcosd.executor import systemd_units as su
    from dcosd.executor.systemd import MANAGER, SYSTEMD, SYSTEMD_PATH, _props_args

    done: dict[str, str] = {}

    def on_signal(msg: Any, error: Any = None, userdata: Any = None) -> None:
        msg.process_reply(False)
        done[msg.body[2].decode()] = msg.body[3].decode()

    out = []
    with DBus() as bus:
        bus.match_signal(SYSTEMD, SYSTEMD_PATH, MANAGER, b"JobRemoved", on_signal)
        bus.call_method(SYSTEMD, SYSTEMD_PATH, MANAGER, b"Subscribe", [])
        for i in range(n):
            unit = f"dcosd-rawbench-{work.name}-{i}.service"
            sandbox = work / "raw" / str(i)
            sandbox.mkdir(parents=True)
            os.chown(sandbox, 65534, 65534)
            props = su.unit_properties(su.UnitConfig(
                task_id=f"raw{i}", argv=["/bin/sleep", "600"], sandbox=sandbox, env={"PATH": "/usr/bin:/bin"},
                user="nobody", group="nogroup", cpus=0.1, mem_mb=16, tasks_max=4096, kill_grace_seconds=3))
            t0 = time.perf_counter()
            args = apply_signature(b"ss", [unit.encode(), b"fail"]) + _props_args(props)
            args += [(ord("a"), b"(sa(sv))"), (-1, None)]
            bus.call_method(SYSTEMD, SYSTEMD_PATH, MANAGER, b"StartTransientUnit", args)
            while unit not in done:
                bus.wait(1_000_000)
                while True:
                    m = bus.process()
                    if m.is_empty() and unit not in done:
                        break
                    if unit in done:
                        break
            out.append(time.perf_counter() - t0)
            assert done[unit] == "done", done[unit]
        for i in range(n):
            bus.call_method(SYSTEMD, SYSTEMD_PATH, MANAGER, b"StopUnit",
                            apply_signature(b"ss", [f"dcosd-rawbench-{work.name}-{i}.service".encode(),
                                                    b"replace"]))
    return out


async def backend_run(n: int, work: Path) -> list[float]:
    from dcosd.executor.base import LaunchRequest
    from dcosd.executor.systemd import SystemdBackend
    from dcosd.model.resources import Resources
    from dcosd.model.task import TaskSpec

    ended: set[str] = set()
    backend = SystemdBackend(work, lambda e: ended.add(e.task_id))
    out = []
    ids = []
    for i in range(n):
        tid = f"bench{i:04d}.b"
        ids.append(tid)
        sandbox = backend.sandbox_path(tid)
        sandbox.mkdir(parents=True)
        spec = TaskSpec(task_id=tid, name="bench", resources=Resources.of(cpus=0.1, mem=16),
                        argv=("/bin/sleep", "600"), kill_grace_seconds=3)
        req = LaunchRequest(spec=spec, sandbox=sandbox, env={"PATH": "/usr/bin:/bin"}, user=None)
        t0 = time.perf_counter()
        await backend.launch(req)
        out.append(time.perf_counter() - t0)
    for tid in ids:
        await backend.kill(tid, 3)
    deadline = time.monotonic() + 60
    while len(ended) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await backend.close()
    return out


def whole_path_run(n: int, work: Path) -> list[float]:
    """submit → TASK_RUNNING through master, placement, agent and SystemdBackend, one task at a time."""
    import subprocess
    import urllib.request

    sys.path.insert(0, str(REPO / "tests"))
    from harness.cluster import free_port, wait_for

    def api(url: str, method: str = "GET", body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    port, agent_port = free_port(), free_port()
    log = open(work / "up.log", "ab")
    up = subprocess.Popen([sys.executable, "-m", "dcosd", "up", "--data-dir", str(work), "--port", str(port),
                           "--agent-port", str(agent_port), "--log-level", "warning"],
                          stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    base = f"http://127.0.0.1:{port}/dcosd/v1"
    out: list[float] = []
    ids: list[str] = []
    try:
        wait_for(lambda: api(f"{base}/nodes")["nodes"], 30, what="dcosd up")
        for _ in range(n):
            t0 = time.time()
            tid = api(f"{base}/tasks", "POST", {"argv": ["/bin/sleep", "600"], "kill_grace_seconds": 1,
                                                "resources": {"cpus": 0.01, "mem": 16}})["task_id"]
            ids.append(tid)
            t = wait_for(lambda: (x := api(f"{base}/tasks/{tid}"))["state"] != "TASK_STAGING" and x != {} and
                         x["state"] != "QUEUED" and x, 30, interval=0.002, what=f"{tid} to run")
            stamps = {st["state"]: st["timestamp"] for st in t["statuses"]}
            if "TASK_RUNNING" not in stamps:
                raise SystemExit(f"task {tid} did not run: {t['state']} {t.get('message')}")
            out.append(stamps["TASK_RUNNING"] - t0)
        for tid in ids:
            api(f"{base}/tasks/{tid}/kill", "POST", {})
        for tid in ids:
            wait_for(lambda: api(f"{base}/tasks/{tid}?wait=10")["state"] in ("TASK_KILLED", "TASK_FAILED"), 60,
                     what=f"{tid} killed")
    finally:
        up.terminate()
        up.wait(30)
        log.close()
    return out


def wait_no_units(timeout: float = 60.0) -> None:
    """Between runs: until every dcosd unit of the previous run is stopped and collected."""
    from pystemd.dbuslib import DBus, apply_signature

    from dcosd.executor.systemd import MANAGER, SYSTEMD, SYSTEMD_PATH

    deadline = time.monotonic() + timeout
    with DBus() as bus:
        while time.monotonic() < deadline:
            units = bus.call_method(SYSTEMD, SYSTEMD_PATH, MANAGER, b"ListUnitsByPatterns",
                                    apply_signature(b"asas", [[], [b"dcosd-*"]])).body
            if not [u for u in units or [] if u[0].endswith(b".service")]:
                return
            time.sleep(0.05)


def inside(n: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="dcosd-bench-"))
    for d in (work, work / "sandboxes"):
        d.mkdir(exist_ok=True)
        d.chmod(0o755)
    # Two rounds, alternating which goes first, each starting from an idle systemd.
    raw: list[float] = []
    be: list[float] = []
    for first_raw in (True, False):
        for kind in (("raw", "backend") if first_raw else ("backend", "raw")):
            wait_no_units()
            part = work / f"{kind}-{int(first_raw)}"
            (part / "sandboxes").mkdir(parents=True)
            for d in (part, part / "sandboxes"):
                d.chmod(0o755)
            if kind == "raw":
                raw += raw_baseline(n // 2, part)
            else:
                be += asyncio.run(backend_run(n // 2, part))
    wait_no_units()
    whole_dir = work / "whole"
    whole_dir.mkdir()
    whole_dir.chmod(0o755)
    whole = whole_path_run(n, whole_dir)
    wait_no_units()
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    return {"n": n, "raw": summary(raw), "backend": summary(be), "whole": summary(whole)}


def report(r: dict[str, Any]) -> None:
    print(f"systemd launch, {r['n']} tasks each (ms)        p50      p90      p99      max")
    for k, label in (("raw", "raw StartTransientUnit+JobRemoved"), ("backend", "SystemdBackend.launch"),
                     ("whole", "dcosd submit → TASK_RUNNING")):
        s = r[k]
        print(f"  {label:<36} {s['p50']:7.1f}  {s['p90']:7.1f}  {s['p99']:7.1f}  {s['max']:7.1f}")
    for k, label in (("backend", "ratio backend/raw"), ("whole", "ratio whole path/raw")):
        print(f"  {label:<36} {r[k]['p50'] / r['raw']['p50']:7.2f}           {r[k]['p99'] / r['raw']['p99']:7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--inside", action="store_true", help="talk to this machine's systemd directly")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.inside:
        r = inside(a.n)
        print(json.dumps(r)) if a.json else report(r)
        return
    sys.path.insert(0, str(REPO / "tests" / "system"))
    from sandbox import SystemdSandbox

    sb = SystemdSandbox()
    sb.start()
    try:
        p = sb.run([sys.executable, str(Path(__file__).resolve()), "--inside", "--json", "--n", str(a.n)],
                   timeout=600, wd=str(REPO))
        if p.returncode != 0:
            sys.exit(f"bench failed inside the sandbox:\n{p.stderr}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        sb.stop()
    print(f"(inside a systemd {sb.name} sandbox: systemd 252 as PID 1 of its own namespaces)")
    print(json.dumps(r)) if a.json else report(r)


if __name__ == "__main__":
    main()
