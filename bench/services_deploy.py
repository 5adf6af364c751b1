"""Service deployment benchmark: one app of 500 instances over 10 agents — until all running, all healthy.

    python bench/services_deploy.py [--instances 500] [--agents 10] [--no-save]

A real master (in this process, its own SQLite store with fsync, the DRF
allocator, the service framework) and SIMULATED agents: each speaks the real
agent protocol over HTTP (register, work stream, batched status updates) but
runs nothing — a launch is answered at once with TASK_RUNNING, and, as the
agent's health checker would after its first probe, with healthy=true right
after. So the figures are the control plane's: API → deployment → offers →
matching (resources, ports, a hostname MAX_PER constraint) → committed launches →
status updates committed → instances counted healthy.

Baseline: Marathon's published figure for this deployment, about 14 s.
Figures are compared with the previous run in bench/results/services_deploy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dcosd.master.discovery import DiscoveryConfig  # noqa: E402
from dcosd.master.service import Master, MasterConfig  # noqa: E402

MARATHON_SECONDS = 14.0
BATCH_WINDOW = 0.01
RESULTS = ROOT / "bench" / "results" / "services_deploy.json"


class SimAgent:
    """The agent protocol without tasks: launches become RUNNING (then healthy) in batched status updates."""

    def __init__(self, master_url: str, secret: str, name: str) -> None:
        self.url = master_url
        self.secret = secret
        self.name = name
        self.agent_id = ""
        self.launched = 0

    async def run(self, http: aiohttp.ClientSession, ready: asyncio.Event) -> None:
        h = {"Authorization": f"Bearer {self.secret}"}
        agent = {"hostname": self.name, "ip": "127.0.0.1", "address": "http://127.0.0.1:1",
                 "resources": {"cpus": 64, "mem": 65536, "disk": 100000, "ports": [[31000, 32000]]},
                 "attributes": {"rack": f"r{int(self.name[-1]) % 2}"}, "backend": {"name": "sim"}}
        async with http.post(f"{self.url}/dcosd/internal/v1/agents/register", json={"agent": agent, "tasks": []},
                             headers=h) as r:
            self.agent_id = (await r.json())["agent_id"]
        ready.set()
        base = f"{self.url}/dcosd/internal/v1/agents/{self.agent_id}"
        async with http.get(f"{base}/stream", headers=h, timeout=aiohttp.ClientTimeout(total=None)) as resp:
            pending: list[str] = []
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                msg = json.loads(line)
                if msg["type"] == "launch":
                    if not pending:  # like the agent's status update manager: what is pending goes in one POST
                        asyncio.get_running_loop().call_later(BATCH_WINDOW, self._flush, http, base, h, pending)
                    pending.append(msg["task"]["task_id"])

    def _flush(self, http: aiohttp.ClientSession, base: str, h: dict[str, str], pending: list[str]) -> None:
        batch = list(pending)
        pending.clear()
        self.launched += len(batch)
        asyncio.get_running_loop().create_task(self._report(http, base, h, batch))

    async def _report(self, http: aiohttp.ClientSession, base: str, h: dict[str, str], ids: list[str]) -> None:
        for healthy in (None, True):
            updates = []
            for tid in ids:
                u = {"task_id": tid, "state": "TASK_RUNNING", "uuid": str(uuid.uuid4()), "timestamp": time.time(),
                     "agent_id": self.agent_id, "source": "SOURCE_EXECUTOR", "message": "sim"}
                if healthy is not None:
                    u["healthy"] = healthy
                updates.append(u)
            async with http.post(f"{base}/status", json={"updates": updates}, headers=h) as r:
                assert r.status == 200, await r.text()


async def bench(instances: int, n_agents: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        m = Master(MasterConfig(data_dir=Path(tmp), port=0, auth=False, dns=DiscoveryConfig(listen=None),
                                offer_timeout=None))
        await m.start()
        url = m.advertise_url
        try:
            async with aiohttp.ClientSession() as http:
                agents = [SimAgent(url, m.cluster_secret, f"sim-{i}") for i in range(n_agents)]
                readies = [asyncio.Event() for _ in agents]
                runs = [asyncio.create_task(a.run(http, e)) for a, e in zip(agents, readies)]
                await asyncio.gather(*(e.wait() for e in readies))
                await asyncio.sleep(1.2)  # the allocator has seen every agent
                per_agent = -(-instances // n_agents)
                app = {"id": "/bench/web", "cmd": "sleep 3600", "cpus": 0.01, "mem": 32, "instances": instances,
                       "constraints": [["hostname", "MAX_PER", str(per_agent)]],
                       "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"}, "intervalSeconds": 5}]}
                t0 = time.perf_counter()
                async with http.post(f"{url}/v2/apps", json=app) as r:
                    assert r.status == 201, await r.text()
                running_at = healthy_at = None
                while healthy_at is None:
                    async with http.get(f"{url}/v2/apps/bench/web") as r:
                        a = (await r.json())["app"]
                    now = time.perf_counter() - t0
                    if running_at is None and a["tasksRunning"] >= instances:
                        running_at = now
                    if a["tasksHealthy"] >= instances:
                        healthy_at = now
                        running_at = running_at or now
                    if now > 120:
                        raise SystemExit(f"not converged after 120 s: {a['tasksRunning']} running")
                    await asyncio.sleep(0.01)
                async with http.get(f"{url}/v2/deployments") as r:
                    while (await r.json()):
                        await asyncio.sleep(0.05)
                        async with http.get(f"{url}/v2/deployments") as r2:
                            if not await r2.json():
                                break
                done_at = time.perf_counter() - t0
                for t in runs:
                    t.cancel()
                await asyncio.gather(*runs, return_exceptions=True)
        finally:
            await m.stop()
    return {"all_running_s": round(running_at, 3), "all_healthy_s": round(healthy_at, 3),
            "deployment_done_s": round(done_at, 3), "launched": sum(a.launched for a in agents)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--agents", type=int, default=10)
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("-v", action="store_true", help="log the framework's decisions")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)d %(name)s %(message)s")
    if "-v" in sys.argv: logging.getLogger("dcosd.master.services").setLevel(logging.DEBUG)
    r = asyncio.run(bench(args.instances, args.agents))
    print(f"deploy {args.instances} instances over {args.agents} simulated agents (real master, fsync'd store)")
    print(f"  all running   {r['all_running_s']:7.3f} s")
    print(f"  all healthy   {r['all_healthy_s']:7.3f} s   Marathon ~{MARATHON_SECONDS:g} s → "
          f"{MARATHON_SECONDS / r['all_healthy_s']:.1f}x faster (goal < 2 s)")
    print(f"  deployment done {r['deployment_done_s']:5.3f} s   launches sent {r['launched']}")
    if RESULTS.exists():
        old = json.loads(RESULTS.read_text())
        for k in ("all_running_s", "all_healthy_s"):
            if old.get(k):
                print(f"  {k}: {r[k] / old[k]:.2f}x the previous run ({old[k]} s)")
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({**r, "instances": args.instances, "agents": args.agents}, indent=2) + "\n")


if __name__ == "__main__":
    main()
