"""Launch latency of trivial tasks on `dcosd up`, beside starting the same command with subprocess.

    .venv/bin/python bench/launch_latency.py [--tasks 200] [--backend cgroups|process|systemd]

For each of N tasks, one at a time: submit over the HTTP API, then read the
task's status history. submit→RUNNING is the time from the client's submit to
the agent's RUNNING timestamp; submit→FINISHED likewise (same machine, same
clock). The baseline, in the same run: subprocess.Popen of the same command
(→ "running" when Popen returns) and its exit (→ "finished").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness.cluster import DCOSD, Proc, free_port, wait_for  # noqa: E402

COMMAND = ["true"]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def api(url: str, method: str = "GET", body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def run_dcosd(n: int, backend: str | None) -> tuple[list[float], list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="dcosd-bench-"))
    port, agent_port = free_port(), free_port()
    args = [*DCOSD, "up", "--data-dir", str(tmp), "--port", str(port), "--agent-port", str(agent_port),
            "--log-level", "warning"]
    if backend:
        args += ["--backend", backend]
    proc = Proc(args, tmp / "up.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: api(f"{base}/dcosd/v1/nodes")["nodes"], 30, what="dcosd up")
        to_running, to_finished = [], []
        for _ in range(n):
            t0 = time.time()
            task_id = api(f"{base}/dcosd/v1/tasks", "POST", {"argv": COMMAND, "resources": {"cpus": 0.1, "mem": 32}})[
                "task_id"]
            t = api(f"{base}/dcosd/v1/tasks/{task_id}?wait=30")
            stamps = {s["state"]: s["timestamp"] for s in t["statuses"]}
            if t["state"] != "TASK_FINISHED" or "TASK_RUNNING" not in stamps:
                raise SystemExit(f"task {task_id} ended {t['state']}: {t.get('message')}")
            to_running.append(stamps["TASK_RUNNING"] - t0)
            to_finished.append(stamps["TASK_FINISHED"] - t0)
        return to_running, to_finished
    finally:
        proc.stop()
        print(f"(dcosd up log: {proc.log_path})" if proc.popen.returncode not in (0, None, -15) else "", end="")
        shutil.rmtree(tmp, ignore_errors=True)


def run_baseline(n: int) -> tuple[list[float], list[float]]:
    started, finished = [], []
    for _ in range(n):
        t0 = time.time()
        p = subprocess.Popen(COMMAND, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        t1 = time.time()
        p.wait()
        started.append(t1 - t0)
        finished.append(time.time() - t0)
    return started, finished


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--backend", choices=["systemd", "cgroups", "process"])
    args = ap.parse_args()
    if os.geteuid() != 0 and args.backend in (None, "cgroups"):
        args.backend = "process"
    run, fin = run_dcosd(args.tasks, args.backend)
    brun, bfin = run_baseline(args.tasks)
    ms = lambda v: f"{v * 1000:8.1f} ms"  # noqa: E731
    print(f"launch latency, {args.tasks} trivial tasks ({COMMAND[0]}), one at a time, backend "
          f"{args.backend or 'auto'}")
    print(f"{'':24}{'p50':>11}{'p99':>12}   {'baseline p50':>13}{'p99':>12}   ratio p50")
    for label, ours, base in (("submit → RUNNING", run, brun), ("submit → FINISHED", fin, bfin)):
        print(f"{label:24}{ms(statistics.median(ours))}{ms(pct(ours, 99)):>12}   "
              f"{ms(statistics.median(base)):>13}{ms(pct(base, 99)):>12}   "
              f"{statistics.median(ours) / statistics.median(base):8.1f}x")
    print("baseline: subprocess.Popen of the same command in this process (running = Popen returned)")


if __name__ == "__main__":
    main()
