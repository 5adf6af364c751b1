"""Three masters as real processes on loopback: election, writes through any master, kill -9 of the
leader, a wiped follower rejoining by snapshot; acknowledged writes everywhere, identical state."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.harness.cluster import DCOSD, Proc, free_port, wait_for, world_readable_tmp
from tests.harness.ha_cluster import SECRET, TOKEN, HaCluster, Writer


@pytest.fixture
def ha(tmp_path: Path):
    # Small snapshot chunks: an image of a few hundred KB crosses in many (image.py, transport.py).
    c = HaCluster(tmp_path, env={"DCOSD_RAFT_SNAPSHOT_EVERY": "40", "DCOSD_RAFT_SNAPSHOT_SIZE_RATIO": "0", "DCOSD_RAFT_SNAPSHOT_CHUNK": "16384"})
    try:
        yield c
    finally:
        c.stop_all()


def test_writes_through_any_master_survive_kill9_of_the_leader(ha: HaCluster, tmp_path: Path):
    ha.start_all()
    leader = ha.wait_leader()
    acked: list[str] = []
    for k in range(9):  # three writes through each master; followers redirect to the leader
        i = ha.ids[k % 3]
        assert ha.submit(i, f"w{k}") == 201
        acked.append(f"w{k}")
    for i in ha.ids:  # Mesos semantics: /redirect on any master answers 307 //leader:port
        code, location = ha.redirect(i)
        assert code == 307 and location == "//" + ha.urls[leader].split("://", 1)[1], (i, code, location)

    # Linearizable read on a follower sees the write just acknowledged through another master.
    follower = next(i for i in ha.ids if i != leader)
    assert ha.submit(leader, "just-now") == 201
    acked.append("just-now")
    code, t = ha.api(follower, "GET", "/dcosd/v1/tasks/just-now")
    assert code == 200 and t["id"] == "just-now"

    # An agent given every master registers with the leader, wherever it starts.
    work = world_readable_tmp()
    port = free_port()
    agent = Proc([*DCOSD, "agent", "--master", ",".join(ha.urls[i] for i in ha.ids), "--work-dir", str(work),
                  "--listen", f"127.0.0.1:{port}", "--secret", SECRET, "--backend", "process",
                  "--resources", "cpus:4;mem:1024", "--log-level", "debug"], tmp_path / "agent.log")
    try:
        def connected() -> bool:  # sessions live on the leader: ask it
            lead = ha.wait_leader(timeout=5)
            code, body = ha.api(lead, "GET", "/dcosd/v1/nodes")
            return code == 200 and any(n["connected"] for n in body["nodes"])

        wait_for(connected, timeout=30, what="agent registered with the leader")

        # A writer keeps going while the leader is killed: every acknowledged write must survive.
        stop = threading.Event()
        errors: list[int] = []

        def writer() -> None:
            n = 0
            while not stop.is_set():
                tid = f"c{n}"
                n += 1
                try:
                    code = ha.submit(ha.ids[n % 3], tid)
                except OSError:
                    continue
                if code == 201:
                    acked.append(tid)
                else:
                    errors.append(code)

        th = threading.Thread(target=writer)
        th.start()
        try:
            wait_for(lambda: len(acked) > 30, timeout=20, what="writes before the failover")
            before = len(acked)
            ha.kill9(leader)
            survivors = tuple(i for i in ha.ids if i != leader)
            new_leader = ha.wait_leader(survivors)
            assert new_leader != leader
            wait_for(lambda: len(acked) > before + 20, timeout=30, what="writes acknowledged by the new leader")
        finally:
            stop.set()
            th.join(30)
        assert ha.status(new_leader)["term"] > 0
        wait_for(connected, timeout=30, what="agent re-registered with the new leader")

        ha.start(leader)  # the old leader comes back as a follower and catches up
        ha.assert_kept(acked)
    finally:
        agent.stop()


def test_wiped_follower_rejoins_and_gets_a_snapshot(ha: HaCluster):
    ha.start_all()
    leader = ha.wait_leader()
    for k in range(100):  # > DCOSD_RAFT_SNAPSHOT_EVERY: the log is compacted into snapshots
        assert ha.submit(ha.ids[k % 3], f"s{k}") == 201
    victim = next(i for i in ha.ids if i != leader)
    ha.wait_caught_up(ha.ids)
    ha.stop(victim)
    ha.wipe(victim)
    for k in range(10):  # more writes while it is gone
        assert ha.submit(leader, f"gone{k}") == 201
    ha.start(victim, "--rejoin")
    ha.wait_caught_up(ha.ids, timeout=30)
    st = ha.status(victim)
    assert st["snapshot_index"] > 0, st  # installed a snapshot, not the whole log
    wait_for(lambda: not ha.status(victim)["rejoining"], timeout=20, what="rejoin finished")
    assert {f"s{k}" for k in range(100)} | {f"gone{k}" for k in range(10)} <= ha.queued_ids(victim)
    ha.assert_same_state()
    # It came in chunks, into a file that is now the victim's own image of that index; nothing of
    # the transfer is left beside the database.
    received = re.findall(r"snapshot at index (\d+) received from master \w+: (\d+) bytes in (\d+) chunks",
                          ha.procs[victim].log())
    assert received, ha.procs[victim].log()[-3000:]
    index, size, chunks = map(int, received[-1])
    assert chunks == -(-size // 16384) > 1, received
    images = sorted(p.name for p in ha.data_dir(victim).iterdir() if ".snap" in p.name)
    assert f"state.db.snapshot-{st['snapshot_index']}" in images, images
    assert not [n for n in images if "snap-recv" in n or "snap-in" in n], images
    sent = ha.api(leader, "GET", "/metrics/snapshot?stale=1")[1]
    got = ha.api(victim, "GET", "/metrics/snapshot?stale=1")[1]
    assert sent["replog/snapshots/sent"] >= 1 and got["replog/snapshots/received"] >= 1, (sent, got)
    assert got["replog/snapshots/bytes_received"] >= size
    # A rejoined master refuses --rejoin on a non-empty data directory.
    ha.stop(victim)
    p = ha.start(victim, "--rejoin")
    wait_for(lambda: not p.alive(), timeout=20, what="--rejoin refused on existing state")


def test_followers_killed_mid_write_come_back_with_everything(ha: HaCluster):
    """A follower persists a batch, acknowledges it, then applies in a second transaction: kill -9
    lands anywhere in that, over and over, while the leader keeps taking writes. Every acknowledged
    write ends up applied on every master and the states are identical."""
    ha.start_all()
    leader = ha.wait_leader()
    followers = [i for i in ha.ids if i != leader]
    acked: list[str] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        n = 0
        while not stop.is_set():
            tid = f"f{w}-{n}"
            n += 1
            try:
                if ha.submit(leader, tid) == 201:
                    acked.append(tid)
            except OSError:
                pass

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]  # batches of several
    for th in threads:
        th.start()
    try:
        for round_ in range(4):
            victim = followers[round_ % 2]
            at = len(acked)
            wait_for(lambda: len(acked) > at + 40, timeout=30, what="writes flowing before the kill")
            ha.kill9(victim)
            at = len(acked)
            wait_for(lambda: len(acked) > at + 20, timeout=30, what="writes acknowledged with a follower down")
            ha.start(victim)
            ha.wait_leader(timeout=30)
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    assert ha.wait_leader() == leader  # followers dying never cost the leader its leadership
    ha.assert_kept(acked)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_master_whose_disk_fills_exits_clearly_and_nothing_acknowledged_is_lost(tmp_path: Path):
    """m3's data directory is a 3 MB tmpfs; the cluster takes writes of ~20 KB until it is full.
    m3 stops with exit code 70 and a message naming the full disk (not a traceback, not SQLite's
    "no transaction is active" from rolling back what the full disk already rolled back), the other
    two go on taking writes, a restart on the still-full disk stops the same way, and once there is
    room m3 catches up: every acknowledged write on every master, identical states."""
    ha = HaCluster(tmp_path, env={"DCOSD_RAFT_SNAPSHOT_EVERY": "40", "DCOSD_RAFT_SNAPSHOT_SIZE_RATIO": "0"})
    small = ha.data_dir("m3")
    small.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)], check=True)
    acked: list[str] = []
    pad = "x" * 20_000

    def write(task_id: str) -> bool:
        for i in ha.ids:  # whichever master is up; followers redirect to the leader
            if not ha.procs[i].alive():
                continue
            try:
                code, _ = ha.api(i, "POST", "/dcosd/v1/tasks", {
                    "task_id": task_id, "name": "w", "argv": ["true"], "env": {"PAD": pad},
                    "resources": {"cpus": 0.01, "mem": 4}}, timeout=5)
            except OSError:
                continue  # the master died under this request: its outcome is unknown, not acknowledged
            if code == 201:
                acked.append(task_id)
                return True
        return False

    def stopped_for_the_full_disk(proc: Proc) -> None:
        wait_for(lambda: not proc.alive(), timeout=30, what="m3 stopping on its full disk")
        assert proc.popen.returncode == 70, proc.log()[-2000:]
        out = proc.log()
        assert "Traceback" not in out, out[-3000:]
        assert "no transaction is active" not in out, out[-3000:]
        assert f"cannot write the replicated log in {small / 'state.db'}: the disk is full" in out, out[-3000:]

    try:
        ha.start_all()
        ha.wait_leader()
        n = 0
        while ha.procs["m3"].alive() and n < 1000:
            n += 1
            write(f"f{n}")
        stopped_for_the_full_disk(ha.procs["m3"])
        assert len(acked) >= 20  # the disk filled under load, not at start
        ha.wait_leader(among=("m1", "m2"), timeout=30)
        for k in range(20):  # the remaining majority goes on
            assert wait_for(lambda: write(f"g{k}"), timeout=20, what=f"write g{k} acknowledged by m1 and m2")
        restarted = ha.start("m3")  # the disk is still full
        stopped_for_the_full_disk(restarted)
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        ha.start("m3")
        ha.wait_leader(timeout=30)
        ha.assert_kept(acked, timeout=60)
    finally:
        ha.stop_all()
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_master_with_another_clusters_state_is_refused_until_it_rejoins(tmp_path: Path):
    """Cluster A's m2 data directory (an old disk, a wrong backup) is started as cluster B's m2. Its
    term is higher than B's, so were its messages taken it would depose B's leader and its log would
    win the election: B's acknowledged writes replaced by A's. B's masters refuse its raft stream
    (their cluster ids differ), B goes on with its own history; wiped and started with --rejoin, the
    master joins B."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = HaCluster(tmp_path / "a"), HaCluster(tmp_path / "b")
    try:
        a.start_all()
        a.wait_leader()
        for k in range(5):
            assert a.submit(a.ids[k % 3], f"a{k}") == 201
        for _ in range(3):  # raise A's term above what B will have
            old = a.wait_leader()
            a.kill9(old)
            a.wait_leader(among=tuple(i for i in a.ids if i != old), timeout=30)
            a.start(old)
        assert a.submit(a.wait_leader(timeout=30), "a-last") == 201
        a.wait_caught_up(a.ids)
        a_term = a.status("m2")["term"]
        assert all(a.dump(i)["cluster"] for i in a.ids)  # A's first leader named it
        a.stop_all()

        b.start_all()
        b.wait_leader()
        b_acked = [f"b{k}" for k in range(5) if b.submit(b.ids[k % 3], f"b{k}") == 201]
        assert len(b_acked) == 5
        wait_for(lambda: all(b.dump(i)["cluster"] for i in b.ids), timeout=20, what="B named")
        assert b.dump("m1")["cluster"] != a.dump("m1")["cluster"]
        code, status = b.api("m3", "GET", "/dcosd/v1/cluster")
        assert code == 200 and [(1, status["cluster_id"])] == b.dump("m1")["cluster"]  # shown by `cluster status`
        shown = subprocess.run([*DCOSD, "--master", b.urls["m3"], "--token", TOKEN, "cluster", "status"],
                               capture_output=True, text=True, timeout=30)
        assert status["cluster_id"] in shown.stdout, shown
        assert b.status("m1")["term"] < a_term
        b.stop("m2")
        shutil.rmtree(b.data_dir("m2"))
        shutil.copytree(a.data_dir("m2"), b.data_dir("m2"))
        intruder = b.start("m2")
        wait_for(lambda: "belongs to another cluster" in intruder.log(), timeout=20,
                 what="the intruder told that B refuses it")
        for k in range(5):  # B goes on, on its own history
            assert b.submit(b.wait_leader(among=("m1", "m3")), f"b-after{k}") == 201
            b_acked.append(f"b-after{k}")
        b.wait_caught_up(("m1", "m3"))
        for i in ("m1", "m3"):
            assert "refusing raft messages" in b.procs[i].log()
            assert b.status(i)["term"] < a_term  # its votes and appends never arrived
            assert set(b_acked) <= b.queued_ids(i) and not any(t.startswith("a") for t in b.queued_ids(i))
        assert intruder.alive()  # it waits, refused, with A's state untouched
        assert {f"a{k}" for k in range(5)} <= b.queued_ids("m2")

        b.stop("m2")  # the way out its log names
        b.wipe("m2")
        b.start("m2", "--rejoin")
        b.wait_caught_up(b.ids, timeout=30)
        assert set(b_acked) <= b.queued_ids("m2") and not any(t.startswith("a") for t in b.queued_ids("m2"))
        b.assert_same_state()
    finally:
        a.stop_all()
        b.stop_all()


