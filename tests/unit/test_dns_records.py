"""Mesos-DNS naming (COMPAT.md §4): label rules and every record kind, over pure snapshots."""

from __future__ import annotations

import random
import string

import pytest

from dcosd.master.dns.labels import domain_frag, label, slave_id_tail, valid_name
from dcosd.master.dns.records import (
    DnsAgent,
    DnsConfig,
    DnsFramework,
    DnsMaster,
    DnsPort,
    DnsSnapshot,
    DnsTask,
    Soa,
    Srv,
    build_records,
    hash_string,
)
from dcosd.model.states import TaskState

# ----------------------------------------------------------------------------- labels
# Cases from mesos-dns records/labels/labels_test.go (RFC 1123 flavour), plus our own.
LABEL_CASES = {
    "": "",
    "a": "a",
    "-": "",
    "a---": "a",
    "---a---": "a",
    "---a---b": "a---b",
    "a.b.c.d.e": "a-b-c-d-e",
    "a.c.d_de.": "a-c-d-de",
    "abc123": "abc123",
    "-abc123": "abc123",
    "abc123-": "abc123",
    "abc-123": "abc-123",
    "abc--123": "abc--123",
    "r29f.dev.angrypigs": "r29f-dev-angrypigs",
    "4abc123": "4abc123",
    "-4abc123": "4abc123",
    "89fdgsf---gs7-fgs--d7fddg-123": "89fdgsf---gs7-fgs--d7fddg-123",
    "89fdgsf---gs7-fgs--d7fddg---123": "89fdgsf---gs7-fgs--d7fddg---123",
    "89fdgsf---gs7-fgs--d7fddg-": "89fdgsf---gs7-fgs--d7fddg",
    "fd%gsf---gs7-f$gs--d7fddg-123": "fdgsf---gs7-fgs--d7fddg-123",
    "fd%gsf---gs7-f$gs--d7fddg123456789012345678901234567890123456789-123":
        "fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891",
    "$$fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789-123":
        "fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891",
    "%%fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789---123":
        "fdgsf---gs7-fgs--d7fddg1234567890123456789012345678901234567891",
    "##fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789-":
        "fdgsf---gs7-fgs--d7fddg123456789012345678901234567890123456789",
    "hello--------------------------------------------------------f":
        "hello--------------------------------------------------------f",
    "hello----------------------------------------------------------f": "hellof",
    # lower-case; '.', '_', '-' → '-'; everything else dropped, non-ASCII too
    "MyApp": "myapp",
    "my_app.v2": "my-app-v2",
    "chronos with a space AND MIXED CASE-2.0.1": "chronoswithaspaceandmixedcase-2-0-1",
    "héllo wörld": "hllowrld",
    "a😀b": "ab",
    "___": "",
    "x" * 70: "x" * 63,
    # mesos-dns would give "abc-" here (refill after the cut); we never end with '-'
    "ab--c-d" + "": "ab--c-d",
}


@pytest.mark.parametrize("raw,want", sorted(LABEL_CASES.items()))
def test_label(raw: str, want: str) -> None:
    assert label(raw) == want


def test_label_refill_never_ends_with_dash() -> None:
    assert label("ab--c-d", maxlen=4) == "abc"


DOMAIN_FRAG_CASES = {
    "": "",
    ".": "",
    "..": "",
    "...": "",
    "a": "a",
    "abc.": "abc",
    ".abc": "abc",
    "a.c": "a.c",
    "a..c": "a.c",
    "ab.cd.efg": "ab.cd.efg",
    "a..c.e": "a.c.e",
    "host.com": "host.com",
    "space space.com": "spacespace.com",
    "blah-dash.com": "blah-dash.com",
    "not$1234.com": "not1234.com",
    "(@ host . com": "host.com",
    "MiXeDcase.CoM": "mixedcase.com",
    "pod_123$abc.marathon-0.6.0-dev.mesos": "pod-123abc.marathon-0.6.0-dev.mesos",
    "marathon.prod": "marathon.prod",
}


@pytest.mark.parametrize("raw,want", sorted(DOMAIN_FRAG_CASES.items()))
def test_domain_frag(raw: str, want: str) -> None:
    assert domain_frag(raw) == want


def test_label_properties_random() -> None:
    rng = random.Random(7)
    alphabet = string.printable + "éü😀"
    for _ in range(3000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 90)))
        lab = label(raw)
        assert len(lab) <= 63
        assert set(lab) <= set(string.ascii_lowercase + string.digits + "-")
        assert not lab.startswith("-") and not lab.endswith("-")
        assert label(lab) == lab  # idempotent
        frag = domain_frag(raw)
        assert all(part and part == label(part) for part in frag.split(".")) or frag == ""


