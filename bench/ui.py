"""Web UI figures: asset sizes, time to first paint of the overview, and the tasks page with 1,000 tasks.

    python bench/ui.py [--tasks 1000]

Real master (auth on) on loopback, Debian's headless Chromium through Playwright. The tasks are
submitted with no agent registered, so all of them stay QUEUED and are listed as active: the page
holds N rows without N processes running. Numbers are wall-clock on this machine; no baseline
exists for a UI, so each figure is printed alone (and the asset size against the 100 kB budget).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "browser")]

from harness.cluster import ClusterFactory, world_readable_tmp  # noqa: E402
from ui_harness import browser_missing, chromium  # noqa: E402

UI = ROOT / "dcosd" / "master" / "ui"


def asset_sizes() -> tuple[int, int, int]:
    files = [p for p in UI.rglob("*") if p.is_file() and p.suffix in (".js", ".css", ".html")]
    raw = sum(p.stat().st_size for p in files)
    gz = sum(len(gzip.compress(p.read_bytes(), 9)) for p in files)
    return len(files), raw, gz


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    why = browser_missing()
    if why:
        print(f"skipped: {why}")
        return 0
    n, raw, gz = asset_sizes()
    print(f"UI assets: {n} files, {raw / 1024:.1f} KiB raw, {gz / 1024:.1f} KiB gzipped "
          f"(budget 100 KiB raw: {raw / 102400:.2f}x)")
    tmp = world_readable_tmp("dcosd-bench-ui-")
    f = ClusterFactory(tmp)
    try:
        m = f.master()
        with chromium() as ctx:
            ctx.add_init_script(f"sessionStorage.setItem('dcosd.token', {m.token!r})")
            page = ctx.new_page()
            fp, fcp, ready = [], [], []
            for _ in range(args.runs):
                page.goto("about:blank")
                page.goto(m.url + "/#/overview")
                page.wait_for_selector("[data-gauge=CPU] [data-total]")
                t = page.evaluate("""() => {
                    const nav = performance.getEntriesByType('navigation')[0];
                    const p = Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
                    return {fp: p['first-paint'], fcp: p['first-contentful-paint'], now: performance.now()};
                }""")
                fp.append(t["fp"])
                fcp.append(t["fcp"])
                ready.append(t["now"])
            print(f"overview: first paint {statistics.median(fp):.0f} ms, first contentful paint "
                  f"{statistics.median(fcp):.0f} ms, charts with data {statistics.median(ready):.0f} ms "
                  f"(median of {args.runs}, empty cluster)")

            t0 = time.monotonic()
            with ThreadPoolExecutor(32) as pool:
                list(pool.map(lambda i: m.api("POST", "/dcosd/v1/tasks", {"name": f"bench-{i}", "argv": ["true"],
                                                                            "resources": {"cpus": 0.1, "mem": 8}}),
                              range(args.tasks)))
            print(f"submitted {args.tasks} tasks in {time.monotonic() - t0:.1f} s (all stay QUEUED: no agent)")

            page.goto("about:blank")
            t0 = time.monotonic()
            page.goto(m.url + "/#/tasks")
            page.wait_for_function(f"document.getElementById('task-count')?.textContent === '{args.tasks} tasks'")
            load_ms = (time.monotonic() - t0) * 1000
            rows = page.evaluate("document.querySelectorAll('#task-table .row').length")
            print(f"tasks page with {args.tasks} tasks: listed in {load_ms:.0f} ms, {rows} rows in the DOM (virtualised)")
            frame = page.evaluate("""async () => {
                const vt = document.getElementById('task-table');
                const times = [];
                for (let i = 0; i < 60; i++) {
                    const t = performance.now();
                    vt.scrollTop = (i % 2 ? vt.scrollHeight : 0) * Math.random();
                    vt.dispatchEvent(new Event('scroll'));
                    await new Promise(r => requestAnimationFrame(() => r()));
                    times.push(performance.now() - t);
                }
                times.sort((a, b) => a - b);
                return {p50: times[30], p95: times[57], max: times[59]};
            }""")
            print(f"scrolling {args.tasks} rows: frame p50 {frame['p50']:.1f} ms, p95 {frame['p95']:.1f} ms, "
                  f"max {frame['max']:.1f} ms (60 random jumps)")
            t0 = time.monotonic()
            page.evaluate("document.getElementById('task-filter').value = 'bench-99'; "
                          "document.getElementById('task-filter').dispatchEvent(new Event('input'))")
            page.wait_for_function("/^1[01] tasks$/.test(document.getElementById('task-count').textContent)")
            print(f"filter over {args.tasks} tasks: {(time.monotonic() - t0) * 1000:.0f} ms")
            page.evaluate("document.getElementById('task-filter').value = ''; "
                          "document.getElementById('task-filter').dispatchEvent(new Event('input'))")
            extra = 100
            t0 = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: m.api("POST", "/dcosd/v1/tasks", {"name": f"live-{i}", "argv": ["true"],
                                                                            "resources": {"cpus": 0.1, "mem": 8}}),
                              range(extra)))
            page.wait_for_function(f"document.getElementById('task-count').textContent === '{args.tasks + extra} tasks'")
            print(f"{extra} more tasks submitted while the page is open: all shown live (SSE, no reload) "
                  f"{(time.monotonic() - t0) * 1000:.0f} ms after the first submit")
    finally:
        f.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