def test_a_data_directory_started_as_another_master_is_refused(ha: HaCluster, tmp_path: Path):
    """m3's directory started with --id m1 (a config mix-up): refused at start, naming whose state it
    is; m3's own start afterwards is unaffected."""
    ha.start_all()
    ha.wait_leader()
    assert ha.submit("m1", "before") == 201
    ha.stop("m3")
    wrong = Proc([*DCOSD, "master", "--data-dir", str(ha.data_dir("m3")), "--listen", f"127.0.0.1:{free_port()}",
                  "--peers", ha.peers, "--id", "m1", "--secret-file", str(tmp_path / "secret"),
                  "--operator-token-file", str(tmp_path / "token"), "--dns-listen", "off"], tmp_path / "wrong.log")
    try:
        assert wrong.popen.wait(30) == 1
    finally:
        wrong.stop()
    assert "holds the state of master 'm3', not 'm1': start it with --id m3" in wrong.log(), wrong.log()
    assert "Traceback" not in wrong.log()
    ha.start("m3")
    ha.wait_leader(timeout=30)
    assert ha.submit("m3", "after") == 201
    ha.wait_caught_up(ha.ids)
    assert {"before", "after"} <= ha.queued_ids("m3")


def test_masters_started_with_different_peers_refuse_each_other(tmp_path: Path):
    """m3 started with a --peers list of five masters: with two views of what a majority is, two
    leaders could share a term. m1 and m2 refuse its raft stream and it refuses theirs; the two elect
    a leader and take writes on their own, and m3, restarted with the same list, joins them."""
    ha = HaCluster(tmp_path)
    try:
        ha.start("m1")
        ha.start("m2")
        five = f"{ha.peers},m4=http://127.0.0.1:{free_port()},m5=http://127.0.0.1:{free_port()}"
        wrong = Proc([*DCOSD, "master", "--data-dir", str(ha.data_dir("m3")), "--listen", f"127.0.0.1:{ha.ports['m3']}",
                      "--peers", five, "--id", "m3", "--secret-file", str(tmp_path / "secret"),
                      "--operator-token-file", str(tmp_path / "token"), "--dns-listen", "off"], tmp_path / "wrong.log")
        try:
            leader = ha.wait_leader(among=("m1", "m2"), timeout=30)
            acked = [f"p{k}" for k in range(5) if ha.submit(leader, f"p{k}") == 201]
            assert len(acked) == 5
            wait_for(lambda: "started with --peers of masters m1,m2,m3,m4,m5, this master with m1,m2,m3"
                     in ha.procs[leader].log(), timeout=20, what="the leader refusing m3's stream")
            wait_for(lambda: "it was started with --peers of masters m1,m2,m3, this master with m1,m2,m3,m4,m5"
                     in wrong.log(), timeout=20, what="m3 refusing the others' streams")
            assert wrong.alive() and "Traceback" not in wrong.log()
            assert ha.queued_ids("m3") == set()  # nothing crossed
        finally:
            wrong.stop()
        ha.start("m3")
        ha.wait_leader(timeout=30)
        ha.assert_kept(acked)
    finally:
        ha.stop_all()


