"""The one-file binary: size, start-up, time to READY under systemd, resident memory — beside the same
code run from sources (`python -m dcosd`), measured in the same run.

    python bench/binary.py [--binary dist/dcosd] [--runs 15] [--tasks 1000] [--out bench/results/binary.json]

- size of dist/dcosd (built by packaging/build.sh when missing);
- `dcosd --version` and `dcosd --help` (the click path: every command module), N runs each with an
  empty environment, binary vs `python -m dcosd` from this checkout: first run, p50, min;
- as root, in a real systemd sandbox (tests/system/binary_machine.py: /etc, /usr/local, /var/lib
  overlaid, /tmp a tmpfs): the binary installed with `dcosd install master|agent`, then for each
  unit N times `systemctl start` → active (blocks until READY=1), timed by the caller and by systemd's
  own timestamps (ExecMainStart → ActiveEnter). Baseline: the same daemons from sources as transient
  Type=notify units (systemd-run), same measurement;
- resident memory (RSS, and PSS, which splits shared pages) of every process of each unit, idle
  (5 s after READY), then with --tasks tasks (`/bin/sleep`, systemd backend: one transient unit each,
  submitted over the HTTP API) all TASK_RUNNING. The one-file binary runs as two processes
  (PyInstaller's bootloader, which waits, and the interpreter); both are counted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20


def load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def timed_runs(argv: list[str], runs: int, env: dict[str, str] | None = None) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, env=env, cwd=REPO)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{argv} failed: {r.stderr.decode()[-2000:]}")
    return {"first_s": times[0], "p50_s": statistics.median(times), "min_s": min(times)}


def start_up(binary: Path, runs: int) -> dict[str, Any]:
    src_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    out: dict[str, Any] = {}
    for what in ("--version", "--help"):
        out[what] = {"binary": timed_runs(["env", "-i", str(binary), what], runs),
                     "source": timed_runs([sys.executable, "-m", "dcosd", what], runs, env=src_env)}
    return out


# -- under systemd -----------------------------------------------------------------------------------
def unit_processes(m: Any, unit: str) -> list[int]:
    cg = m.show(unit, "ControlGroup")
    procs = m.sb.host_cgroup("systemd", cg) / "cgroup.procs"
    return [int(p) for p in procs.read_text().split()]


def memory(m: Any, unit: str) -> dict[str, Any]:
    """RSS and PSS (MB) of every process of the unit, as the host sees them."""
    rows = []
    for pid in unit_processes(m, unit):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        pss = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        rows.append({"pid": pid, "rss_mb": rss / 1024, "pss_mb": pss / 1024})
    biggest = max(rows, key=lambda r: r["rss_mb"]) if rows else {"rss_mb": 0, "pss_mb": 0}
    return {"processes": len(rows), "rss_mb": sum(r["rss_mb"] for r in rows),
            "pss_mb": sum(r["pss_mb"] for r in rows), "interpreter_rss_mb": biggest["rss_mb"]}


def to_ready(m: Any, unit: str, runs: int, start_cmd: list[str] | None = None) -> dict[str, float]:
    """`systemctl start` (or start_cmd) → returns once READY=1 arrived; caller's and systemd's clocks."""
    caller, systemd = [], []
    for i in range(runs):
        if start_cmd is None or i > 0:
            m.run(["systemctl", "stop", unit])
            m.run(["systemctl", "reset-failed", unit], check=False)
        cmd = ["systemctl", "start", unit] if start_cmd is None or i > 0 else start_cmd
        script = 's=$(date +%s%N); "$@"; rc=$?; e=$(date +%s%N); echo $(( (e - s) / 1000 )); exit $rc'
        r = m.run(["sh", "-c", script, "sh", *cmd])
        caller.append(int(r.stdout.split()[-1]) / 1e6)
        t = {k: int(m.show(unit, k)) for k in ("ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")}
        systemd.append((t["ActiveEnterTimestampMonotonic"] - t["ExecMainStartTimestampMonotonic"]) / 1e6)
        assert m.show(unit, "ActiveState") == "active"
    return {"p50_s": statistics.median(caller), "min_s": min(caller),
            "exec_to_ready_p50_s": statistics.median(systemd)}


def api(url: str, token: str, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def under_systemd(binary: Path, runs: int, n_tasks: int) -> dict[str, Any]:
    sandbox_mod = load("dcosd_bench_sandbox", REPO / "tests" / "system" / "sandbox.py")
    bm = load("dcosd_bench_binary_machine", REPO / "tests" / "system" / "binary_machine.py")
    m = bm.start_machine(sandbox_mod)
    out: dict[str, Any] = {}
    try:
        m.run([str(binary), "install", "master", "--listen", f"127.0.0.1:{m.master_port}", "--set", "dns-listen=off"])
        m.run([str(binary), "install", "agent", "--master", m.master_url, "--listen", f"127.0.0.1:{m.agent_port}"])
        for role in ("master", "agent"):
            out[f"ready_{role}"] = {"binary": to_ready(m, f"dcosd-{role}.service", runs)}
        time.sleep(5)
        out["idle"] = {role: {"binary": memory(m, f"dcosd-{role}.service")} for role in ("master", "agent")}

        # Baseline: the same daemons from sources, as transient notify units beside the installed ones.
        src_master_port, src_agent_port = bm.free_port(), bm.free_port()
        src = ["-p", "Type=notify", "-p", "NotifyAccess=all", "-p", f"Environment=PYTHONPATH={REPO}",
               "--", sys.executable, "-m", "dcosd"]
        units = {"master": "bench-src-master.service", "agent": "bench-src-agent.service"}
        starts = {
            "master": ["systemd-run", "--quiet", f"--unit={units['master']}", "-p", "RemainAfterExit=no", *src,
                       "master", "--listen", f"127.0.0.1:{src_master_port}", "--data-dir", "/tmp/src/master",
                       "--dns-listen", "off"],
            "agent": ["systemd-run", "--quiet", f"--unit={units['agent']}", *src, "agent", "--master",
                      f"http://127.0.0.1:{src_master_port}", "--secret-file", "/tmp/src/master/cluster.secret",
                      "--listen", f"127.0.0.1:{src_agent_port}", "--work-dir", "/tmp/src/agent"],
        }
        for role in ("master", "agent"):
            # A transient unit cannot be started again once stopped: one measured start each.
            out[f"ready_{role}"]["source"] = to_ready(m, units[role], 1, start_cmd=starts[role])
        time.sleep(5)
        for role in ("master", "agent"):
            out["idle"][role]["source"] = memory(m, units[role])
        for role in ("agent", "master"):
            m.run(["systemctl", "stop", units[role]], check=False)

        if n_tasks:
            out["tasks"] = with_tasks(m, bm, n_tasks)
    finally:
        try:
            m.run(["/usr/local/bin/dcosd", "uninstall", "--purge"], check=False, timeout=600)
        finally:
            bm.stop_machine(m)
    return out


def with_tasks(m: Any, bm: Any, n: int) -> dict[str, Any]:
    token = m.host_path("/var/lib/dcosd/master/operator.token").read_text().strip()
    spec = {"argv": ["/bin/sleep", "3600"], "resources": {"cpus": 0.001, "mem": 4}, "kill_grace_seconds": 1}
    t0 = time.monotonic()
    for i in range(n):
        api(m.master_url, token, "/dcosd/v1/tasks", {**spec, "name": f"bench-{i}"})
    submitted = time.monotonic() - t0

    def running() -> bool:
        tasks = api(m.master_url, token, "/dcosd/v1/tasks?state=TASK_RUNNING")
        tasks = tasks.get("tasks", tasks) if isinstance(tasks, dict) else tasks
        return len(tasks) >= n

    bm.wait_for(running, 900, f"{n} tasks running")
    all_running = time.monotonic() - t0
    units = len(m.units("dcosd-bench-*"))
    time.sleep(5)
    return {"n": n, "submit_s": submitted, "all_running_s": all_running, "task_units": units,
            "agent": memory(m, "dcosd-agent.service"), "master": memory(m, "dcosd-master.service")}


# -- report ------------------------------------------------------------------------------------------
def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def report(res: dict[str, Any]) -> None:
    print(f"binary: {res['binary']}  {res['size_mb']:.1f} MB (goal < 40 MB)")
    print("\nstart-up (s)        binary first / p50 / min     source (python -m dcosd) p50     ratio p50")
    for what, r in res["start_up"].items():
        b, s = r["binary"], r["source"]
        print(f"  dcosd {what:<10}  {b['first_s']:.3f} / {b['p50_s']:.3f} / {b['min_s']:.3f}"
              f"          {s['p50_s']:.3f}                          {ratio(b['p50_s'], s['p50_s'])}")
    if "idle" not in res:
        return
    print("\nsystemctl start → READY (s)   binary p50 (exec→ready)     source (exec→ready)     ratio")
    for role in ("master", "agent"):
        b, s = res[f"ready_{role}"]["binary"], res[f"ready_{role}"]["source"]
        print(f"  dcosd-{role:<7}              {b['p50_s']:.3f} ({b['exec_to_ready_p50_s']:.3f})"
              f"             {s['p50_s']:.3f} ({s['exec_to_ready_p50_s']:.3f})           "
              f"{ratio(b['p50_s'], s['p50_s'])}")
    print("\nresident memory (MB)          binary RSS / PSS (interpreter RSS)     source RSS / PSS     ratio RSS")
    for role in ("master", "agent"):
        b, s = res["idle"][role]["binary"], res["idle"][role]["source"]
        print(f"  idle {role:<7}               {b['rss_mb']:.1f} / {b['pss_mb']:.1f} ({b['interpreter_rss_mb']:.1f})"
              f"                   {s['rss_mb']:.1f} / {s['pss_mb']:.1f}          {ratio(b['rss_mb'], s['rss_mb'])}")
    if "tasks" in res:
        t = res["tasks"]
        for role in ("master", "agent"):
            b = t[role]
            print(f"  {role} + {t['n']} tasks         {b['rss_mb']:.1f} / {b['pss_mb']:.1f} "
                  f"({b['interpreter_rss_mb']:.1f})   (systemd backend, in the sandbox)")
        print(f"  {t['n']} tasks: submitted in {t['submit_s']:.1f} s, all TASK_RUNNING after {t['all_running_s']:.1f} s,"
              f" {t['task_units']} transient units")
    print("\ngoals: binary < 40 MB, --version < 0.5 s, agent < 40 MB RSS")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=REPO / "dist" / "dcosd")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--no-systemd", action="store_true", help="only size and start-up (no root needed)")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = ap.parse_args()
    if not args.binary.exists():
        subprocess.run([str(REPO / "packaging" / "build.sh")], check=True)
    res: dict[str, Any] = {"binary": str(args.binary), "size_mb": args.binary.stat().st_size / MB,
                           "start_up": start_up(args.binary, args.runs),
                           "loadavg": os.getloadavg()}
    if not args.no_systemd:
        res.update(under_systemd(args.binary, max(3, args.runs // 3), args.tasks))
    report(res)
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
