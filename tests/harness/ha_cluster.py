"""Three (or five) `dcosd master --peers` processes, driven like an operator would.

Each master may run under a command prefix (``ip netns exec NS``) at its own host address; by
default all listen on 127.0.0.1 with different ports. Every process started is stopped by pid.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness.cluster import DCOSD, Proc, free_port, kill_tree_of_tasks, wait_for, world_readable_tmp

SECRET = "test-cluster-secret"
TOKEN = "test-operator-token"
NODE_TABLES = {"raft_hard_state", "raft_log", "raft_snapshot", "raft_node", "raft_applied", "log", "sqlite_sequence"}


class HaCluster:
    def __init__(self, tmp: Path, ids: tuple[str, ...] = ("m1", "m2", "m3"), hosts: dict[str, str] | None = None,
                 prefixes: dict[str, list[str]] | None = None, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.ids = ids
        self.hosts = hosts or {i: "127.0.0.1" for i in ids}
        self.ports = {i: (5050 if hosts else free_port()) for i in ids}
        self.prefixes = prefixes or {i: [] for i in ids}
        self.env = env or {}
        self.urls = {i: f"http://{self.hosts[i]}:{self.ports[i]}" for i in ids}
        self.procs: dict[str, Proc] = {}
        (tmp / "secret").write_text(SECRET + "\n")
        (tmp / "token").write_text(TOKEN + "\n")
        self.peers = ",".join(f"{i}={u}" for i, u in self.urls.items())

    def data_dir(self, i: str) -> Path:
        return self.tmp / f"master-{i}"

    def start(self, i: str, *extra: str) -> Proc:
        args = [*self.prefixes[i], *DCOSD, "master", "--data-dir", str(self.data_dir(i)),
                "--listen", f"{self.hosts[i]}:{self.ports[i]}", "--peers", self.peers, "--id", i,
                "--secret-file", str(self.tmp / "secret"), "--operator-token-file", str(self.tmp / "token"),
                "--dns-listen", "off", "--log-level", "debug", *extra]
        old = self.procs.get(i)
        if old is not None:
            old.stop()  # reaps it and closes its log
        proc = Proc(args, self.tmp / f"master-{i}.log", env=self.env)
        self.procs[i] = proc
        return proc

    def start_all(self) -> None:
        for i in self.ids:
            self.start(i)

    def kill9(self, i: str) -> None:
        self.procs[i].kill9()

    def stop(self, i: str) -> None:
        self.procs[i].stop()

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.stop()

    def wipe(self, i: str) -> None:
        shutil.rmtree(self.data_dir(i), ignore_errors=True)

    # -- HTTP ---------------------------------------------------------------------------------
    def api(self, i: str, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        """One call to master ``i``, following 307s by hand (same method, body and token)."""
        url = self.urls[i] + path
        data = None if body is None else json.dumps(body).encode()
        for _ in range(5):
            req = urllib.request.Request(url, data=data, method=method,
                                         headers={"Authorization": f"Bearer {TOKEN}",
                                                  "Content-Type": "application/json"})
            try:
                with _NO_REDIRECTS.open(req, timeout=timeout) as resp:
                    raw = resp.read()
                    return resp.status, json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                raw = exc.read()
                if exc.code in (307, 308):
                    url = urllib.parse.urljoin(url, exc.headers["Location"])
                    continue
                try:
                    return exc.code, json.loads(raw)
                except ValueError:
                    return exc.code, raw.decode(errors="replace")
        raise AssertionError(f"too many redirects for {method} {path}")

    def redirect(self, i: str) -> tuple[int, str | None]:
        req = urllib.request.Request(self.urls[i] + "/redirect", headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with _NO_REDIRECTS.open(req, timeout=5) as resp:
                return resp.status, resp.headers.get("Location")
        except urllib.error.HTTPError as exc:
            exc.read()
            return exc.code, exc.headers.get("Location")

    def status(self, i: str) -> dict[str, Any]:
        """Master ``i``'s own view: role, term, leader, commit and applied index."""
        code, body = self.api(i, "GET", "/dcosd/v1/cluster?stale=1", timeout=3)
        assert code == 200, body
        me = next(m for m in body["masters"] if m.get("self"))
        leader = next((m["id"] for m in body["masters"] if m["leader"]), None)
        return {**me, "leader_id": leader}

    def wait_leader(self, among: tuple[str, ...] | None = None, timeout: float = 20) -> str:
        among = among or tuple(i for i in self.ids if i in self.procs and self.procs[i].alive())

        def agreed() -> str | None:
            views = [self.status(i) for i in among]
            leaders = [v["id"] for v in views if v.get("role") == "leader" and v.get("leading")]
            if len(leaders) == 1 and all(v["leader_id"] == leaders[0] for v in views):
                return leaders[0]
            return None

        return wait_for(agreed, timeout=timeout, interval=0.05, what=f"one leader among {among}")

    def wait_caught_up(self, among: tuple[str, ...], timeout: float = 20) -> int:
        def same() -> int | None:
            applied = {self.status(i)["applied_index"] for i in among}
            return applied.pop() if len(applied) == 1 else None

        return wait_for(same, timeout=timeout, what=f"{among} applied the same index")

    def assert_same_state(self, timeout: float = 30) -> None:
        """Every master's replicated tables are identical. Read at one applied index and retried: an
        agent still reporting task statuses can commit between the reads of two masters."""
        last: list[dict[str, list[tuple]]] = []

        def same() -> bool:
            self.wait_caught_up(self.ids, timeout=timeout)
            last[:] = [self.dump(i) for i in self.ids]
            return all(d == last[0] for d in last)

        try:
            wait_for(same, timeout=timeout, interval=0.2, what="identical state dumps")
        except AssertionError:
            assert last and all(d == last[0] for d in last[1:]), "state dumps differ"  # pytest shows the diff
            raise

    def assert_kept(self, acked: list[str], timeout: float = 30) -> None:
        """Once the masters caught up: every acknowledged write on every master, identical states."""
        self.wait_caught_up(self.ids, timeout=timeout)
        for i in self.ids:
            assert set(acked) <= self.queued_ids(i), f"master {i} lost acknowledged writes"
        self.assert_same_state()

    def wait_reached(self, among: tuple[str, ...], timeout: float = 20) -> int:
        """Every master in ``among`` applied at least what the furthest of them had when this began:
        a restarted or healed master caught up while writes go on. (Followers apply in batches, up to
        a tick behind the leader, so under a steady stream of writes they rarely report the same index
        at the same moment; ``wait_caught_up`` is for a quiet cluster.)"""
        target: list[int] = []

        def reached() -> int | None:
            applied = [self.status(i)["applied_index"] for i in among]
            if not target:
                target.append(max(applied))
            return min(applied) if min(applied) >= target[0] else None

        return wait_for(reached, timeout=timeout, what=f"{among} applied what the furthest of them had")

    def submit(self, i: str, task_id: str, argv: tuple[str, ...] = ("true",)) -> int:
        code, _ = self.api(i, "POST", "/dcosd/v1/tasks", {"task_id": task_id, "name": "w", "argv": list(argv),
                                                           "resources": {"cpus": 0.01, "mem": 4}}, timeout=10)
        return code

    # -- state ----------------------------------------------------------------------------------
    def dump(self, i: str) -> dict[str, list[tuple]]:
        """Every replicated table of master ``i``'s SQLite file, sorted (safe while it runs: WAL)."""
        db = sqlite3.connect(f"file:{self.data_dir(i) / 'state.db'}?mode=ro", uri=True, timeout=10)
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                      if r[0] not in NODE_TABLES]
            return {t: sorted(db.execute(f'SELECT * FROM "{t}"'), key=repr) for t in sorted(tables)}
        finally:
            db.close()

    def queued_ids(self, i: str) -> set[str]:
        db = sqlite3.connect(f"file:{self.data_dir(i) / 'state.db'}?mode=ro", uri=True, timeout=10)
        try:
            return {r[0] for r in db.execute("SELECT task_id FROM queue UNION SELECT id FROM tasks")}
        finally:
            db.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)