def test_masters_started_with_one_id_refuse_each_other(tmp_path: Path):
    """One config copied to every machine: all three start as --id m1. Each would take the others'
    votes as m1's and all three could lead the same term. Every raft stream is refused instead (what
    each sends to m2 and m3 arrives at an m1), nobody leads, nothing is written; with their own ids
    (directories emptied: each recorded itself as m1) they form the cluster."""
    ha = HaCluster(tmp_path)
    same = {i: Proc([*DCOSD, "master", "--data-dir", str(ha.data_dir(i)), "--listen", f"127.0.0.1:{ha.ports[i]}",
                     "--peers", ha.peers, "--id", "m1", "--secret-file", str(tmp_path / "secret"),
                     "--operator-token-file", str(tmp_path / "token"), "--dns-listen", "off"],
                    tmp_path / f"same-{i}.log") for i in ha.ids}
    try:
        for i, p in same.items():  # nobody dials m1's address: everyone thinks it is m1
            told = ["master m2 refused raft messages: its --id or --peers differ"]
            if i != "m1":
                told.append(f"master m1 sent raft messages for master {i} to this master, m1")
            wait_for(lambda p=p, told=told: all(t in p.log() for t in told), timeout=30, what=f"{i} refusing")
        for i, p in same.items():
            assert p.alive() and "Traceback" not in p.log()
            assert ha.api(i, "GET", "/dcosd/v1/cluster?stale=1")[1]["leader"] is None
    finally:
        for p in same.values():
            p.stop()
    try:
        for i in ha.ids:
            shutil.rmtree(ha.data_dir(i))
        ha.start_all()
        leader = ha.wait_leader(timeout=30)
        acked = [f"i{k}" for k in range(5) if ha.submit(leader, f"i{k}") == 201]
        assert len(acked) == 5
        ha.assert_kept(acked)
    finally:
        ha.stop_all()


