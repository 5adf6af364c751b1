"""Soak: three masters and an agent through a minute of faults, with a client submitting tasks all along.

Every 0-1.5 s, one of: leadership handed to another master (`POST /dcosd/v1/cluster/leader`), SIGTERM of
the leader and a restart (what `systemctl restart` does), kill -9 of the leader, kill -9 of a follower,
or nothing; the seed fixes the sequence, not its timing. Each task appends its id to one file when it
runs. Afterwards every acknowledged task is on every master and TASK_FINISHED, the masters' states are
identical, and no task ran twice — an acknowledged one exactly once. Runs like this found tasks stuck in
TASK_STAGING for good after a failover (test_agent_launch.py) and writes refused during hand-overs
(test_ha_write_forwarding.py).
"""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path

import pytest

from tests.harness.cluster import wait_for
from tests.harness.ha_cluster import MastersWithAgents, Writer

FAULT_SECONDS = 60
OPS = ("transfer", "transfer", "sigterm", "kill9", "kill9-follower", "none")


@pytest.fixture
def lab(tmp_path: Path):
    lab = MastersWithAgents(tmp_path, env={"DCOSD_RAFT_SNAPSHOT_EVERY": "300", "DCOSD_RAFT_SNAPSHOT_SIZE_RATIO": "0"})  # compactions too
    try:
        lab.ha.start_all()
        lab.leader()
        yield lab
    finally:
        lab.stop()


def test_tasks_submitted_through_a_minute_of_leader_faults_each_run_once(lab: MastersWithAgents):
    ha = lab.ha
    work = lab.start_agent("a", "cpus:64;mem:65536", "--backend", "process")
    lab.wait_agents(1)
    shared = work / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # tasks run as nobody (and mkdir's mode is cut by the umask)
    ran = shared / "ran"
    w = Writer(ha, "k", argv=("sh", "-c", f'echo "$DCOSD_TASK_ID" >> {ran}'))
    rng = random.Random(3)
    done = collections.Counter()
    try:
        wait_for(lambda: len(w.acked) >= 10, timeout=30, what="the first tasks acknowledged")
        end = time.monotonic() + FAULT_SECONDS
        while time.monotonic() < end:
            leader = lab.leader()
            op = rng.choice(OPS)
            done[op] += 1
            if op == "transfer":
                code, body = ha.api(rng.choice(ha.ids), "POST", "/dcosd/v1/cluster/leader", {})
                assert code == 200, body
            elif op == "sigterm":
                ha.stop(leader)
                time.sleep(rng.random())  # down for a while: the fault's length, not a wait for readiness
                ha.start(leader)
            elif op == "kill9":
                ha.kill9(leader)
                time.sleep(rng.random())
                ha.start(leader)
            elif op == "kill9-follower":
                follower = rng.choice([i for i in ha.ids if i != leader])
                ha.kill9(follower)
                time.sleep(rng.random())
                ha.start(follower)
            time.sleep(rng.random() * 1.5)  # the next fault comes at a random moment
    finally:
        w.stop()
    assert len(w.acked) > 200 and done["transfer"] and done["kill9"], (len(w.acked), done)

    acked = set(w.acked)

    def finished() -> bool:
        tasks = lab.call("GET", "/dcosd/v1/tasks?all=1&limit=100000")["tasks"]
        return acked <= {t["id"] for t in tasks if t["state"] == "TASK_FINISHED"}

    try:
        wait_for(finished, timeout=180, interval=0.5, what="every acknowledged task TASK_FINISHED")
    except AssertionError:
        tasks = lab.call("GET", "/dcosd/v1/tasks?all=1&limit=100000")["tasks"]
        left = collections.Counter(t["state"] for t in tasks if t["id"] in acked and t["state"] != "TASK_FINISHED")
        raise AssertionError(f"acknowledged tasks not finished, by state: {dict(left)}; faults {dict(done)}") from None
    ha.assert_kept(w.acked)  # on every master, and the same state on all three

    runs = collections.Counter(ran.read_text().split())
    twice = {t: n for t, n in runs.items() if n > 1}
    assert not twice, f"tasks run more than once: {list(twice.items())[:10]}"
    assert acked <= set(runs), f"acknowledged tasks that never ran: {sorted(acked - set(runs))[:10]}"
