"""Mesos-DNS on a master, answering from committed state: real master and agent, real DNS clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from harness.cluster import ClusterFactory, free_port, kill_tree_of_tasks, wait_for


@pytest.fixture
def dns_cluster(tmp_path: Path):
    f = ClusterFactory(tmp_path)
    port = free_port()
    m = f.master("--dns-listen", f"127.0.0.1:{port}", "--dns-upstream", "127.0.0.1:9")
    a = f.agent(m, "--resources", "cpus:4;mem:4096;ports:[31500-31600]", "--hostname", "node-a")
    yield m, a, port
    f.stop_all()
    kill_tree_of_tasks(a.work_dir)


def query(port: int, name: str, rtype: str = "A", tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rtype)
    return (dns.query.tcp if tcp else dns.query.udp)(q, "127.0.0.1", port=port, timeout=2)


def answers(msg: dns.message.Message) -> list[str]:
    return sorted(r.to_text() for rrset in msg.answer for r in rrset)


def submit(m, **spec) -> str:
    status, body = m.api("POST", "/dcosd/v1/tasks", spec)
    assert status == 201, body
    return body["task_id"]


def test_running_task_is_named_and_leaves_the_zone_when_killed(dns_cluster):
    m, a, port = dns_cluster
    leader = query(port, "leader.mesos")
    assert answers(leader) == ["127.0.0.1"] and leader.flags & dns.flags.AA
    # the agent registered a moment ago: its record follows within a second
    assert wait_for(lambda: answers(query(port, "slave.mesos")), 1.0, interval=0.02, what="slave.mesos") == ["127.0.0.1"]

    task_id = submit(m, name="web", argv=["sleep", "300"], kill_grace_seconds=0.5,
                     resources={"cpus": 0.1, "mem": 32, "ports": [[31555, 31555]]})
    wait_for(lambda: m.task(task_id)["state"] == "TASK_RUNNING", what="task running")
    a_rec = wait_for(lambda: answers(query(port, "web.dcosd.mesos")), 5, what="A record")
    assert a_rec == ["127.0.0.1"]
    assert answers(query(port, "WEB.DCOSD.MESOS.", tcp=True)) == ["127.0.0.1"]  # case-insensitive, over TCP
    srv = query(port, "_web._tcp.dcosd.mesos", "SRV")
    (rdata,) = [r for rrset in srv.answer for r in rrset]
    assert rdata.port == 31555 and rdata.priority == 0 and rdata.weight == 1
    # a known name asked for another type: NOERROR, no answers, SOA in authority
    other = query(port, "web.dcosd.mesos", "SRV")
    assert other.rcode() == dns.rcode.NOERROR and not other.answer and other.authority

    cli = m.cli("dns", "lookup", "web.dcosd.mesos", "--json", check=True)
    assert json.loads(cli.stdout) == [{"host": "web.dcosd.mesos.", "ip": "127.0.0.1"}]
    srv_cli = json.loads(m.cli("dns", "lookup", "_web._tcp.dcosd.mesos", "--type", "SRV", "--json", check=True).stdout)
    assert [r["port"] for r in srv_cli] == ["31555"]
    assert "web.dcosd.mesos" in m.cli("dns", "list", check=True).stdout

    m.cli("task", "kill", task_id, check=True)
    wait_for(lambda: m.task(task_id)["state"] == "TASK_KILLED", what="task killed")
    t_killed = time.monotonic()
    gone = wait_for(lambda: (r := query(port, "web.dcosd.mesos")).rcode() == dns.rcode.NXDOMAIN and r, 5,
                    interval=0.02, what="the name to leave the zone")
    assert time.monotonic() - t_killed < 1.0  # a change is visible within a second of its commit
    assert gone.authority and gone.authority[0].rdtype == dns.rdatatype.SOA
    missing = m.cli("dns", "lookup", "web.dcosd.mesos")
    assert missing.returncode == 3


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) is not installed")
def test_dig_reads_the_zone(dns_cluster):
    _, _, port = dns_cluster
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "master.mesos"], capture_output=True,
                         text=True, timeout=10, check=True).stdout.split()
    assert out == ["127.0.0.1"]
    nx = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "nothing-here.mesos"], capture_output=True, text=True,
                        timeout=10).stdout
    assert "status: NXDOMAIN" in nx