class Writer:
    """A client submitting one task at a time through every master in turn (followers redirect),
    recording what was acknowledged and what was refused; a master that is gone is skipped (not a
    refusal). ``argv`` is the tasks' command."""

    def __init__(self, ha: HaCluster, prefix: str, argv: tuple[str, ...] = ("true",)) -> None:
        self.ha, self.prefix, self.argv = ha, prefix, argv
        self.acked: list[str] = []
        self.refused: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            via, tid = self.ha.ids[n % len(self.ha.ids)], f"{self.prefix}{n}"
            try:
                code = self.ha.submit(via, tid, self.argv)
            except OSError:
                continue
            if code == 201:
                self.acked.append(tid)
            else:
                self.refused.append((via, code))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


class MastersWithAgents:
    """Masters (an HaCluster) and the agents of one test, each agent given every master; every
    process stopped by pid at the end, and any task process left behind killed."""

    def __init__(self, tmp: Path, ids: tuple[str, ...] = ("m1", "m2", "m3"), env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.ha = HaCluster(tmp, ids=ids, env=env)
        self.agents: dict[str, tuple[Proc, Path]] = {}
        self.paused: set[str] = set()  # masters stopped with SIGSTOP

    def start_agent(self, name: str, resources: str, *extra: str) -> Path:
        """Agent ``name`` with its own work directory (returned)."""
        work = world_readable_tmp(f"dcosd-ha-{name}-")
        proc = Proc([*DCOSD, "agent", "--master", ",".join(self.ha.urls[i] for i in self.ha.ids),
                     "--work-dir", str(work), "--listen", f"127.0.0.1:{free_port()}", "--secret", SECRET,
                     "--resources", resources, "--no-vips", "--log-level", "debug", *extra],
                    self.tmp / f"agent-{name}.log")
        self.agents[name] = (proc, work)
        return work

    def alive_masters(self) -> tuple[str, ...]:
        return tuple(i for i in self.ha.ids if self.ha.procs[i].alive() and i not in self.paused)

    def leader(self) -> str:
        return self.ha.wait_leader(self.alive_masters(), timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Through the leader; a 2xx answer's body."""
        code, out = self.ha.api(self.leader(), method, path, body)
        assert 200 <= code < 300, (method, path, code, out)
        return out

    def wait_agents(self, n: int) -> None:
        def connected() -> bool:
            nodes = self.call("GET", "/dcosd/v1/nodes")["nodes"]
            return sum(1 for x in nodes if x["connected"] and x["state"] == "ACTIVE") >= n

        wait_for(connected, timeout=30, what=f"{n} agents registered with the leader")

    def stop(self) -> None:
        for i in self.paused:
            self.ha.procs[i].popen.send_signal(signal.SIGCONT)
        for proc, _ in self.agents.values():
            proc.stop()
        self.ha.stop_all()
        for _, work in self.agents.values():
            kill_tree_of_tasks(work)
