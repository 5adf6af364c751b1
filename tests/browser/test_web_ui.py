"""The web UI in headless Chromium against a real master and two agents: log in, overview numbers,
live task table and log follow, services created from the form, a package installed through the
form generated from its schema, drain from the nodes page. Screenshots go to artifacts/ui/."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest

from harness.cluster import ClusterFactory, kill_tree_of_tasks, wait_for, world_readable_tmp
from ui_harness import browser_missing, chromium, screenshot

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))

TICKER = ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]


@pytest.fixture(scope="module")
def cluster():
    tmp = world_readable_tmp()
    f = ClusterFactory(tmp)
    try:
        m = f.master()
        for name in ("ui-a", "ui-b"):
            f.agent(m, "--hostname", name, "--resources", "cpus:2;mem:1024;disk:2048")
        yield m
    finally:
        f.stop_all()
        for d in tmp.glob("agent-*"):
            if d.is_dir():
                kill_tree_of_tasks(d)


@pytest.fixture(scope="module")
def page(cluster):
    with chromium() as ctx:
        p = ctx.new_page()
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        p.errors = errors  # type: ignore[attr-defined]
        yield p
        assert not errors, errors


def submit(m, name: str, argv: list[str], cpus: float = 0.5, mem: float = 64) -> str:
    status, body = m.api("POST", "/dcosd/v1/tasks", {"name": name, "argv": argv, "resources": {"cpus": cpus, "mem": mem}})
    assert status == 201, body
    return body["task_id"]


def test_login_and_overview_numbers(cluster, page):
    m = cluster
    tid = submit(m, "ticker", TICKER)
    wait_for(lambda: m.task(tid)["state"] == "TASK_RUNNING", 30, what="ticker running")
    page.goto(m.url + "/")
    page.wait_for_selector("#login[open]")
    screenshot(page, "00-login")
    page.fill("#login-token", "wrong-token")
    page.click("#login-submit")
    page.wait_for_selector("#login-error:has-text('refused')")
    page.fill("#login-token", m.token)
    page.click("#login-submit")
    page.wait_for_selector("[data-gauge=CPU] [data-total]")
    c = m.get("/dcosd/v1/cluster")
    assert c["resources"]["total"]["cpus"] == 4 and c["resources"]["used"]["cpus"] == 0.5
    for label, key in (("CPU", "cpus"), ("Memory", "mem"), ("Disk", "disk")):
        stat = page.locator(f"[data-gauge={label}] .stat")
        assert float(stat.get_attribute("data-total")) == c["resources"]["total"].get(key, 0)
        assert float(stat.get_attribute("data-used")) == c["resources"]["used"].get(key, 0)
    assert page.locator("[data-gauge=CPU] .stat").inner_text() == "0.5 / 4"
    assert page.locator("#node-count").inner_text() == "2 / 2"
    assert page.locator("[data-count=TASK_RUNNING]").inner_text() == "1"
    assert page.locator("[data-bars='CPU per node'] svg text").count() >= 4
    page.wait_for_selector("#events li:has-text('task submit')")
    page.wait_for_selector("#live.up")
    screenshot(page, "01-overview")
    # Live: a new task changes the overview without a reload.
    page.evaluate("window.__noReload = 1")
    tid2 = submit(m, "second", ["sleep", "300"], cpus=0.25)
    wait_for(lambda: m.task(tid2)["state"] == "TASK_RUNNING", 30, what="second running")
    page.wait_for_function("document.querySelector('[data-gauge=CPU] .stat').textContent === '0.75 / 4'")
    assert page.evaluate("window.__noReload") == 1
    m.api("POST", f"/dcosd/v1/tasks/{tid2}/kill", {})


def test_tasks_table_and_log_follow(cluster, page):
    m = cluster
    tid = next(t["id"] for t in m.get("/dcosd/v1/tasks")["tasks"] if t["name"] == "ticker")
    page.goto(m.url + "/#/tasks")
    page.wait_for_selector(f"[data-task='{tid}']")
    page.evaluate("window.__noReload = 1")
    new = submit(m, "appears-live", ["sleep", "300"], cpus=0.1, mem=16)
    page.wait_for_selector(f"[data-task='{new}']")  # patched in from the event stream
    page.wait_for_selector(f"[data-task='{new}']:has-text('RUNNING')")
    assert page.evaluate("window.__noReload") == 1
    screenshot(page, "02-tasks")
    page.click(f"[data-task='{tid}']")
    page.wait_for_selector("#task-log:has-text('tick')")
    first = page.locator("#task-log").inner_text()
    last_n = max(int(n) for n in re.findall(r"tick (\d+)", first))
    page.wait_for_function(f"/tick {last_n + 3}\\b/.test(document.getElementById('task-log').textContent)")
    assert page.evaluate("window.__noReload") == 1
    screenshot(page, "03-task-log")
    m.api("POST", f"/dcosd/v1/tasks/{new}/kill", {})


def test_services_create_from_form_and_deployment_finishes(cluster, page):
    m = cluster
    page.goto(m.url + "/#/services")
    page.wait_for_selector("#new-service, [data-na]")
    if page.locator("[data-na]").count():
        screenshot(page, "04-services")
        pytest.skip("this master has no services API")
    page.click("#new-service")
    page.fill("#create input[name=id]", "web")
    page.fill("#create input[name=cmd]", "while true; do echo web up; sleep 1; done")
    page.fill("#create input[name=instances]", "2")
    page.fill("#create input[name=cpus]", "0.1")
    page.fill("#create input[name=mem]", "32")
    page.click("#create-service")
    page.wait_for_selector("[data-app='/web']")
    page.wait_for_selector("[data-app='/web'] .instances:has-text('2 / 2')", timeout=60_000)
    page.wait_for_selector("#no-deployments", timeout=60_000)
    app = m.get("/v2/apps/web")["app"]
    assert app["instances"] == 2 and app["tasksRunning"] == 2
    screenshot(page, "04-services")


def test_package_form_generated_from_schema(cluster, page):
    m = cluster
    page.goto(m.url + "/#/packages")
    page.fill("#package-search", "redis")
    page.click("[data-package=redis]")
    page.wait_for_selector("#install-form input[name='service.name']")
    page.fill("#install-form input[name='service.name']", "cache")
    page.fill("#install-form input[name='redis.maxmemory_mb']", "100")
    page.click("#render")
    page.wait_for_selector("#rendered:has-text('/cache')")
    rendered = json.loads(page.locator("#rendered").inner_text())
    assert rendered["id"] == "/cache"
    opts = rendered["labels"]["DCOS_PACKAGE_OPTIONS"]
    assert "100" in str(rendered) and opts
    if page.locator("#install").count():
        page.click("#install")
        page.wait_for_selector("#install-status:has-text('Installed')", timeout=30_000)
        assert m.get("/v2/apps/cache")["app"]["id"] == "/cache"
    screenshot(page, "05-package")


def test_drain_from_the_nodes_page(cluster, page):
    m = cluster
    page.goto(m.url + "/#/nodes")
    page.wait_for_selector("[data-node=ui-b] [data-action=drain]")
    screenshot(page, "06-nodes")
    page.once("dialog", lambda d: d.accept())
    page.click("[data-node=ui-b] [data-action=drain]")
    page.wait_for_selector("[data-node=ui-b] .maint:has-text('draining')")
    agent_id = next(n["id"] for n in m.nodes() if n["hostname"] == "ui-b")
    assert agent_id in m.get("/dcosd/v1/maintenance")["nodes"]
    screenshot(page, "07-node-drained")
    # Undrained from the CLI: the page follows the committed state by itself.
    m.cli("node", "undrain", "ui-b", check=True)
    page.wait_for_selector("[data-node=ui-b] [data-action=drain]")


def test_jobs_and_masters_pages(cluster, page):
    m = cluster
    page.goto(m.url + "/#/jobs")
    page.wait_for_selector("#jobs, [data-na]")
    screenshot(page, "08-jobs")
    page.goto(m.url + "/#/masters")
    page.wait_for_selector(f"#leader:has-text('{urllib.parse.urlsplit(m.url).port}')")
    screenshot(page, "09-masters")


def test_assets_are_served_from_the_package(cluster):
    import urllib.request

    with urllib.request.urlopen(cluster.url + "/ui/app.js", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
    with urllib.request.urlopen(cluster.url + "/ui/nodes/deep/link", timeout=10) as r:
        assert b"<main id=\"main\">" in r.read()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(cluster.url + "/ui/../service.py", timeout=10)


def test_masters_page_of_a_follower_hands_leadership_over(page, tmp_path):
    """Three replicated masters, the UI opened on a follower: the masters page shows the leader, and
    "Make leader" on the other follower moves leadership there. The page's calls reach the leader
    through the follower (a browser cannot follow the 307 to another origin with its token)."""
    from harness.ha_cluster import TOKEN, HaCluster

    ha = HaCluster(tmp_path)
    try:
        ha.start_all()
        leader = ha.wait_leader()
        via, to = [i for i in ha.ids if i != leader]
        page = page.context.new_page()  # the module's browser (one Playwright per thread)
        try:
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(ha.urls[via] + "/")
            page.wait_for_selector("#login[open]")
            page.fill("#login-token", TOKEN)
            page.click("#login-submit")
            page.goto(ha.urls[via] + "/#/masters")
            page.wait_for_selector(f"#leader:has-text('{ha.urls[leader]}')")
            assert page.locator("[data-action=lead]").count() == 2  # on both followers, not on the leader
            screenshot(page, "10-masters-replicated")
            page.once("dialog", lambda d: d.accept())
            page.click(f"[data-action=lead][data-id={to}]")
            page.wait_for_selector(f"#leader:has-text('{ha.urls[to]}')")
            assert ha.wait_leader() == to
            assert not errors, errors
        finally:
            page.close()
    finally:
        ha.stop_all()