def test_cluster_status_shows_every_master_the_leader_term_commit_and_lag(ha: HaCluster, tmp_path: Path):
    ha.start_all()
    leader = ha.wait_leader()
    down, up = [i for i in ha.ids if i != leader]
    for k in range(5):
        assert ha.submit(leader, f"c{k}") == 201
    ha.stop(down)
    for k in range(5, 25):  # the stopped follower falls behind by these
        assert ha.submit(leader, f"c{k}") == 201

    def status(via: str) -> tuple[dict, str]:
        def cli(*args: str) -> str:
            cp = subprocess.run([*DCOSD, "--master", ha.urls[via], "--token", TOKEN, "cluster", "status", *args],
                                capture_output=True, text=True, timeout=30)
            assert cp.returncode == 0, cp.stderr
            return cp.stdout
        return json.loads(cli("--json")), cli()

    def behind() -> tuple[dict, str] | None:
        seen, text = status(up)  # a follower answers with the leader's view
        m = {x["id"]: x for x in seen["masters"]}
        return (m, text) if m[down]["lag"] >= 20 and m[up]["lag"] == 0 else None

    m, text = wait_for(behind, timeout=20, what="the leader's view: one follower 20 behind, one caught up")
    commit = m[leader]["commit_index"]
    assert [i for i in m if m[i]["leader"]] == [leader] and m[leader]["role"] == "leader"
    assert commit >= 25 and m[up]["match_index"] == commit and m[down]["match_index"] <= commit - 20
    assert len({x["term"] for x in m.values()}) == 1 and m[leader]["term"] >= 1
    assert m[down]["reachable"] is False and m[up]["reachable"] is True
    lines = {ln.split()[1]: ln.split() for ln in text.splitlines() if ln.startswith("http://")}
    assert lines[leader][2:4] == ["leader", "yes"] and lines[leader][5] == str(commit)
    assert lines[down][2] == "unreachable" and int(lines[down][-1]) >= 20 and lines[up][-1] == "0"
    ha.start(down)
    wait_for(lambda: {x["id"]: x for x in status(leader)[0]["masters"]}[down]["lag"] == 0, timeout=30,
             what="the restarted follower caught up in the leader's view")