def test_valid_name_and_agent_tail() -> None:
    assert valid_name("a.b.mesos.")
    assert valid_name("_nginx._tcp.marathon.mesos")
    assert not valid_name("a..mesos.")
    assert not valid_name("-a.mesos.")
    assert not valid_name("x" * 64 + ".mesos.")
    assert not valid_name(".".join(["abcdefghi"] * 26))
    assert slave_id_tail("7f3a-0e1c-S12") == "s12"
    assert slave_id_tail("S3") == "s3"


def test_hash_string_matches_mesos_dns() -> None:
    assert hash_string("test") == "iffe9"  # mesos-dns TestHashString
    assert len({hash_string(f"t{i}") for i in range(2000)}) == 2000


# ----------------------------------------------------------------------------- records
M1 = DnsMaster("m1", "10.0.0.1")
M2 = DnsMaster("m2", "10.0.0.2")
M3 = DnsMaster("m3", "10.0.0.3")
AG1 = DnsAgent("aaaa-S1", "agent1", "10.0.1.1")
AG2 = DnsAgent("bbbb-S2", "agent2", "10.0.1.2")


def task(tid: str = "t1", name: str = "nginx", fw: str = "marathon", agent: str = "aaaa-S1", **kw) -> DnsTask:
    kw.setdefault("state", "TASK_RUNNING")
    return DnsTask(tid, name, fw, agent, **kw)


def snap(*tasks: DnsTask, **kw) -> DnsSnapshot:
    kw.setdefault("masters", (M1, M2, M3))
    kw.setdefault("leader", M2)
    kw.setdefault("agents", (AG1, AG2))
    kw.setdefault("frameworks", (DnsFramework("fw-1", "marathon", "10.0.0.2", 8080),))
    return DnsSnapshot(tasks=tuple(tasks), **kw)


def canonical(t: DnsTask, name: str, fw: str = "marathon") -> str:
    return f"{name}-{hash_string(t.task_id)}-{slave_id_tail(t.agent_id)}.{fw}"


def test_task_a_records_use_agent_ip_without_task_ip() -> None:
    t = task()
    rs = build_records(snap(t))
    c = canonical(t, "nginx")
    assert rs.get("nginx.marathon.mesos", "A") == ("10.0.1.1",)
    assert rs.get("nginx.marathon.slave.mesos.", "A") == ("10.0.1.1",)
    assert rs.get(c + ".mesos.", "A") == ("10.0.1.1",)
    assert rs.get(c + ".slave.mesos.", "A") == ("10.0.1.1",)


def test_task_a_records_prefer_task_ip_but_slave_name_is_agent() -> None:
    t = task(ip="172.17.0.5")
    rs = build_records(snap(t))
    assert rs.get("nginx.marathon.mesos.", "A") == ("172.17.0.5",)
    assert rs.get("nginx.marathon.slave.mesos.", "A") == ("10.0.1.1",)
    t6 = task(ip="fd01:b::1:8000:2")
    rs6 = build_records(snap(t6))
    assert rs6.get("nginx.marathon.mesos.", "AAAA") == ("fd01:b::1:8000:2",)
    assert rs6.get("nginx.marathon.mesos.", "A") == ()


def test_instances_of_one_app_share_a_name() -> None:
    a = task("t1", ip="172.17.0.1")
    b = task("t2", agent="bbbb-S2", ip="172.17.0.2")
    rs = build_records(snap(a, b))
    assert set(rs.get("nginx.marathon.mesos.", "A")) == {"172.17.0.1", "172.17.0.2"}
    assert set(rs.get("nginx.marathon.slave.mesos.", "A")) == {"10.0.1.1", "10.0.1.2"}


def test_srv_records_without_discovery_name() -> None:
    t = task(ports=(DnsPort(31000), (31001, "udp")))
    rs = build_records(snap(t))
    target = canonical(t, "nginx") + ".slave.mesos."
    want = {Srv(0, 1, 31000, target), Srv(0, 1, 31001, target)}
    for name in ("_nginx._tcp.marathon.mesos.", "_nginx._udp.marathon.mesos.",
                 "_nginx._tcp.marathon.slave.mesos.", "_nginx._udp.marathon.slave.mesos."):
        assert set(rs.get(name, "SRV")) == want, name


