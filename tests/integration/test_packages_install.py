"""Every default catalogue package installed with `dcosd package install` on a real master and two agents
(distinct --hostname on loopback): it becomes healthy, answers at its DNS name (the master's DNS, asked
with dnspython), and `dcosd package uninstall` leaves no app and no task. Install-to-healthy times are
written to $DCOSD_PACKAGE_TIMES (bench/packages.py) when set.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import urllib.request
from pathlib import Path

import pytest

from harness.cluster import ClusterFactory, Master, free_port, kill_tree_of_tasks, wait_for, world_readable_tmp

dns_resolver = pytest.importorskip("dns.resolver")

# Distinct port ranges: both agents are on one machine, so the same port on both would collide.
RES = {"a": "cpus:4;mem:4096;disk:1000;ports:[31000-31199]", "b": "cpus:4;mem:4096;disk:1000;ports:[31200-31399]"}
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def cluster():
    tmp = world_readable_tmp("dcosd-pkg-")
    f = ClusterFactory(tmp)
    dns_port = free_port()
    try:
        m = f.master("--dns-listen", f"127.0.0.1:{dns_port}")
        agents = [f.agent(m, "--hostname", f"host-{x}", "--resources", RES[x]) for x in "ab"]
        yield m, agents, dns_port, tmp
    finally:
        f.stop_all()
        for d in tmp.glob("agent-*"):
            if d.is_dir():
                kill_tree_of_tasks(d)
        if os.environ.get("DCOSD_PACKAGE_TIMES"):
            Path(os.environ["DCOSD_PACKAGE_TIMES"]).write_text(json.dumps(TIMES, indent=2))
        shutil.rmtree(tmp, ignore_errors=True)


def resolver(port: int) -> "dns_resolver.Resolver":
    r = dns_resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = port
    r.lifetime = 3
    return r


def srv(port: int, name: str) -> list[tuple[str, int]]:
    r = resolver(port)
    out = []
    for rec in r.resolve(name, "SRV"):
        ip = r.resolve(str(rec.target), "A")[0].address
        out.append((ip, rec.port))
    return sorted(out)


def install(m: Master, tmp: Path, name: str, options: dict | None = None, *extra: str) -> dict:
    args = ["package", "install", name, "--yes", "--json", "--timeout", "90", *extra]
    if options is not None:
        path = tmp / f"{name}-options.json"
        path.write_text(json.dumps(options))
        args += ["--options", str(path)]
    cp = m.cli(*args, timeout=120)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    out = json.loads(cp.stdout)
    assert out["healthy"], out
    TIMES[name] = out["seconds"]
    return out


def live_tasks(m: Master) -> list[dict]:
    return m.get("/dcosd/v1/tasks")["tasks"]


def uninstall_leaves_nothing(m: Master, name: str, app_id: str, *extra: str) -> None:
    cp = m.cli("package", "uninstall", name, *extra, "--json")
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    assert app_id in [r["appId"] for r in json.loads(cp.stdout)["results"]]
    wait_for(lambda: m.api("GET", f"/v2/apps{app_id}")[0] == 404, 30, what=f"{app_id} removed")
    wait_for(lambda: not [t for t in live_tasks(m) if t["name"].startswith(app_id.strip("/"))
                          or app_id in json.dumps(t.get("labels", {}))], 30, what=f"no task of {app_id}")
    listed = json.loads(m.cli("package", "list", "--json", check=True).stdout)["packages"]
    assert app_id not in [p["appId"] for p in listed]


def http_get(host: str, port: int, path: str = "/", data: bytes | None = None, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(f"http://{host}:{port}{path}", data=data, method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, resp.read().decode()


def test_static_files(cluster):
    m, _, dns_port, tmp = cluster
    www = tmp / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("hello from static-files\n")
    os.chmod(www, 0o755)
    os.chmod(www / "index.html", 0o644)
    out = install(m, tmp, "static-files", {"http": {"directory": str(www)}})
    assert out["appId"] == "/static-files"
    assert resolver(dns_port).resolve("static-files.marathon.mesos", "A")[0].address == "127.0.0.1"
    [(host, port)] = srv(dns_port, "_static-files._tcp.marathon.mesos")
    assert http_get(host, port, "/index.html")[1] == "hello from static-files\n"
    uninstall_leaves_nothing(m, "static-files", "/static-files")


def test_memcached(cluster):
    m, _, dns_port, tmp = cluster
    install(m, tmp, "memcached")
    [(host, port)] = srv(dns_port, "_memcached._tcp.marathon.mesos")
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(b"set k 0 0 5\r\nhello\r\nget k\r\n")
        data = b""
        while b"END" not in data:
            data += s.recv(4096)
    assert b"STORED" in data and b"hello" in data
    uninstall_leaves_nothing(m, "memcached", "/memcached")


def test_kvstore(cluster):
    m, _, dns_port, tmp = cluster
    install(m, tmp, "kvstore")
    [(host, port)] = srv(dns_port, "_kvstore._tcp.marathon.mesos")
    assert http_get(host, port, "/keys/colour", b"blue", "PUT")[0] == 204
    assert http_get(host, port, "/keys/colour") == (200, "blue")
    uninstall_leaves_nothing(m, "kvstore", "/kvstore")


def test_redis_node_count_and_dependent_counter(cluster):
    """redis with nodes.count 2 (one per agent: hostname UNIQUE), then redis-counter finding it via DNS SRV."""
    m, _, dns_port, tmp = cluster
    install(m, tmp, "redis", {"nodes": {"count": 2, "mem": 64}, "redis": {"maxmemory_mb": 32}})
    app = m.get("/v2/apps/redis?embed=app.tasks")["app"]
    assert app["instances"] == 2 and app["tasksHealthy"] == 2, {k: app.get(k) for k in
                                                                ("tasksHealthy", "tasksRunning", "tasks", "deployments")} | {"all": [
                                                                (t["state"], t.get("message")) for t in m.get("/dcosd/v1/tasks?all=true")["tasks"]]}
    assert {t["host"] for t in app["tasks"]} == {"host-a", "host-b"}, app["tasks"]
    nodes = srv(dns_port, "_redis._tcp.marathon.mesos")
    assert len(nodes) == 2
    for host, port in nodes:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(100).startswith(b"+PONG")

    install(m, tmp, "redis-counter", {"redis": {"dns_server": f"127.0.0.1:{dns_port}"}})
    [(host, port)] = srv(dns_port, "_redis-counter._tcp.marathon.mesos")
    first = http_get(host, port, "/")[1]
    second = http_get(host, port, "/")[1]
    assert first.startswith("visits: ") and int(second.split()[1]) == int(first.split()[1]) + 1

    uninstall_leaves_nothing(m, "redis-counter", "/redis-counter")
    uninstall_leaves_nothing(m, "redis", "/redis")


def test_offer_runner_framework(cluster):
    """A framework package: its scheduler takes offers and launches its own tasks; uninstall tears it down."""
    m, _, dns_port, tmp = cluster
    install(m, tmp, "offer-runner", {"scheduler": {"master": m.url, "token": m.token},
                                     "tasks": {"count": 3, "cmd": "sleep 600"}})
    [(host, port)] = srv(dns_port, "_offer-runner._tcp.marathon.mesos")

    def running() -> bool:
        status = json.loads(http_get(host, port, "/")[1])
        return list(status["tasks"].values()).count("TASK_RUNNING") == 3

    wait_for(running, 30, what="3 framework tasks running")
    mine = [t for t in live_tasks(m) if t["name"] == "worker"]
    assert len(mine) == 3 and all(t["state"] == "TASK_RUNNING" for t in mine)
    fw = {t["framework_id"] for t in mine}
    assert len(fw) == 1 and fw != {"marathon"}
    uninstall_leaves_nothing(m, "offer-runner", "/offer-runner")
    wait_for(lambda: not [t for t in live_tasks(m) if t["name"] == "worker"], 30, what="framework tasks torn down")
