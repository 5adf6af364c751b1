"""Replacement masters while writes go on: a follower wiped and started with --rejoin, over and over,
sometimes killed -9 a moment later (in the middle of its start, or of the snapshot arriving in
chunks) and started again with --rejoin. Three masters as real processes; snapshots every 40
entries, sent in 4 KB chunks. Afterwards every acknowledged write is on every master, their states
are identical, and nothing of any transfer is left beside the databases."""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.harness.cluster import wait_for
from tests.harness.ha_cluster import HaCluster, Writer


def restart_after_kill(ha: HaCluster, victim: str) -> None:
    """Start a killed replacement again as an operator would: with --rejoin, which is taken while it is
    still rejoining; if it had caught up before the kill, the flag is refused (it says so and exits),
    and it starts without it."""
    p = ha.start(victim, "--rejoin")

    def settled() -> str | None:
        if not p.alive():
            return "exited"
        try:
            ha.status(victim)
            return "serving"
        except Exception:  # noqa: BLE001 — not listening yet
            return None

    if wait_for(settled, timeout=30, what=f"{victim} restarted") == "exited":
        last = p.log().strip().splitlines()[-1]
        assert "--rejoin needs an empty data directory" in last, last
        ha.start(victim)


def test_wiped_followers_rejoin_through_kills_while_writes_go_on(tmp_path: Path) -> None:
    rng = random.Random(4)
    ha = HaCluster(tmp_path, env={"DCOSD_RAFT_SNAPSHOT_EVERY": "40", "DCOSD_RAFT_SNAPSHOT_SIZE_RATIO": "0", "DCOSD_RAFT_SNAPSHOT_CHUNK": "4096"})
    writer = None
    try:
        ha.start_all()
        ha.wait_leader()
        writer = Writer(ha, "r")
        wait_for(lambda: len(writer.acked) > 200, timeout=60, what="writes before the first wipe")
        killed = 0
        for _ in range(5):
            leader = ha.wait_leader(timeout=30)
            victim = rng.choice([i for i in ha.ids if i != leader])
            ha.stop(victim)
            ha.wipe(victim)
            p = ha.start(victim, "--rejoin")
            if rng.random() < 0.6:
                time.sleep(rng.uniform(0.2, 1.5))  # a fault at a random moment, not a wait for readiness
                p.kill9()
                killed += 1
                restart_after_kill(ha, victim)
            wait_for(lambda: not ha.status(victim)["rejoining"], timeout=60, what=f"{victim} rejoined")
        assert killed >= 2  # the seed kills some starts
        wait_for(lambda: len(writer.acked) > 1000, timeout=60, what="writes after the wipes")
        writer.stop()
        assert writer.refused == []
        ha.assert_kept(writer.acked)
        ha.assert_same_state()
        for i in ha.ids:
            left = [p.name for p in ha.data_dir(i).iterdir() if "snap-recv" in p.name or p.name.endswith(".part")]
            assert left == [], (i, left)
    finally:
        if writer is not None:
            writer.stop()
        ha.stop_all()