def test_discovery_name_of_grouped_app() -> None:
    t = task(name="app", ip="172.17.0.9", ports=(DnsPort(8080, "tcp", "http"),), discovery_name="app.grp")
    rs = build_records(snap(t))
    for name in ("app.grp", "app-grp"):
        assert rs.get(f"{name}.marathon.mesos.", "A") == ("172.17.0.9",)
        assert rs.get(f"{name}.marathon.slave.mesos.", "A") == ("10.0.1.1",)
        c = canonical(t, name)
        # host-port SRVs under .slave (both protocols), discovery SRVs at the framework (its protocol)
        for proto in ("_tcp", "_udp"):
            assert rs.get(f"_{name}.{proto}.marathon.slave.mesos.", "SRV") == (Srv(0, 1, 8080, c + ".slave.mesos."),)
        assert rs.get(f"_{name}._tcp.marathon.mesos.", "SRV") == (Srv(0, 1, 8080, c + ".mesos."),)
        assert rs.get(f"_{name}._udp.marathon.mesos.", "SRV") == ()
        assert rs.get(f"_http._{name}._tcp.marathon.mesos.", "SRV") == (Srv(0, 1, 8080, c + ".mesos."),)
        assert rs.get(c + ".mesos.", "A") == ("172.17.0.9",)
    # the task's own name is not used when a discovery name is given
    assert not rs.exists("app.marathon.mesos.") or rs.get("app.marathon.mesos.", "A") == ()


def test_discovery_port_without_protocol_gives_both() -> None:
    t = task(name="x", ports=(DnsPort(80, ""),), discovery_name="web")
    rs = build_records(snap(t))
    assert rs.get("_web._tcp.marathon.mesos.", "SRV") and rs.get("_web._udp.marathon.mesos.", "SRV")


def test_task_and_framework_names_are_mangled() -> None:
    t = task(name="API_Server.v2", fw="Marathon.Prod")
    rs = build_records(snap(t, frameworks=()))
    assert rs.get("api-server-v2.marathon.prod.mesos.", "A") == ("10.0.1.1",)


def test_only_running_tasks_on_known_agents() -> None:
    states = [s for s in TaskState if s is not TaskState.RUNNING]
    tasks = [task(f"t{i}", name=f"n{i}", state=s) for i, s in enumerate(states)]
    tasks.append(task("ghost", name="ghost", agent="unknown-S9"))
    tasks.append(task("ok", name="ok", state=TaskState.RUNNING))
    rs = build_records(snap(*tasks))
    for i in range(len(states)):
        assert not rs.exists(f"n{i}.marathon.mesos."), states[i]
    assert not rs.exists("ghost.marathon.mesos.")
    assert rs.get("ok.marathon.mesos.", "A") == ("10.0.1.1",)


def test_only_healthy_when_health_is_known() -> None:
    rs = build_records(snap(task("a", name="sick", healthy=False), task("b", name="well", healthy=True),
                            task("c", name="unchecked", healthy=None)))
    assert not rs.exists("sick.marathon.mesos.")
    assert rs.exists("well.marathon.mesos.")
    assert rs.exists("unchecked.marathon.mesos.")


def test_master_leader_and_agent_records() -> None:
    rs = build_records(snap())
    assert rs.get("leader.mesos.", "A") == ("10.0.0.2",)
    assert set(rs.get("master.mesos.", "A")) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    assert [rs.get(f"master{i}.mesos.", "A") for i in range(3)] == [("10.0.0.1",), ("10.0.0.2",), ("10.0.0.3",)]
    assert not rs.exists("master3.mesos.")
    assert rs.get("_leader._tcp.mesos.", "SRV") == (Srv(0, 1, 5050, "leader.mesos."),)
    assert rs.get("_leader._udp.mesos.", "SRV") == (Srv(0, 1, 5050, "leader.mesos."),)
    assert set(rs.get("slave.mesos.", "A")) == {"10.0.1.1", "10.0.1.2"}
    assert rs.get("_slave._tcp.mesos.", "SRV") == (Srv(0, 1, 5051, "slave.mesos."),)
    assert rs.get("marathon.mesos.", "A") == ("10.0.0.2",)
    assert rs.get("_framework._tcp.marathon.mesos.", "SRV") == (Srv(0, 1, 8080, "marathon.mesos."),)
    assert set(rs.get("ns1.mesos.", "A")) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}


def test_leader_missing_from_masters_gets_next_index_and_duplicates_skipped() -> None:
    rs = build_records(snap(masters=(M1, M1, M3), leader=DnsMaster("m9", "10.0.0.9")))
    assert rs.get("master0.mesos.", "A") == ("10.0.0.1",)
    assert rs.get("master1.mesos.", "A") == ("10.0.0.3",)
    assert rs.get("master2.mesos.", "A") == ("10.0.0.9",)
    assert set(rs.get("master.mesos.", "A")) == {"10.0.0.1", "10.0.0.3", "10.0.0.9"}


def test_no_leader_still_lists_masters() -> None:
    rs = build_records(snap(leader=None))
    assert not rs.exists("leader.mesos.")
    assert rs.get("master0.mesos.", "A") == ("10.0.0.1",)