def test_a_master_that_reaches_its_peers_but_is_not_reached_says_so(tmp_path: Path):
    """m3 listens on another port than its URL in --peers: it reaches m1 and m2, their streams to it
    go nowhere, so it never hears a reply. It says what to check; m1 and m2 go on and never say it."""
    ha = HaCluster(tmp_path, env={"DCOSD_RAFT_INBOUND_GRACE": "2"})
    try:
        ha.start("m1")
        ha.start("m2")
        astray = Proc([*DCOSD, "master", "--data-dir", str(ha.data_dir("m3")), "--listen", f"127.0.0.1:{free_port()}",
                       "--peers", ha.peers, "--id", "m3", "--secret-file", str(tmp_path / "secret"),
                       "--operator-token-file", str(tmp_path / "token"), "--dns-listen", "off"],
                      tmp_path / "astray.log", env={"DCOSD_RAFT_INBOUND_GRACE": "2"})
        try:
            leader = ha.wait_leader(among=("m1", "m2"), timeout=30)
            assert ha.submit(leader, "w") == 201
            wait_for(lambda: f"though this one reaches m1, m2: is {ha.urls['m3']} (this master's URL in --peers) "
                     "where it listens" in astray.log(), timeout=30, what="m3 saying nobody reaches it")
        finally:
            astray.stop()
        for i in ("m1", "m2"):
            assert "no master has opened a raft stream" not in ha.procs[i].log()
    finally:
        ha.stop_all()


