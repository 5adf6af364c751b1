"""Highly available masters under faults: 3 masters, 2 agents and a client, each in its own network namespace.

Every address is one the test creates inside its own namespaces (10.215.0.0/24 on a bridge that lives in
a hub namespace; nothing in the host's namespace). The client side of the test (the writers and every
HTTP check) runs in threads that entered the client's namespace (NetLab.executor), so no traffic goes
anywhere else.

While two writers keep writing (a role weight per write, unique role names) and record every
acknowledgment, faults run in sequence:
  1. kill -9 of the leader; it is restarted once a new leader acknowledged writes;
  2. the leader cut off from the majority (its veth down) and healed;
  3. all masters killed (-9) at once and restarted.
Then every acknowledged write is on every master (stale reads of each master), the masters' state
dumps are identical, and the long-running tasks submitted before the faults are still TASK_RUNNING,
each with exactly one supervisor and one process, the same processes as before the faults.
Processes, namespaces and interfaces are removed at the end, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from tests.harness.cluster import DCOSD, Proc, kill_tree_of_tasks, wait_for, world_readable_tmp
from tests.harness.ha_cluster import SECRET, HaCluster
from tests.harness.netns import NetLab, available

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
MASTERS = {"m1": "10.215.0.1", "m2": "10.215.0.2", "m3": "10.215.0.3"}
AGENTS = {"a1": "10.215.0.11", "a2": "10.215.0.12"}
CLIENT = "10.215.0.100"
SLEEPS = 4  # long-running tasks submitted before the faults


class Writers:
    """Threads in the client's namespace writing role weights (unique names) through any master."""

    def __init__(self, ha: HaCluster, net: NetLab, n: int = 2) -> None:
        self.ha = ha
        self.acked: list[str] = []
        self.failed: Counter[str] = Counter()  # why writes were not acknowledged
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pools = [net.executor("c") for _ in range(n)]  # one thread each, inside the client's namespace
        self._runs: list[Future] = []

    def start(self) -> None:
        self._runs = [pool.submit(self._run, w) for w, pool in enumerate(self._pools)]

    def stop(self) -> None:
        self._stop.set()
        for pool in self._pools:
            pool.shutdown(wait=True)
        for run in self._runs:
            run.result()  # a writer that crashed fails the test

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self, w: int) -> None:
        ids = self.ha.ids
        shunned: dict[str, float] = {}  # a master that did not answer is skipped for a moment, as clients do
        n = 0
        while not self._stop.is_set():
            n += 1
            role = f"w{w}-{n}"
            now = time.monotonic()
            order = [ids[(n + w + k) % len(ids)] for k in range(len(ids))]
            target = next((i for i in order if shunned.get(i, 0) <= now), order[0])
            why = ""
            try:
                code, _ = self.ha.api(target, "PUT", f"/dcosd/v1/roles/{role}/weight", {"weight": 1.0 + n % 7},
                                      timeout=2)
            except (OSError, AssertionError) as exc:  # unreachable, timeout, redirect loop: outcome unknown
                code, why = 0, type(exc).__name__
                shunned[target] = time.monotonic() + 2
            if code == 200:
                with self._lock:
                    self.acked.append(role)
            else:
                self.failed[why or str(code)] += 1
                time.sleep(0.02)


@pytest.fixture
def lab():
    ok, why = available()
    if not ok:
        pytest.skip(why)
    tmp = world_readable_tmp("dcosd-ha-")
    net = NetLab("dha")
    ha: HaCluster | None = None
    agents: list[Proc] = []
    agents_work: list[Path] = []
    client = None
    try:
        for node, addr in {**MASTERS, **AGENTS, "c": CLIENT}.items():
            net.add_node(node, f"{addr}/24")
        client = net.executor("c")  # the test's own HTTP calls go from the client's namespace
        ha = HaCluster(tmp, ids=tuple(MASTERS), hosts=MASTERS, prefixes={m: net.prefix_argv(m) for m in MASTERS},
                       env={"PYTHONPATH": str(REPO)})
        yield net, tmp, ha, agents, agents_work, client
    finally:
        if client is not None:
            client.shutdown(wait=False, cancel_futures=True)
        for p in agents:
            p.stop(timeout=10)
        if ha is not None:
            ha.stop_all()
        for w in agents_work:
            kill_tree_of_tasks(w)
        net.close()
        if not os.environ.get("DCOSD_TEST_KEEP"):
            subprocess.run(["rm", "-rf", str(tmp)], check=False)


