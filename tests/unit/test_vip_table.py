"""The VIP table and its addresses: pure, no I/O."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest

from dcosd.errors import ValidationError
from dcosd.master.dns.records import build_records, snapshot_from
from dcosd.model.task import TaskSpec
from dcosd.vips.table import (
    LABEL, Vip, VipError, VipTable, VipTask, allocate_addresses, build_table, label_value, parse_label, parse_vip,
    table_from_wire, vips_from_port_definitions,
)

AGENTS = {"a1": "10.214.0.11", "a2": "10.214.0.12"}


def task(tid: str, agent: str = "a1", ports: tuple[int, ...] = (31001,), vips=((0, "/echo:80"),),
         state: str = "TASK_RUNNING", healthy: bool | None = None, kill: bool = False) -> VipTask:
    return VipTask(tid, agent, state, label_value(vips) if vips is not None else None, ports, healthy, kill)


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("text,name,port", [
    ("/echo:80", "echo", 80), ("echo:80", "echo", 80), ("/grp/app:8080", "grp/app", 8080),
    ("/my-app_1.x:65535", "my-app_1.x", 65535), ("/a:1", "a", 1),
])
def test_parse_vip(text, name, port):
    v = parse_vip(text)
    assert (v.name, v.port) == (name, port) and v.key == f"/{name}:{port}"


@pytest.mark.parametrize("bad", [
    "", "/echo", "/echo:", ":80", "/echo:0", "/echo:65536", "/echo:99999", "/echo:8o", "/ec ho:80", "/éx:80",
    "/a//b:80", "/:80", "/10.0.0.1:80", "/---:80", 80, None, ["/echo:80"], "/" + "a" * 201 + ":80",
])
def test_parse_vip_refuses(bad):
    with pytest.raises(VipError):
        parse_vip(bad)


def test_label_round_trip_and_errors():
    value = label_value([(0, "/echo:80"), (1, "grp/app:81")])
    assert json.loads(value) == [{"port_index": 0, "vip": "/echo:80"}, {"port_index": 1, "vip": "/grp/app:81"}]
    assert [(b.port_index, b.vip.key) for b in parse_label(value)] == [(0, "/echo:80"), (1, "/grp/app:81")]
    for bad, says in [
        ("not json", "not JSON"), ('{"port_index": 0}', "JSON list"), ('[{"vip": "/a:1"}]', "port_index"),
        ('[{"port_index": -1, "vip": "/a:1"}]', "integer"), ('[{"port_index": true, "vip": "/a:1"}]', "integer"),
        ('[{"port_index": 0, "vip": "/a:70000"}]', "out of range"), ('[{"port_index": 0, "vip": "/a:1", "x": 1}]', "port_index"),
        (json.dumps([{"port_index": 0, "vip": f"/a{i}:1"} for i in range(33)]), "more than"),
        ("[" * 10000, "longer than"),
    ]:
        with pytest.raises(VipError, match=says):
            parse_label(bad)


def test_marathon_port_definitions_map_to_the_label():
    pds = [{"port": 0, "labels": {"VIP_0": "/grp/app:80", "OTHER": "x"}}, {"port": 0},
           {"port": 0, "labels": {"VIP_3": "/metrics:9090"}}]
    value = vips_from_port_definitions(pds)
    assert json.loads(value) == [{"port_index": 0, "vip": "/grp/app:80"}, {"port_index": 2, "vip": "/metrics:9090"}]
    assert vips_from_port_definitions([{"port": 0, "labels": {}}]) is None
    assert vips_from_port_definitions(None) is None
    with pytest.raises(VipError, match=r"portDefinitions\[1\].labels.VIP_0"):
        vips_from_port_definitions([{}, {"labels": {"VIP_0": "nonsense"}}])


def test_task_spec_refuses_a_malformed_vip_label():
    spec = {"task_id": "t1", "cmd": "true", "labels": {LABEL: '[{"port_index": 0, "vip": "/a:0"}]'}}
    with pytest.raises(ValidationError, match="DCOSD_VIPS.*out of range"):
        TaskSpec.from_dict(spec)
    spec["labels"][LABEL] = label_value([(0, "/a:1")])
    assert TaskSpec.from_dict(spec).labels[LABEL] == spec["labels"][LABEL]


# --------------------------------------------------------------------------- addresses
def test_addresses_are_stable_valid_and_distinct():
    names = [f"svc-{i}" for i in range(3000)]
    a = allocate_addresses(names)
    assert len(set(a.values())) == len(names)
    net = ipaddress.ip_network("11.0.0.0/8")
    for ip in a.values():
        addr = ipaddress.ip_address(ip)
        assert addr in net and int(addr) & 0xFF not in (0, 255)
    shuffled = names[:]
    random.Random(7).shuffle(shuffled)
    assert allocate_addresses(shuffled) == a  # order does not matter
    # adding and removing other names moves no one (no collision in this set)
    assert {n: ip for n, ip in allocate_addresses(names[:1000] + ["new"]).items() if n != "new"} == \
        {n: a[n] for n in names[:1000]}


def test_collisions_are_settled_deterministically_in_a_small_range():
    names = [f"n{i}" for i in range(60)]
    a = allocate_addresses(names, "10.99.0.0/24")
    assert len(set(a.values())) == 60 and all(ip.startswith("10.99.0.") for ip in a.values())
    assert allocate_addresses(list(reversed(names)), "10.99.0.0/24") == a
    with pytest.raises(VipError, match="do not fit"):
        allocate_addresses([f"x{i}" for i in range(65)], "10.99.0.0/24")


# --------------------------------------------------------------------------- the table
def test_backends_are_running_healthy_or_unchecked_and_not_being_killed():
    t = build_table([
        task("t1", "a1", (31001,)),
        task("t2", "a2", (31002,), healthy=True),
        task("t3", "a2", (31003,), healthy=False),
        task("t4", "a1", (31004,), state="TASK_STAGING"),
        task("t5", "a1", (31005,), kill=True),
        task("t6", "a1", (31006,), state="TASK_FINISHED"),
        task("t7", "a1", (31007,), vips=None),
    ], AGENTS)
    (vip,) = t.vips
    assert vip.key == "/echo:80" and vip.backends == (("10.214.0.11", 31001), ("10.214.0.12", 31002))
    assert vip.ip == allocate_addresses(["echo"])["echo"]
    assert t.problems == ()


def test_a_vip_without_serving_instances_keeps_its_address():
    t = build_table([task("t1", state="TASK_STAGING")], AGENTS)
    assert [(v.key, v.backends) for v in t.vips] == [("/echo:80", ())]
    assert build_table([task("t1", state="TASK_KILLED")], AGENTS).vips == ()


def test_port_index_selects_the_host_port_and_bad_ones_are_reported():
    t = build_table([task("t1", ports=(31001, 31002), vips=[(1, "/web:80"), (0, "/admin:81"), (2, "/x:82")])], AGENTS)
    by = {v.key: v for v in t.vips}
    assert by["/web:80"].backends == (("10.214.0.11", 31002),)
    assert by["/admin:81"].backends == (("10.214.0.11", 31001),)
    assert by["/x:82"].backends == ()
    assert any("wants host port #2" in p for p in t.problems)


def test_malformed_labels_and_unknown_agents_are_left_out_not_fatal():
    bad = VipTask("bad", "a1", "TASK_RUNNING", "[{]", (31001,))
    t = build_table([bad, task("t1", agent="gone"), task("t2", ports=(31009,))], AGENTS)
    assert [(v.key, v.backends) for v in t.vips] == [("/echo:80", (("10.214.0.11", 31009),))]
    assert any("bad" in p and "not JSON" in p for p in t.problems)
    assert any("gone" in p for p in t.problems)


def test_same_name_two_ports_one_address_and_names_sharing_a_dns_label_merge():
    t = build_table([task("t1", ports=(1, 2), vips=[(0, "/db:5432"), (1, "/db:9187")]),
                     task("t2", ports=(3,), vips=[(0, "/d/b:5432")])], AGENTS)
    by = {v.key: v for v in t.vips}
    assert set(by) == {"/d/b:5432", "/db:9187"}
    assert by["/d/b:5432"].ip == by["/db:9187"].ip
    assert by["/d/b:5432"].backends == (("10.214.0.11", 1), ("10.214.0.11", 3))
    assert t.dns_records("mesos") == (("db.marathon.l4lb.mesos", by["/db:9187"].ip),)


def test_wire_round_trip_and_refusals():
    t = build_table([task("t1"), task("t2", "a2", (31002,))], AGENTS)
    assert table_from_wire(json.loads(json.dumps(t.to_wire()))) == t
    ok = {"vip": "/a:1", "ip": "11.0.0.5", "backends": [["10.0.0.1", 80]]}
    assert table_from_wire([ok]).vips[0].backends == (("10.0.0.1", 80),)
    for bad in [{**ok, "ip": "127.0.0.1"}, {**ok, "ip": "::1"}, {**ok, "ip": "x"}, {**ok, "vip": "/a:0"},
                {**ok, "backends": [["10.0.0.1", 0]]}, {**ok, "backends": [["host", 80]]}, "x"]:
        with pytest.raises(ValueError):
            table_from_wire([bad])
    with pytest.raises(ValueError):
        table_from_wire({"vips": []})


def test_dns_names_are_in_the_l4lb_zone():
    t = build_table([task("t1", vips=[(0, "/Grp/My_App:80")])], AGENTS)
    (vip,) = t.vips
    assert vip.dns_name("mesos") == "grpmy-app.marathon.l4lb.mesos"
    rs = build_records(snapshot_from(vips=[(vip.dns_label, vip.ip)]))
    assert rs.get("grpmy-app.marathon.l4lb.mesos", "A") == (vip.ip,)
    assert rs.exists("marathon.l4lb.mesos") and rs.get("marathon.l4lb.mesos", "A") == ()


def test_table_is_deterministic_whatever_the_task_order():
    tasks = [task(f"t{i}", "a1" if i % 2 else "a2", (31000 + i,), vips=[(0, f"/s{i % 5}:80")]) for i in range(40)]
    a = build_table(tasks, AGENTS)
    random.Random(3).shuffle(tasks)
    assert build_table(tasks, AGENTS) == a and isinstance(a, VipTable) and all(isinstance(v, Vip) for v in a.vips)