def test_a_backup_restores_a_new_cluster_with_every_write_acknowledged_before_it(tmp_path: Path):
    """`dcosd cluster backup` through a follower, writes after it, every master lost. Three empty
    directories started with --restore-from the file: they elect a leader and hold exactly what was
    acknowledged before the backup, as a new cluster (a new id: a directory of the old one is
    refused), and take writes again."""
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, new = HaCluster(tmp_path / "old", env={"DCOSD_RAFT_SNAPSHOT_EVERY": "40", "DCOSD_RAFT_SNAPSHOT_SIZE_RATIO": "0"}), HaCluster(tmp_path / "new")
    backup = tmp_path / "cluster.backup"
    try:
        old.start_all()
        leader = old.wait_leader()
        before = [f"before{k}" for k in range(60) if old.submit(old.ids[k % 3], f"before{k}") == 201]
        assert len(before) == 60  # past a snapshot: the backup is not the log
        follower = next(i for i in old.ids if i != leader)
        cp = subprocess.run([*DCOSD, "--master", old.urls[follower], "--token", TOKEN, "cluster", "backup",
                             str(backup)], capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0 and f"to {backup}" in cp.stdout, cp
        for k in range(5):
            assert old.submit(leader, f"after{k}") == 201
        old_cluster = old.dump("m1")["cluster"]
        old.stop_all()  # every master lost

        bad = subprocess.run([*DCOSD, "master", "--data-dir", str(new.data_dir("m1")), "--peers", new.peers,
                              "--id", "m1", "--restore-from", str(tmp_path / "missing")],
                             capture_output=True, text=True, timeout=30)
        assert bad.returncode == 2 and "--restore-from: cannot read" in bad.stderr, bad
        for i in new.ids:
            new.start(i, "--restore-from", str(backup))
        leader = new.wait_leader(timeout=30)
        new.wait_caught_up(new.ids)
        for i in new.ids:
            kept = new.queued_ids(i)
            assert set(before) <= kept and not any(t.startswith("after") for t in kept), i
        assert new.dump("m1")["cluster"] and new.dump("m1")["cluster"] != old_cluster
        assert new.submit(leader, "restored") == 201
        new.assert_kept(before + ["restored"])

        new.stop("m2")  # the old cluster's m2 directory in its place: refused (another cluster)
        shutil.rmtree(new.data_dir("m2"))
        shutil.copytree(old.data_dir("m2"), new.data_dir("m2"))
        stale = new.start("m2")
        wait_for(lambda: "belongs to another cluster" in stale.log(), timeout=20, what="the old m2 refused")
        assert "after0" not in new.queued_ids(new.wait_leader(among=("m1", "m3")))
        # A directory that holds state is not restored over.
        new.stop("m2")
        again = new.start("m2", "--restore-from", str(backup))
        wait_for(lambda: not again.alive(), timeout=30, what="--restore-from refused on a used directory")
        assert "--restore-from needs an empty data directory" in again.log()
    finally:
        old.stop_all()
        new.stop_all()


def test_transfer_leader_hands_leadership_to_the_named_master(ha: HaCluster):
    """`dcosd cluster transfer-leader --to X`: X leads in the next term, elected at once (the others
    vote for it although their leader is alive, because that leader asked); a writer going on meanwhile
    loses nothing and is never refused (a write whose proposal waited for the transfer goes on to the new
    leader). A master that cannot take over is refused, and the leader leads on."""
    ha.start_all()
    leader = ha.wait_leader()
    term = ha.status(leader)["term"]
    to, other = [i for i in ha.ids if i != leader]

    def transfer(*args: str, via: str = other) -> subprocess.CompletedProcess:
        return subprocess.run([*DCOSD, "--master", ha.urls[via], "--token", TOKEN, "cluster", "transfer-leader",
                               *args], capture_output=True, text=True, timeout=30)

    changes = ha.api(leader, "GET", "/metrics/snapshot")[1]["replog/leader_changes"]
    w = Writer(ha, "t")
    try:
        wait_for(lambda: len(w.acked) >= 20, timeout=20, what="writes before the transfer")
        cp = transfer("--to", to)  # through a follower: redirected to the leader
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout.strip().startswith(f"leadership moved from master {leader} to master {to} at {ha.urls[to]}")
        assert ha.wait_leader() == to and ha.status(to)["term"] == term + 1
        # Monitoring finds the leader by master/elected (Mesos), 1 on the leading master only.
        metrics = {i: ha.api(i, "GET", "/metrics/snapshot?stale=1")[1] for i in ha.ids}
        assert [i for i in ha.ids if metrics[i]["master/elected"] == 1] == [to]
        assert all(x["registrar/log/ensemble_size"] == 3 and x["replog/has_leader"] == 1 and
                   x["replog/term"] == term + 1 for x in metrics.values())
        assert metrics[leader]["replog/leader_changes"] == changes + 1  # the transferee
        assert {k for k in metrics[to] if k.startswith("replog/followers/")} == {
            f"replog/followers/{i}/{g}" for i in (leader, other) for g in ("lag", "reachable")}
        for x in metrics.values():  # every master's own durable writes of the log (a slow disk shows here)
            assert x["replog/disk/durable_writes"] >= 20 and x["replog/disk/slow_writes"] >= 0
            assert 0 < x["replog/disk/write_ms_p50"] <= x["replog/disk/write_ms_p99"] <= x["replog/disk/write_ms_max"]
        before = len(w.acked)
        wait_for(lambda: len(w.acked) >= before + 20, timeout=20, what="writes acknowledged by the new leader")
    finally:
        w.stop()
    assert w.refused == []

    cp = transfer("--to", to, via=leader)
    assert cp.returncode == 0 and f"master {to} leads already" in cp.stdout, cp.stdout + cp.stderr
    cp = transfer("--json", via=to)  # no --to: the follower with the longest log; and back with --json
    assert cp.returncode == 0, cp.stderr
    moved = json.loads(cp.stdout)
    assert moved["previous"] == to and moved["leader"] in (leader, other) and moved["term"] == term + 2
    assert ha.wait_leader() == moved["leader"]
    cp = transfer("--to", to, via=moved["leader"])
    assert cp.returncode == 0 and ha.wait_leader() == to and ha.status(to)["term"] == term + 3, cp.stderr
    cp = transfer("--to", "m9")
    assert cp.returncode != 0 and "no master 'm9'; the masters are m1, m2, m3" in cp.stderr
    assert "Traceback" not in cp.stderr
    ha.stop(other)  # a master that is down cannot take over: the transfer is dropped
    cp = transfer("--to", other, via=to)
    assert cp.returncode != 0 and f"master {other} did not take over" in cp.stderr, cp.stdout + cp.stderr
    assert "Traceback" not in cp.stderr
    assert ha.wait_leader((to, leader)) == to and ha.status(to)["term"] == term + 3
    assert ha.submit(leader, "after-the-refusal") == 201  # and the leader takes writes again
    ha.start(other)
    ha.assert_kept([*w.acked, "after-the-refusal"])


def test_a_leader_stopped_with_sigterm_hands_over_before_it_exits(ha: HaCluster):
    """systemctl stop of the leading master: it hands leadership to a follower before it stops serving,
    so the others need not wait an election timeout for a leader (bench/failover.py --stop: ~15 ms to
    the first write acknowledged, against ~500 ms after kill -9). The follower it names leads in the
    next term; a writer going on meanwhile loses nothing and is never refused."""
    ha.start_all()
    leader = ha.wait_leader()
    term = ha.status(leader)["term"]
    w = Writer(ha, "s")
    try:
        wait_for(lambda: len(w.acked) >= 20, timeout=20, what="writes before the stop")
        ha.stop(leader)
        log = ha.procs[leader].log()
        handed = [ln for ln in log.splitlines() if "handed leadership to master" in ln]
        assert handed, log[-3000:]
        new = handed[0].rsplit("master ", 1)[1].split()[0]
        survivors = tuple(i for i in ha.ids if i != leader)
        assert new in survivors and ha.wait_leader(survivors) == new and ha.status(new)["term"] == term + 1
        before = len(w.acked)
        wait_for(lambda: len(w.acked) >= before + 20, timeout=20, what="writes acknowledged by the new leader")
    finally:
        w.stop()
    assert w.refused == []
    # An operator's DCOSD_MASTER lists every master: the one that is down is passed over.
    cp = subprocess.run([*DCOSD, "--token", TOKEN, "cluster", "status", "--json"], capture_output=True, text=True,
                        timeout=30, env={**os.environ, "DCOSD_MASTER": ",".join(ha.urls[i] for i in (leader, *survivors))})
    assert cp.returncode == 0, cp.stderr
    assert [m["id"] for m in json.loads(cp.stdout)["masters"] if m["leader"]] == [new]
    ha.start(leader)
    ha.assert_kept(w.acked)
