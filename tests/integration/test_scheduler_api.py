"""The Mesos v1 scheduler API of a real master process, driven by a small RecordIO client.

Agents here are fake (tests/harness/mesos_client.FakeAgent): they register over the
real agent protocol and report TASK_RUNNING/TASK_KILLED, so scheduling is tested at
a scale that real task processes would make slow.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.cluster import ClusterFactory, Master, wait_for
from harness.mesos_client import FakeAgent, SchedulerClient, launch, scalar, task_info


@pytest.fixture
def factory(tmp_path: Path):
    f = ClusterFactory(tmp_path)
    yield f
    f.stop_all()


@pytest.fixture
def closing():
    things: list = []
    yield things
    for t in reversed(things):
        t.close()


def agents(m: Master, closing: list, n: int, cpus: float = 4, mem: float = 4096) -> list[FakeAgent]:
    out = []
    for i in range(n):
        a = FakeAgent(m.url, m.secret, f"fake-{i}", {"cpus": cpus, "mem": mem, "disk": 1000,
                                                      "ports": [[31000, 31100]]}).start()
        closing.append(a)
        out.append(a)
    wait_for(lambda: sum(1 for x in m.nodes() if x["connected"]) == n, what="fake agents connected")
    return out


def client(m: Master, closing: list, name: str = "fw", **kw) -> SchedulerClient:
    c = SchedulerClient(m.url, name, token=m.token, **kw)
    closing.append(c)
    return c


def offer_agents(ev: dict) -> set[str]:
    return {o["agent_id"]["value"] for o in ev["offers"]["offers"]}


def test_decline_filter_holds_until_revive(factory: ClusterFactory, closing: list):
    m = factory.master()
    a, b = agents(m, closing, 2)
    fw = client(m, closing)
    fw.subscribe()
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + 20
    while len(seen) < 2 and time.monotonic() < deadline:
        ev = fw.wait_for("OFFERS")
        for o in ev["offers"]["offers"]:
            seen[o["agent_id"]["value"]] = o
    assert set(seen) == {a.agent_id, b.agent_id}
    assert fw.decline([seen[a.agent_id]["id"]["value"]], refuse=30)[0] == 202
    assert fw.decline([seen[b.agent_id]["id"]["value"]], refuse=0.5)[0] == 202
    # For a few allocation cycles B comes back (its filter is short) and A never does.
    t_end = time.monotonic() + 4
    b_again = 0
    while time.monotonic() < t_end:
        try:
            ev = fw.wait_for("OFFERS", timeout=max(0.1, t_end - time.monotonic()))
        except AssertionError:
            break
        got = offer_agents(ev)
        assert a.agent_id not in got, "declined agent offered again before its 30 s filter expired"
        b_again += b.agent_id in got
        for o in ev["offers"]["offers"]:
            fw.decline([o["id"]["value"]], refuse=0.5)
    assert b_again >= 1
    assert fw.call({"type": "REVIVE"})[0] == 202
    ev = fw.wait_for("OFFERS", timeout=10, pred=lambda e: a.agent_id in offer_agents(e))
    assert ev


def _saturate(fw: SchedulerClient, prefix: str, cpus: float, mem: float, limit: int = 10_000) -> None:
    counter = [0]

    def on_offers(c: SchedulerClient, offers: list[dict]) -> None:
        for o in offers:
            oid = o["id"]["value"]
            if counter[0] < limit and scalar(o, "cpus") >= cpus and scalar(o, "mem") >= mem:
                counter[0] += 1
                t = task_info(f"{prefix}-{counter[0]}", o["agent_id"]["value"], cpus, mem)
                c.accept([oid], [launch(t)], refuse=0)
            else:
                c.decline([oid], refuse=60)

    fw.on_offers = on_offers


def _role_cpus(m: Master) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in m.get("/dcosd/v1/roles")["roles"]:
        out[r["name"]] = r["allocated"].get("cpus", 0.0)
    return out


def test_weighted_drf_converges_to_1_to_3(factory: ClusterFactory, closing: list):
    m = factory.master()
    status, _ = m.api("POST", "/api/v1", {"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
        {"role": "light", "weight": 1}, {"role": "heavy", "weight": 3}]}})
    assert status == 200
    weights = m.api("POST", "/api/v1", {"type": "GET_WEIGHTS"})[1]["get_weights"]["weight_infos"]
    assert {w["role"]: w["weight"] for w in weights} == {"light": 1.0, "heavy": 3.0}
    agents(m, closing, 2, cpus=10, mem=100_000)
    light = client(m, closing, "light", roles=["light"])
    heavy = client(m, closing, "heavy", roles=["heavy"])
    _saturate(light, "light", 0.1, 32)
    _saturate(heavy, "heavy", 0.1, 32)
    light.subscribe()
    heavy.subscribe()

    def saturated() -> bool:
        used = _role_cpus(m)
        return used.get("light", 0) + used.get("heavy", 0) >= 19.9

    wait_for(saturated, 90, interval=0.5, what="the cluster to fill up")
    used = _role_cpus(m)
    ratio = used["heavy"] / used["light"]
    assert abs(ratio - 3) / 3 <= 0.05, used
    roles = {r["name"]: r for r in m.get("/dcosd/v1/roles")["roles"]}
    assert roles["heavy"]["weight"] == 3.0 and roles["heavy"]["frameworks"] == [heavy.framework_id]


def test_role_at_quota_gets_no_more_offers(factory: ClusterFactory, closing: list):
    m = factory.master()
    status, body = m.api("POST", "/api/v1/operator", {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
        {"role": "capped", "limits": {"cpus": {"value": 1.0}}}]}})
    assert status == 200, body
    got = m.api("POST", "/api/v1/operator", {"type": "GET_QUOTA"})[1]
    assert got["get_quota"]["status"]["configs"][0]["limits"]["cpus"]["value"] == 1.0
    agents(m, closing, 2, cpus=8, mem=100_000)
    fw = client(m, closing, "capped", roles=["capped"])
    _saturate(fw, "capped", 0.25, 32)
    fw.subscribe()
    try:
        wait_for(lambda: _role_cpus(m).get("capped", 0) >= 1.0, 30, what="the role to reach its quota")
    except AssertionError:
        print(_role_cpus(m), [json.dumps(e)[:300] for e in fw.log], list(fw.events.queue))
        print(m.proc.log()[-5000:])
        raise
    time.sleep(0.5)
    fw.drain()
    # At the limit: no offer at all for several allocation intervals.
    with pytest.raises(AssertionError):
        fw.wait_for("OFFERS", timeout=3)
    assert _role_cpus(m)["capped"] == 1.0
    # Another role still gets offers: the quota limits one role, not the cluster.
    other = client(m, closing, "other", roles=["other"])
    other.subscribe()
    assert other.wait_for("OFFERS", timeout=10)


def _launch_one(m: Master, fw: SchedulerClient, task_id: str) -> str:
    ev = fw.wait_for("OFFERS")
    o = ev["offers"]["offers"][0]
    agent_id = o["agent_id"]["value"]
    assert fw.accept([o["id"]["value"]], [launch(task_info(task_id, agent_id, 0.5, 64))])[0] == 202
    st = fw.wait_for("UPDATE", pred=lambda e: e["update"]["status"]["task_id"]["value"] == task_id)
    assert st["update"]["status"]["state"] == "TASK_RUNNING"
    assert fw.acknowledge(st["update"]["status"])[0] == 202
    return agent_id


def test_failover_timeout_keeps_or_tears_down(factory: ClusterFactory, closing: list):
    m = factory.master()
    agents(m, closing, 1)
    keeper = client(m, closing, "keeper", failover_timeout=60)
    keeper.subscribe()
    _launch_one(m, keeper, "kept-1")
    quitter = client(m, closing, "quitter", failover_timeout=1)
    quitter.subscribe()
    _launch_one(m, quitter, "dropped-1")
    fid_keep, fid_quit = keeper.framework_id, quitter.framework_id
    keeper.close()
    quitter.close()
    # The one that does not come back within its timeout is torn down; its task is killed.
    t = wait_for(lambda: (x := m.task("dropped-1"))["state"] == "TASK_KILLED" and x, 30,
                 what="the quitter's task to be killed")
    assert t["state"] == "TASK_KILLED"
    fws = {f["id"]: f for f in m.get("/dcosd/v1/frameworks?all=1")["frameworks"]}
    assert fws[fid_quit]["state"] == "REMOVED"
    assert fws[fid_keep]["state"] == "DISCONNECTED"
    # The keeper re-subscribes with its id: same framework, its task still running, reconcilable.
    again = client(m, closing, "keeper", failover_timeout=60, framework_id=fid_keep)
    ev = again.subscribe()
    assert ev["subscribed"]["framework_id"]["value"] == fid_keep
    assert m.task("kept-1")["state"] == "TASK_RUNNING"
    assert again.call({"type": "RECONCILE", "reconcile": {"tasks": []}})[0] == 202
    st = again.wait_for("UPDATE", pred=lambda e: e["update"]["status"]["task_id"]["value"] == "kept-1")
    assert st["update"]["status"]["state"] == "TASK_RUNNING"
    assert st["update"]["status"]["reason"] == "REASON_RECONCILIATION"
    # A torn-down framework cannot come back.
    gone = client(m, closing, "quitter", framework_id=fid_quit)
    with pytest.raises(AssertionError):
        gone.subscribe(timeout=3)
    assert any(e["type"] == "ERROR" and "removed" in e["error"]["message"] for e in gone.log)


def test_unacknowledged_updates_survive_a_master_restart(factory: ClusterFactory, closing: list):
    m = factory.master()
    fake = agents(m, closing, 1)[0]
    fw = client(m, closing, "forgetful", failover_timeout=300)
    fw.subscribe()
    ev = fw.wait_for("OFFERS")
    o = ev["offers"]["offers"][0]
    fw.accept([o["id"]["value"]], [launch(task_info("unacked-1", fake.agent_id, 0.5, 64))])
    first = fw.wait_for("UPDATE", pred=lambda e: e["update"]["status"]["task_id"]["value"] == "unacked-1")
    assert first["update"]["status"]["state"] == "TASK_RUNNING" and "uuid" in first["update"]["status"]
    fid = fw.framework_id
    fw.close()
    m.proc.kill9()
    from harness.cluster import Proc

    proc = Proc(m.proc.args, m.proc.log_path)
    factory.procs.append(proc)
    m2 = Master(m.data_dir, m.port, proc, m.auth)
    wait_for(lambda: m2.api("GET", "/health")[0] == 200, what="master restart")
    fake.close()
    fake2 = FakeAgent(m2.url, m2.secret, "fake-0", fake.resources)
    fake2.agent_id, fake2.tasks = fake.agent_id, dict(fake.tasks)
    closing.append(fake2.start())
    again = client(m2, closing, "forgetful", failover_timeout=300, framework_id=fid)
    again.subscribe()
    redo = again.wait_for("UPDATE", pred=lambda e: e["update"]["status"]["task_id"]["value"] == "unacked-1")
    assert redo["update"]["status"]["uuid"] == first["update"]["status"]["uuid"]
    assert again.acknowledge(redo["update"]["status"])[0] == 202
    wait_for(lambda: m2.get(f"/dcosd/v1/frameworks/{fid}")["unacknowledged_updates"] == 0,
             what="the acknowledgement to be recorded")


def test_bad_input_is_refused_without_disturbing_others(factory: ClusterFactory, closing: list):
    m = factory.master()
    fake = agents(m, closing, 1, cpus=4, mem=4096)[0]
    bystander = client(m, closing, "bystander")
    bystander.on_offers = lambda c, offers: c.decline([o["id"]["value"] for o in offers], refuse=1)
    bystander.subscribe()
    bystander.wait_for("OFFERS")
    fw = client(m, closing, "clumsy")
    # Not subscribed: 403.
    status, body = fw.call({"type": "DECLINE", "framework_id": {"value": "nobody-0000"},
                            "decline": {"offer_ids": []}})
    assert status == 403 and "not subscribed" in body
    fw.subscribe()
    # Malformed body and unknown call type: 400 with a message.
    for raw, needle in [(b"{not json", "malformed JSON"), (b"[]", "JSON object"),
                        (json.dumps({"type": "FROBNICATE"}).encode(), "unknown call type")]:
        status, body = fw.call({}, raw=raw)
        assert status == 400 and needle in json.loads(body)["message"], (raw, status, body)
    status, body = fw.call({"type": "ACCEPT", "accept": {"offer_ids": "nope"}})
    assert status == 400 and "offer_ids" in body
    status, body = fw.call({"type": "DECLINE", "decline": {"offer_ids": []}}, stream_id=False)
    assert status == 400 and "Mesos-Stream-Id" in body
    # An unknown offer: 202, and the task is reported dropped for invalid offers.
    status, _ = fw.accept(["no-such-offer"], [launch(task_info("ghost-1", fake.agent_id, 0.1, 32))])
    assert status == 202
    up = fw.wait_for("UPDATE", pred=lambda e: e["update"]["status"]["task_id"]["value"] == "ghost-1")
    assert up["update"]["status"]["state"] == "TASK_DROPPED"
    assert up["update"]["status"]["reason"] == "REASON_INVALID_OFFERS"
    assert fw.acknowledge(up["update"]["status"])[0] == 202
    # A used-up offer (accepted once already) and an over-committed one: the same.
    o = fw.take_offer()
    oid = o["id"]["value"]
    assert fw.accept([oid], [launch(task_info("ok-1", fake.agent_id, 0.1, 32))], refuse=0)[0] == 202
    assert fw.accept([oid], [launch(task_info("stale-1", fake.agent_id, 0.1, 32))])[0] == 202
    up = fw.wait_for("UPDATE", pred=lambda e: e["update"]["status"]["task_id"]["value"] == "stale-1")
    assert (up["update"]["status"]["state"], up["update"]["status"]["reason"]) == \
        ("TASK_DROPPED", "REASON_INVALID_OFFERS")
    o2 = fw.take_offer()
    big = task_info("huge-1", o2["agent_id"]["value"], scalar(o2, "cpus") + 1, 32)
    assert fw.accept([o2["id"]["value"]], [launch(big)])[0] == 202
    up = fw.wait_for("UPDATE", pred=lambda e: e["update"]["status"]["task_id"]["value"] == "huge-1")
    assert (up["update"]["status"]["state"], up["update"]["status"]["reason"]) == \
        ("TASK_DROPPED", "REASON_INVALID_OFFERS")
    # An invalid task (no command, no executor) is TASK_ERROR; the good one still ran.
    o3 = fw.take_offer()
    bad = task_info("bad-1", o3["agent_id"]["value"], 0.1, 32)
    del bad["command"]
    assert fw.accept([o3["id"]["value"]], [launch(bad)])[0] == 202
    up = fw.wait_for("UPDATE", pred=lambda e: e["update"]["status"]["task_id"]["value"] == "bad-1")
    assert up["update"]["status"]["state"] == "TASK_ERROR"
    assert wait_for(lambda: m.task("ok-1")["state"] == "TASK_RUNNING", what="the valid task to run")
    # None of this disturbed the other framework: it is still subscribed and still offered resources.
    bystander.drain()
    assert bystander.wait_for("OFFERS", timeout=15)
    fws = {f["name"]: f for f in m.get("/dcosd/v1/frameworks")["frameworks"]}
    assert fws["bystander"]["state"] == "CONNECTED" and fws["clumsy"]["state"] == "CONNECTED"