def test_acknowledged_writes_and_tasks_survive_kill_partition_and_full_restart(lab):
    net, tmp, ha, agents, agents_work, client = lab

    def c(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:  # run in the client's namespace
        return client.submit(fn, *args, **kw).result()

    def alive() -> tuple[str, ...]:
        return tuple(i for i in ha.ids if ha.procs[i].alive())

    def connected_agents() -> int:
        lead = ha.wait_leader(timeout=10)
        code, body = ha.api(lead, "GET", "/dcosd/v1/nodes")
        return code == 200 and sum(1 for n in body["nodes"] if n["connected"] and n["state"] == "ACTIVE")

    ha.start_all()
    leader = c(ha.wait_leader, timeout=60)

    urls = ",".join(ha.urls[i] for i in ha.ids)
    for node, addr in AGENTS.items():
        work = tmp / f"agent-{node}"
        agents_work.append(work)
        agents.append(Proc([*net.prefix_argv(node), *DCOSD, "agent", "--master", urls, "--work-dir", str(work),
                            "--listen", f"{addr}:5051", "--advertise-ip", addr, "--secret", SECRET,
                            "--backend", "process", "--resources", "cpus:4;mem:2048", "--log-level", "debug"],
                           tmp / f"agent-{node}.log", env={"PYTHONPATH": str(REPO)}))
    c(wait_for, lambda: connected_agents() == 2, timeout=60, what="2 agents registered with the leader")

    # Long-running tasks before the faults: each must stay TASK_RUNNING, once, in the same process.
    sleeps = {f"sleep-{k}": str(86400 + k) for k in range(SLEEPS)}
    for tid, arg in sleeps.items():
        code, body = c(ha.api, leader, "POST", "/dcosd/v1/tasks",
                       {"task_id": tid, "name": tid, "argv": ["sleep", arg], "resources": {"cpus": 0.1, "mem": 16}})
        assert code == 201, body

    def task_states() -> dict[str, str]:
        out = {}
        for tid in sleeps:
            code, t = ha.api(ha.ids[0], "GET", f"/dcosd/v1/tasks/{tid}")
            out[tid] = t["state"] if code == 200 else f"HTTP {code}"
        return out

    c(wait_for, lambda: set(task_states().values()) == {"TASK_RUNNING"}, timeout=60, what="sleep tasks running")
    before = processes_per_task(sleeps, agents_work)
    assert all(len(v["sleep"]) == 1 and len(v["supervisors"]) == 1 for v in before.values()), before

    writers = Writers(ha, net)
    writers.start()
    timeline: list[tuple[str, float]] = []

    def progress(what: str, n: int = 20, timeout: float = 45) -> None:
        start = writers.count()
        wait_for(lambda: writers.count() >= start + n, timeout=timeout, interval=0.05, what=what)
        timeline.append((what, time.monotonic()))

    try:
        progress("writes before the faults")

        # 1) kill -9 of the leader; restarted once the new leader acknowledges writes
        leader = c(ha.wait_leader, timeout=30)
        ha.kill9(leader)
        new = c(ha.wait_leader, tuple(i for i in ha.ids if i != leader), timeout=30)
        assert new != leader
        progress(f"writes after kill -9 of {leader}", n=50)
        ha.start(leader)
        c(ha.wait_reached, ha.ids, timeout=60)
        progress("writes with the killed master back")

        # 2) the leader cut off from the majority (link down on its veth), then healed
        leader = c(ha.wait_leader, timeout=30)
        deposed = ha.procs[leader].log().count("deposed: leader-only work stopped")
        cut = subprocess.run(["ip", "-n", net.ns(leader), "link", "set", "eth0", "down"], capture_output=True,
                             text=True, timeout=20, check=False)
        assert cut.returncode == 0, cut.stderr
        try:
            new = c(ha.wait_leader, tuple(i for i in ha.ids if i != leader), timeout=30)
            assert new != leader
            # check-quorum: alone, the old leader steps down and stops leader-only work (launches, kills)
            wait_for(lambda: ha.procs[leader].log().count("deposed: leader-only work stopped") > deposed,
                     timeout=15, what=f"{leader} deposed while cut off")
            progress(f"writes with {leader} cut off", n=50)
        finally:
            heal = subprocess.run(["ip", "-n", net.ns(leader), "link", "set", "eth0", "up"], capture_output=True,
                                  text=True, timeout=20, check=False)
        assert heal.returncode == 0, heal.stderr
        c(ha.wait_reached, ha.ids, timeout=60)
        assert c(ha.status, leader)["role"] != "leader" or c(ha.wait_leader) == leader
        progress(f"writes with {leader} healed")

        # 3) every master killed at once, then all restarted
        for i in ha.ids:
            ha.procs[i].popen.send_signal(signal.SIGKILL)
        for i in ha.ids:
            ha.procs[i].popen.wait(10)
        assert not alive()
        ha.start_all()
        c(ha.wait_leader, timeout=60)
        progress("writes after restarting every master", n=50, timeout=60)
        c(wait_for, lambda: connected_agents() == 2, timeout=60, what="agents back with the leader")
        progress("writes at the end", n=10)
    finally:
        writers.stop()
    assert len(alive()) == 3, {i: ha.procs[i].log()[-3000:] for i in ha.ids if not ha.procs[i].alive()}
    acked = set(writers.acked)
    assert len(acked) == len(writers.acked)
    print(f"{len(acked)} writes acknowledged; not acknowledged (outcome unknown): {dict(writers.failed)}; "
          f"{[(w, round(t - timeline[0][1], 1)) for w, t in timeline]}")

    # Every acknowledged write on every master, read from that master alone.
    c(ha.wait_caught_up, ha.ids, timeout=60)
    for i in ha.ids:
        code, body = c(ha.api, i, "GET", "/dcosd/v1/roles?stale=1", timeout=30)
        assert code == 200, body
        missing = acked - {r["name"] for r in body["roles"]}
        assert not missing, f"master {i} lost {len(missing)} acknowledged writes, e.g. {sorted(missing)[:5]}"

    # The masters' replicated state is identical (retried: a heartbeat or status may be in flight).
    def same_state() -> bool:
        c(ha.wait_caught_up, ha.ids, timeout=30)
        dumps = [ha.dump(i) for i in ha.ids]
        return dumps[0] == dumps[1] == dumps[2]

    wait_for(same_state, timeout=30, interval=0.5, what="identical state dumps")

    # Tasks: neither lost nor duplicated nor relaunched.
    assert c(task_states) == {tid: "TASK_RUNNING" for tid in sleeps}
    after = processes_per_task(sleeps, agents_work)
    assert after == before, (before, after)
    code, body = c(ha.api, ha.ids[0], "GET", "/dcosd/v1/tasks")
    assert code == 200
    live = [t["id"] for t in body["tasks"]]
    assert sorted(live) == sorted(sleeps), live


def processes_per_task(sleeps: dict[str, str], works: list[Path]) -> dict[str, dict[str, list[int]]]:
    """For each task: pids of its `sleep` processes and of its supervisors (any agent's sandbox)."""
    out: dict[str, dict[str, list[int]]] = {tid: {"sleep": [], "supervisors": []} for tid in sleeps}
    by_arg = {arg: tid for tid, arg in sleeps.items()}
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if len(cmd) == 2 and cmd[0].endswith("sleep") and cmd[1] in by_arg:
            out[by_arg[cmd[1]]]["sleep"].append(p.info["pid"])
        elif "executor" in cmd:
            for tid in sleeps:
                if any(str(w / "sandboxes" / tid) in part for w in works for part in cmd):
                    out[tid]["supervisors"].append(p.info["pid"])
    for v in out.values():
        v["sleep"].sort()
        v["supervisors"].sort()
    return out