def test_scheduler_without_ip_has_no_record() -> None:
    rs = build_records(snap(frameworks=(DnsFramework("f", "chronos"), DnsFramework("g", "spark", "host.name"))))
    assert not rs.exists("chronos.mesos.") and not rs.exists("spark.mesos.")


def test_soa_ns_and_custom_config() -> None:
    rs = build_records(snap(serial=42), DnsConfig(domain="DC1.Example", ttl=5, ns_ips=("192.0.2.53",)))
    assert rs.domain == "dc1.example."
    assert rs.get("dc1.example.", "SOA") == (Soa("ns1.dc1.example.", "root.ns1.dc1.example.", 42, 60, 600, 86400, 5),)
    assert rs.get("dc1.example.", "NS") == ("ns1.dc1.example.",)
    assert rs.get("ns1.dc1.example.", "A") == ("192.0.2.53",)
    assert rs.ttl == 5
    assert rs.get("leader.dc1.example.", "A") == ("10.0.0.2",)
    with pytest.raises(ValueError):
        build_records(snap(), DnsConfig(domain="bad..-domain"))


def test_case_insensitive_lookup_and_zone() -> None:
    rs = build_records(snap(task()))
    assert rs.get("NGINX.Marathon.MESOS", "a") == ("10.0.1.1",)
    assert rs.exists("Leader.Mesos.")
    assert rs.in_zone("X.MESOS.") and rs.in_zone("mesos") and not rs.in_zone("notmesos.") and not rs.in_zone("com.")


def test_empty_non_terminals_exist_without_data() -> None:
    rs = build_records(snap(task()))
    assert rs.exists("marathon.slave.mesos.") and rs.records["marathon.slave.mesos."] == {}
    assert rs.exists("_tcp.marathon.mesos.")
    assert not rs.exists("nothing.mesos.")


def test_long_names_stay_valid_on_the_wire() -> None:
    long = "a" * 63
    t = task(name=long, ports=(DnsPort(80),))
    rs = build_records(snap(t))
    assert rs.get(f"{long}.marathon.mesos.", "A") == ("10.0.1.1",)
    assert all(valid_name(n) for n in rs.records)
    c = [n for n in rs.records if n.startswith("aaaa") and n.count("-") == 2 and n.endswith(".marathon.mesos.")]
    assert c and all(len(n.split(".")[0]) <= 63 for n in c)
    # "_" + 63 characters is one too many for a label: that SRV is left out and counted
    assert rs.get(f"_{long}._tcp.marathon.mesos.", "SRV") == ()
    assert rs.skipped > 0
    # a name that mangles to nothing gets nothing
    rs2 = build_records(snap(task(name="$$$"), task("t2", fw="%%%")))
    assert rs2.enumeration and rs2.skipped == 0
    assert not any(n.endswith(".marathon.mesos.") and "$" in n for n in rs2.records)


def test_enumeration_shape() -> None:
    t = task(ports=(DnsPort(80),))
    rs = build_records(snap(t, task("t9", state="TASK_STAGING")))
    body = rs.enumerate_json()
    (fw,) = body["frameworks"]
    assert fw["name"] == "marathon"
    (et,) = fw["tasks"]
    assert et["name"] == "nginx" and et["id"] == "t1"
    kinds = {(r["name"], r["rtype"]) for r in et["records"]}
    assert ("nginx.marathon.mesos.", "A") in kinds
    assert ("_nginx._tcp.marathon.mesos.", "SRV") in kinds
    srv = [r for r in et["records"] if r["rtype"] == "SRV"][0]
    assert srv["host"].endswith(".slave.mesos.:80")
    axfr = rs.rrsets_json()
    assert axfr["As"]["leader.mesos."] == ["10.0.0.2"]
    assert any(v[0].endswith(":80") for v in axfr["SRVs"].values())


def test_recordset_is_immutable_and_build_deterministic() -> None:
    s = snap(task(), task("t2", name="web", ports=(80, 81)))
    a, b = build_records(s), build_records(s)
    assert dict(a.records) == dict(b.records)
    with pytest.raises(TypeError):
        a.records["x.mesos."] = {}  # type: ignore[index]


def test_two_thousand_tasks() -> None:
    agents = tuple(DnsAgent(f"ag{i}-S{i}", f"h{i}", f"10.1.{i // 250}.{i % 250 + 1}") for i in range(100))
    tasks = tuple(
        task(f"app{i % 100}.{i}", name=f"app{i % 100}", agent=agents[(i // 100) % 100].agent_id, ports=(31000 + i % 1000,))
        for i in range(2_000)
    )
    rs = build_records(snap(*tasks, agents=agents))
    assert len(rs.get("app7.marathon.mesos.", "A")) == 20
    assert len(rs.get("_app7._tcp.marathon.mesos.", "SRV")) == 20
