"""The Mesos operator surface (COMPAT.md §6) and the CLI for frameworks, roles, quota and weights."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from harness.cluster import ClusterFactory, wait_for
from harness.mesos_client import FakeAgent, SchedulerClient, launch, task_info


@pytest.fixture
def setup(tmp_path: Path):
    f = ClusterFactory(tmp_path)
    things: list = []
    m = f.master()
    agent = FakeAgent(m.url, m.secret, "fake-0", {"cpus": 4, "mem": 4096, "disk": 100, "ports": [[31000, 31010]]})
    things.append(agent.start())
    fw = SchedulerClient(m.url, "ops-fw", token=m.token, roles=["ops"], failover_timeout=600)
    things.append(fw)
    fw.subscribe()
    o = fw.take_offer()
    fw.accept([o["id"]["value"]], [launch(task_info("ops-1", agent.agent_id, 1, 256))], refuse=0)
    wait_for(lambda: m.task("ops-1")["state"] == "TASK_RUNNING", what="ops-1 running")
    yield m, agent, fw
    for t in reversed(things):
        t.close()
    f.stop_all()


def test_mesos_endpoints(setup):
    m, agent, fw = setup
    req = urllib.request.Request(m.url + "/redirect")
    opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                              {"redirect_request": lambda *a, **k: None}))
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(req)
    assert err.value.code == 307 and err.value.headers["Location"] == f"//127.0.0.1:{m.port}"
    err.value.close()
    for path in ("/master/state", "/state"):
        s = m.get(path)
        (slave,) = s["slaves"]
        assert slave["id"] == agent.agent_id and slave["resources"]["cpus"] == 4
        assert slave["used_resources"]["cpus"] == 1
        fws = {f["id"]: f for f in s["frameworks"]}
        (task,) = fws[fw.framework_id]["tasks"]
        assert task["id"] == "ops-1" and task["state"] == "TASK_RUNNING" and task["slave_id"] == agent.agent_id
        assert task["resources"]["cpus"] == 1 and task["resources"]["mem"] == 256
        assert [st["state"] for st in task["statuses"]] == ["TASK_STAGING", "TASK_RUNNING"]
        assert fws[fw.framework_id]["roles"] == ["ops"]
    summary = m.get("/master/state-summary")
    assert summary["slaves"][0]["id"] == agent.agent_id and "tasks" not in summary["slaves"][0]
    metrics = m.get("/metrics/snapshot")
    assert metrics["master/elected"] == 1 and metrics["master/tasks_running"] == 1
    assert metrics["master/cpus_total"] == 4 and metrics["master/slaves_active"] == 1
    assert m.get("/master/metrics/snapshot")["master/frameworks_connected"] >= 1
    for prefix in ("/api/v1", "/api/v1/operator", "/master/api/v1"):
        st, body = m.api("POST", prefix, {"type": "GET_HEALTH"})
        assert st == 200 and body == {"type": "GET_HEALTH", "get_health": {"healthy": True}}
    call = lambda t: m.api("POST", "/api/v1", {"type": t})[1]  # noqa: E731
    assert call("GET_VERSION")["get_version"]["version_info"]["version"] == "1.11.0"
    assert call("GET_MASTER")["get_master"]["master_info"]["port"] == m.port
    agents = call("GET_AGENTS")["get_agents"]["agents"]
    assert agents[0]["agent_info"]["id"]["value"] == agent.agent_id
    frameworks = call("GET_FRAMEWORKS")["get_frameworks"]["frameworks"]
    assert fw.framework_id in {f["framework_info"]["id"]["value"] for f in frameworks}
    tasks = call("GET_TASKS")["get_tasks"]["tasks"]
    assert [t["task_id"]["value"] for t in tasks] == ["ops-1"]
    state = call("GET_STATE")["get_state"]
    assert state["get_tasks"]["tasks"][0]["agent_id"]["value"] == agent.agent_id
    roles = {r["name"]: r for r in call("GET_ROLES")["get_roles"]["roles"]}
    assert roles["ops"]["frameworks"] == [{"value": fw.framework_id}]
    st, body = m.api("POST", "/api/v1", {"type": "NO_SUCH_CALL"})
    assert st == 400 and "NO_SUCH_CALL" in body["message"]
    st, body = m.api("POST", "/api/v1", {"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
        {"role": "ops", "weight": -1}]}})
    assert st == 400 and "positive" in body["message"]
    st, _ = m.api("GET", "/master/state", token="")
    assert st == 401  # auth on: the operator token is needed


def test_cli_frameworks_roles_quota_weights(setup):
    m, agent, fw = setup
    listed = json.loads(m.cli("framework", "list", "--json", check=True).stdout)
    mine = [f for f in listed if f["id"] == fw.framework_id][0]
    assert mine["state"] == "CONNECTED" and mine["tasks"] == 1 and mine["roles"] == ["ops"]
    assert any(f["builtin"] for f in listed)
    shown = json.loads(m.cli("framework", "show", "ops-fw", "--json", check=True).stdout)
    assert shown["id"] == fw.framework_id and shown["task_list"][0]["id"] == "ops-1"
    assert "ops-fw" in m.cli("framework", "list", check=True).stdout
    m.cli("weight", "set", "ops", "2.5", check=True)
    m.cli("quota", "set", "ops", "cpus=2", "mem=1024", check=True)
    roles = {r["name"]: r for r in json.loads(m.cli("role", "list", "--json", check=True).stdout)}
    assert roles["ops"]["weight"] == 2.5 and roles["ops"]["quota"] == {"cpus": 2.0, "mem": 1024.0}
    assert roles["ops"]["allocated"]["cpus"] == 1
    quotas = json.loads(m.cli("quota", "list", "--json", check=True).stdout)
    assert quotas[0]["role"] == "ops" and quotas[0]["consumed"]["cpus"] >= 1
    assert "ops" in m.cli("role", "list", check=True).stdout
    node = json.loads(m.cli("node", "show", agent.agent_id, "--json", check=True).stdout)
    assert node["allocation"]["allocated"]["cpus"] == 1
    text = m.cli("node", "show", agent.agent_id, check=True).stdout
    assert "offered" in text and "allocated" in text and "reserved" in text
    # Errors: one line, non-zero.
    cp = m.cli("framework", "show", "no-such-framework")
    assert cp.returncode == 3 and cp.stderr.startswith("dcosd: error:") and cp.stderr.count("\n") == 1
    cp = m.cli("quota", "set", "ops", "cpus=lots")
    assert cp.returncode == 2 and "not a number" in cp.stderr
    cp = m.cli("weight", "set", "*", "2")
    assert cp.returncode == 2 and "role" in cp.stderr
    cp = m.cli("framework", "teardown", "dcosd-tasks")
    assert cp.returncode == 2
    # Teardown kills its tasks.
    m.cli("framework", "teardown", fw.framework_id, check=True)
    wait_for(lambda: m.task("ops-1")["state"] == "TASK_KILLED", what="ops-1 killed by teardown")
    listed = json.loads(m.cli("framework", "list", "--all", "--json", check=True).stdout)
    assert [f for f in listed if f["id"] == fw.framework_id][0]["state"] == "REMOVED"
