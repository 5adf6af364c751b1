"""Mesos operator surface (COMPAT.md §6), and dcosd's own routes for frameworks and roles.

    GET  /redirect                      307 to //leader:port (503 with no leader)
    GET  /master/state, /state          the whole cluster, Mesos-shaped
    GET  /master/state-summary          agents and frameworks without tasks
    GET  /metrics/snapshot              a flat map of gauges and counters
    GET  /master/frameworks|slaves|tasks|roles
    POST /api/v1, /api/v1/operator      GET_HEALTH ... UPDATE_QUOTA, answered {"type": T, "t": {...}}

Every route also answers under ``/master/``. Reads work on any master; writes
(UPDATE_WEIGHTS, UPDATE_QUOTA, teardown) need the leader. With auth on, all but
/version, /health and /redirect need the operator token (Bearer, or Basic with
it as the password). Roles' weights and quotas are committed state
(``role_weights``, ``role_quota`` commands); the allocator follows the commits.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Iterable

from aiohttp import web

from dcosd import __version__
from dcosd.errors import NotFound, ValidationError
from dcosd.httputil import json_response, read_json
from dcosd.master.scheduler_api import check_operator
from dcosd.master.state import views
from dcosd.model import mesos
from dcosd.model.ids import BUILTIN_TASKS_FRAMEWORK
from dcosd.model.mesos import wrap
from dcosd.model.resources import SCALAR_NAMES, Resources
from dcosd.model.states import ACTIVE_STATES, TaskState

if TYPE_CHECKING:
    from dcosd.master.service import Master

_LIVE = tuple(s.value for s in ACTIVE_STATES)
COMPLETED_LIMIT = 1000
_FW_COLS = ("id, name, user, roles, info, failover_timeout, active, registered_at, reregistered_at,"
            " disconnected_at, removed_at")


def _both(path: str) -> list[str]:
    return [path, "/master" + path]


def _ns(t: float | None) -> dict[str, int] | None:
    return None if t is None else {"nanoseconds": int(t * 1e9)}


def _check_role(role: Any) -> str:
    if not isinstance(role, str) or not role or role == "*" or role.startswith("/") or len(role) > 200 \
            or any(c.isspace() for c in role):
        raise ValidationError(f"{role!r} is not a role name")
    return role


def _parse_limits(limits: Any) -> dict[str, float]:
    if not isinstance(limits, dict):
        raise ValidationError("quota limits must be an object of scalar resources")
    out = {}
    for k, v in limits.items():
        if isinstance(v, dict):
            v = v.get("value")
        if k not in SCALAR_NAMES:
            raise ValidationError(f"quota limit {k!r}: only {', '.join(SCALAR_NAMES)} can be limited")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0:
            raise ValidationError(f"quota limit {k} must be a non-negative number")
        out[k] = float(v)
    return out


class MesosOperatorApi:
    def __init__(self, master: "Master") -> None:
        self.master = master
        self.started = time.time()

    def routes(self) -> list[web.RouteDef]:
        r: list[web.RouteDef] = [
            web.get("/master/version", self.master.operator.version),
            web.get("/master/health", self.master.operator.health),
        ]
        for p in _both("/redirect"):
            r.append(web.get(p, self.redirect))
        for p in _both("/state") + ["/master/state.json", "/state.json"]:
            r.append(web.get(p, self.state))
        for p in _both("/state-summary"):
            r.append(web.get(p, self.state_summary))
        for p in ("/metrics/snapshot", "/master/metrics/snapshot"):
            r.append(web.get(p, self.metrics))
        r += [web.get("/master/frameworks", self.frameworks), web.get("/master/slaves", self.slaves),
              web.get("/master/tasks", self.tasks), web.get("/master/roles", self.roles)]
        for p in ("/api/v1", "/api/v1/operator", "/master/api/v1", "/master/api/v1/operator"):
            r.append(web.post(p, self.call))
        d = "/dcosd/v1"
        r += [
            web.get(f"{d}/frameworks", self.dcosd_frameworks),
            web.get(f"{d}/frameworks/{{framework_id}}", self.dcosd_framework),
            web.post(f"{d}/frameworks/{{framework_id}}/teardown", self.dcosd_teardown),
            web.get(f"{d}/roles", self.dcosd_roles),
            web.put(f"{d}/roles/{{role}}/weight", self.dcosd_weight),
            web.put(f"{d}/roles/{{role}}/quota", self.dcosd_quota),
            web.delete(f"{d}/roles/{{role}}/quota", self.dcosd_quota),
        ]
        return r

    # -- plain endpoints -----------------------------------------------------------
    async def redirect(self, request: web.Request) -> web.Response:
        try:
            self.master.require_leader()
            leader = self.master.advertise_url
        except Exception:  # noqa: BLE001 — NotLeader, maybe naming the leader
            leader = getattr(self.master, "leader_url", None)
            if not leader:
                return json_response({"message": "no leading master"}, status=503)
        return web.Response(status=307, headers={"Location": "//" + leader.split("://", 1)[-1].rstrip("/")})

    async def state(self, request: web.Request) -> web.Response:
        check_operator(self.master, request)
        return json_response(self.build_state())

    async def state_summary(self, request: web.Request) -> web.Response:
        check_operator(self.master, request)
        s = self.build_state(with_tasks=False)
        return json_response({k: s[k] for k in ("hostname", "cluster", "slaves", "frameworks", "leader")})

    async def frameworks(self, request: web.Request) -> web.Response:
        check_operator(self.master, request)
        s = self.build_state()
        return json_response({"frameworks": s["frameworks"], "completed_frameworks": s["completed_frameworks"],
                              "unregistered_frameworks": []})

    async def slaves(self, request: web.Request) -> web.Response:
        check_operator(self.master, request)
        return json_response({"slaves": self.build_state(with_tasks=False)["slaves"], "recovered_slaves": []})

    async def tasks(self, request: web.Request) -> web.Response:
        check_operator(self.master, request)
        s = self.build_state()
        return json_response({"tasks": [t for f in s["frameworks"] for t in f["tasks"] + f["completed_tasks"]]})

    async def roles(self, request: web.Request) -> web.Response:
        check_operator(self.master, request)
        return json_response({"roles": self._roles()})

    async def metrics(self, request: web.Request) -> web.Response:
        check_operator(self.master, request)
        return json_response(self.build_metrics())

    # -- the state -------------------------------------------------------------------
    def _framework_rows(self) -> list[dict[str, Any]]:
        rows = []
        for (fid, name, user, roles, info, ft, active, reg, rereg, disc, removed) in self.master.store.query(
                f"SELECT {_FW_COLS} FROM frameworks ORDER BY registered_at"):
            rows.append({"id": fid, "name": name, "user": user, "roles": json.loads(roles), "info": json.loads(info),
                         "failover_timeout": ft, "active": bool(active), "registered_at": reg,
                         "reregistered_at": rereg, "disconnected_at": disc, "removed_at": removed,
                         "connected": fid in self.master.scheduler_api.streams})
        rows.insert(0, {"id": BUILTIN_TASKS_FRAMEWORK, "name": "dcosd-tasks", "user": "", "roles": ["*"],
                        "info": {"name": "dcosd-tasks"}, "failover_timeout": 0, "active": True,
                        "registered_at": self.started, "reregistered_at": None, "disconnected_at": None,
                        "removed_at": None, "connected": True, "builtin": True})
        return rows

    def _statuses(self, task_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for i in range(0, len(task_ids), 500):
            chunk = task_ids[i:i + 500]
            for tid, state, ts, reason, message, source in self.master.store.query(
                    f"SELECT task_id, state, timestamp, reason, message, source FROM task_statuses WHERE task_id IN"
                    f" ({','.join('?' * len(chunk))}) ORDER BY task_id, seq", tuple(chunk)):
                s: dict[str, Any] = {"state": state, "timestamp": ts, "source": source}
                if reason:
                    s["reason"] = reason
                if message:
                    s["message"] = message
                out.setdefault(tid, []).append(s)
        return out

    def _task_rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        store = self.master.store
        live = views.tasks(store, active_only=True, limit=1_000_000)
        done = [t for t in views.tasks(store, limit=COMPLETED_LIMIT + len(live)) if not views.is_active(t["state"])]
        return live, done[:COMPLETED_LIMIT]

    def _task_json(self, t: dict[str, Any], statuses: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        res = Resources.from_dict(t["resources"])
        out = {"id": t["id"], "name": t["name"], "framework_id": t["framework_id"],
               "executor_id": t.get("spec", {}).get("executor_id") or "", "slave_id": t["agent_id"] or "",
               "agent_id": t["agent_id"] or "", "state": t["state"], "resources": mesos.flat_resources(res),
               "role": t["spec"].get("role", "*"), "statuses": statuses.get(t["id"], []),
               "labels": [{"key": k, "value": v} for k, v in t["spec"].get("labels", {}).items()],
               "discovery": {"visibility": "FRAMEWORK", "name": t["name"]}}
        if res.ports:
            out["discovery"]["ports"] = {"ports": [{"number": p, "protocol": "tcp"} for lo, hi in res.ports
                                                   for p in range(lo, min(hi, lo + 100) + 1)]}
        return out

    def build_state(self, with_tasks: bool = True) -> dict[str, Any]:
        m = self.master
        store = m.store
        sched = m.scheduling
        statuses: dict[str, list[dict[str, Any]]] = {}
        live: list[dict[str, Any]] = []
        done: list[dict[str, Any]] = []
        if with_tasks:
            live, done = self._task_rows()
            statuses = self._statuses([t["id"] for t in live + done])
        slaves = []
        for a in views.agents(store):
            total = Resources.from_dict(a["resources"])
            view = sched.agent_view(a["id"]) or {}
            used = Resources.from_dict(view.get("allocated", {})) if view else Resources()
            offered = Resources.from_dict(view.get("offered", {})) if view else Resources()
            reserved = {role: mesos.flat_resources(Resources.from_dict(r)) for role, r in view.get("reserved", {}).items()}
            host = a["address"].split("://", 1)[-1]
            slaves.append({
                "id": a["id"], "hostname": a["hostname"], "port": int(host.rsplit(":", 1)[-1] or 5051),
                "pid": f"slave(1)@{host}", "attributes": a["attributes"], "active": a["state"] == "ACTIVE",
                "registered_time": a["registered_at"], "reregistered_time": a["reregistered_at"],
                "resources": mesos.flat_resources(total), "used_resources": mesos.flat_resources(used),
                "offered_resources": mesos.flat_resources(offered), "reserved_resources": reserved,
                "unreserved_resources": mesos.flat_resources(total), "version": mesos.MESOS_VERSION,
                "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"]})
        frameworks, completed = [], []
        for f in self._framework_rows():
            fid = f["id"]
            ftasks = [self._task_json(t, statuses) for t in live if t["framework_id"] == fid]
            fdone = [self._task_json(t, statuses) for t in done if t["framework_id"] == fid]
            used = Resources()
            for t in live:
                if t["framework_id"] == fid:
                    used = used + Resources.from_dict(t["resources"])
            offers = sched.alloc.offers(fid) if sched.alloc is not None and fid in sched.alloc.framework_ids() else []
            offered = Resources()
            for o in offers:
                offered = offered + o.resources.flatten()
            fj = {
                "id": fid, "name": f["name"], "user": f["user"], "role": f["roles"][0], "roles": f["roles"],
                "hostname": f["info"].get("hostname", ""), "principal": f["info"].get("principal", ""),
                "active": f["active"] and f["removed_at"] is None, "connected": f["connected"],
                "recovered": False, "registered_time": f["registered_at"],
                "reregistered_time": f["reregistered_at"], "unregistered_time": f["removed_at"] or 0,
                "failover_timeout": f["failover_timeout"], "checkpoint": bool(f["info"].get("checkpoint")),
                "capabilities": [c.get("type") for c in f["info"].get("capabilities", []) if isinstance(c, dict)],
                "webui_url": f["info"].get("webui_url", ""),
                "resources": mesos.flat_resources(used + offered), "used_resources": mesos.flat_resources(used),
                "offered_resources": mesos.flat_resources(offered),
                "tasks": ftasks, "completed_tasks": fdone, "unreachable_tasks": [],
                "offers": [{"id": o.offer_id, "framework_id": fid, "slave_id": o.agent_id,
                            "resources": mesos.flat_resources(o.resources.flatten())} for o in offers],
                "executors": [], "completed_executors": []}
            (completed if f["removed_at"] is not None else frameworks).append(fj)
        host = m.advertise_url.split("://", 1)[-1]
        return {
            "version": mesos.MESOS_VERSION, "dcosd_version": __version__, "git_tag": "", "build_user": "dcosd",
            "id": f"dcosd-master-{m.term}", "pid": f"master@{host}", "hostname": host.rsplit(":", 1)[0],
            "leader": f"master@{host}", "leader_info": {"hostname": host.rsplit(":", 1)[0],
                                                         "port": int(host.rsplit(":", 1)[-1])},
            "cluster": "dcosd", "start_time": self.started, "elected_time": self.started,
            "activated_slaves": sum(1 for s in slaves if s["active"]),
            "deactivated_slaves": sum(1 for s in slaves if not s["active"]),
            "slaves": slaves, "frameworks": frameworks, "completed_frameworks": completed,
            "unregistered_frameworks": [], "orphan_tasks": [],
            "flags": {"allocation_interval": "1secs", "authenticate_frameworks": "false"},
        }

    def build_metrics(self) -> dict[str, float]:
        m = self.master
        store = m.store
        counts = views.task_counts(store)
        # Mesos: 1 on the leading master only (monitoring finds the leader by it); a one-master cluster leads.
        elected = m.ha is None or m.ha.store.is_leader
        out: dict[str, float] = {"master/elected": float(elected), "master/uptime_secs": time.time() - self.started}
        if m.ha is not None:
            out.update(m.ha.metrics())
        for s in TaskState:
            out[f"master/tasks_{s.value.removeprefix('TASK_').lower()}"] = float(counts.get(s.value, 0))
        out["master/tasks_queued"] = float(counts.get("QUEUED", 0))
        agents = views.agents(store)
        sessions = m.agents.sessions
        out["master/slaves_active"] = float(sum(1 for a in agents if a["state"] == "ACTIVE"))
        out["master/slaves_inactive"] = float(sum(1 for a in agents if a["state"] != "ACTIVE"))
        out["master/slaves_connected"] = float(sum(1 for a in agents if a["id"] in sessions))
        out["master/slaves_disconnected"] = float(len(agents)) - out["master/slaves_connected"]
        fws = [f for f in self._framework_rows() if f["removed_at"] is None]
        out["master/frameworks_active"] = float(sum(1 for f in fws if f["active"]))
        out["master/frameworks_inactive"] = float(sum(1 for f in fws if not f["active"]))
        out["master/frameworks_connected"] = float(sum(1 for f in fws if f["connected"]))
        out["master/frameworks_disconnected"] = float(sum(1 for f in fws if not f["connected"]))
        total = used = Resources()
        for a in agents:
            if a["state"] == "ACTIVE":
                total = total + Resources.from_dict(a["resources"])
        for r in views.allocated_by_agent(store).values():
            used = used + r
        for k in SCALAR_NAMES:
            out[f"master/{k}_total"] = total.get(k)
            out[f"master/{k}_used"] = used.get(k)
            out[f"master/{k}_percent"] = used.get(k) / total.get(k) if total.get(k) else 0.0
        sched = m.scheduling
        out["master/outstanding_offers"] = float(len(sched.alloc.offers()) if sched.alloc is not None else 0)
        out["allocator/mesos/allocation_runs"] = float(sched.cycles)
        out["master/messages_offers_sent"] = float(sched.offers_sent)
        out["master/calls_scheduler"] = float(m.scheduler_api.calls)
        return out

    def _roles(self) -> list[dict[str, Any]]:
        store = self.master.store
        weights = dict(store.query("SELECT role, weight FROM role_weights"))
        quotas = {r: json.loads(q) for r, q in store.query("SELECT role, limits FROM role_quotas")}
        by_role: dict[str, dict[str, Any]] = {}
        fw_roles = {f["id"]: f["roles"] for f in self._framework_rows() if f["removed_at"] is None}
        for fid, roles in fw_roles.items():
            for r in roles:
                by_role.setdefault(r, {"frameworks": set(), "allocated": Resources()})["frameworks"].add(fid)
        for role, res in store.query(f"SELECT COALESCE(role, '*'), resources FROM tasks WHERE state IN"
                                     f" ({','.join('?' * len(_LIVE))})", _LIVE):
            e = by_role.setdefault(role, {"frameworks": set(), "allocated": Resources()})
            e["allocated"] = e["allocated"] + Resources.from_dict(json.loads(res))
        for r in set(weights) | set(quotas):
            by_role.setdefault(r, {"frameworks": set(), "allocated": Resources()})
        view = {r["name"]: r for r in self.master.scheduling.role_view()}
        out = []
        for role in sorted(by_role):
            e = by_role[role]
            out.append({"name": role, "weight": weights.get(role, 1.0), "quota": quotas.get(role, {}),
                        "frameworks": sorted(e["frameworks"]), "allocated": e["allocated"].to_dict(),
                        "resources": mesos.flat_resources(e["allocated"]),
                        "share": view.get(role, {}).get("share", 0.0),
                        "consumed_quota": view.get(role, {}).get("consumed", {})})
        return out

    # -- v1 operator calls -----------------------------------------------------------
    async def call(self, request: web.Request) -> web.Response:
        check_operator(self.master, request)
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise ValidationError("an operator call must be a JSON object with a 'type'")
        kind = body["type"]
        fn = getattr(self, "op_" + kind.lower(), None)
        if fn is None:
            raise ValidationError(f"unknown or unsupported operator call type {kind!r}")
        result = await fn(body)
        if result is None:
            return web.Response(status=200)
        return json_response({"type": kind, kind.lower(): result})

    async def op_get_health(self, body: dict[str, Any]) -> Any:
        return {"healthy": True}

    async def op_get_version(self, body: dict[str, Any]) -> Any:
        return {"version_info": {"version": mesos.MESOS_VERSION, "build_user": "dcosd", "git_tag": __version__}}

    async def op_get_master(self, body: dict[str, Any]) -> Any:
        return {"master_info": self.master.scheduler_api._master_info(), "start_time": self.started,
                "elected_time": self.started}

    def _v1_task(self, t: dict[str, Any], statuses: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        res = Resources.from_dict(t["resources"])
        out = {"name": t["name"], "task_id": wrap(t["id"]), "framework_id": wrap(t["framework_id"]),
               "state": t["state"], "resources": mesos.resources_to_mesos({"*": res}),
               "statuses": [{"task_id": wrap(t["id"]), **s} for s in statuses.get(t["id"], [])]}
        if t["agent_id"]:
            out["agent_id"] = wrap(t["agent_id"])
        if t["spec"].get("executor_id"):
            out["executor_id"] = wrap(t["spec"]["executor_id"])
        return out

    async def op_get_tasks(self, body: dict[str, Any]) -> Any:
        live, done = self._task_rows()
        st = self._statuses([t["id"] for t in live + done])
        return {"tasks": [self._v1_task(t, st) for t in live if t["state"] != TaskState.UNREACHABLE.value],
                "unreachable_tasks": [self._v1_task(t, st) for t in live if t["state"] == TaskState.UNREACHABLE.value],
                "completed_tasks": [self._v1_task(t, st) for t in done]}

    async def op_get_agents(self, body: dict[str, Any]) -> Any:
        out = []
        for s in self.build_state(with_tasks=False)["slaves"]:
            def lst(flat: dict[str, Any]) -> list[dict[str, Any]]:
                d = {k: v for k, v in flat.items() if k in SCALAR_NAMES and v}
                return mesos.resources_to_mesos({"*": Resources.from_dict(d)})
            out.append({"agent_info": {"id": wrap(s["id"]), "hostname": s["hostname"], "port": s["port"],
                                       "resources": lst(s["resources"])},
                        "active": s["active"], "deactivated": not s["active"], "version": s["version"],
                        "pid": s["pid"], "registered_time": _ns(s["registered_time"]),
                        "total_resources": lst(s["resources"]), "allocated_resources": lst(s["used_resources"]),
                        "offered_resources": lst(s["offered_resources"])})
        return {"agents": out, "recovered_agents": []}

    async def op_get_frameworks(self, body: dict[str, Any]) -> Any:
        def fj(f: dict[str, Any]) -> dict[str, Any]:
            info = dict(f["info"])
            info["id"] = wrap(f["id"])
            info.setdefault("name", f["name"])
            info.setdefault("user", f["user"])
            info.setdefault("roles", f["roles"])
            return {"framework_info": info, "active": f["active"], "connected": f["connected"], "recovered": False,
                    "registered_time": _ns(f["registered_at"]), "reregistered_time": _ns(f["reregistered_at"])}

        rows = self._framework_rows()
        return {"frameworks": [fj(f) for f in rows if f["removed_at"] is None],
                "completed_frameworks": [fj(f) for f in rows if f["removed_at"] is not None]}

    async def op_get_executors(self, body: dict[str, Any]) -> Any:
        out = []
        for fid, eid, agent_id, info in self.master.store.query(
                "SELECT framework_id, executor_id, agent_id, info FROM executors"):
            out.append({"executor_info": {**json.loads(info), "executor_id": wrap(eid), "framework_id": wrap(fid)},
                        "agent_id": wrap(agent_id)})
        return {"executors": out, "orphan_executors": []}

    async def op_get_state(self, body: dict[str, Any]) -> Any:
        return {"get_tasks": await self.op_get_tasks(body), "get_executors": await self.op_get_executors(body),
                "get_frameworks": await self.op_get_frameworks(body), "get_agents": await self.op_get_agents(body)}

    async def op_get_roles(self, body: dict[str, Any]) -> Any:
        return {"roles": [{"name": r["name"], "weight": r["weight"],
                           "frameworks": [wrap(f) for f in r["frameworks"]],
                           "resources": mesos.resources_to_mesos({"*": Resources.from_dict(r["allocated"])})}
                          for r in self._roles()]}

    async def op_get_weights(self, body: dict[str, Any]) -> Any:
        return {"weight_infos": [{"role": r, "weight": w}
                                 for r, w in self.master.store.query("SELECT role, weight FROM role_weights ORDER BY role")]}

    async def op_update_weights(self, body: dict[str, Any]) -> Any:
        infos = (body.get("update_weights") or {}).get("weight_infos")
        if not isinstance(infos, list) or not infos:
            raise ValidationError("UPDATE_WEIGHTS needs update_weights.weight_infos")
        weights = {}
        for w in infos:
            if not isinstance(w, dict):
                raise ValidationError("weight_infos entries must be objects")
            role = _check_role(w.get("role"))
            v = w.get("weight")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v:
                raise ValidationError(f"weight of {role} must be a positive number")
            weights[role] = float(v)
        await self.set_weights(weights)
        return None

    async def op_get_quota(self, body: dict[str, Any]) -> Any:
        rows = self.master.store.query("SELECT role, limits FROM role_quotas ORDER BY role")
        configs = [{"role": r, "limits": {k: {"value": v} for k, v in json.loads(q).items()}} for r, q in rows]
        infos = [{"role": r, "guarantee": []} for r, _ in rows]
        return {"status": {"infos": infos, "configs": configs}}

    async def op_update_quota(self, body: dict[str, Any]) -> Any:
        configs = (body.get("update_quota") or {}).get("quota_configs")
        if not isinstance(configs, list) or not configs:
            raise ValidationError("UPDATE_QUOTA needs update_quota.quota_configs")
        parsed = []
        for c in configs:
            if not isinstance(c, dict):
                raise ValidationError("quota_configs entries must be objects")
            parsed.append((_check_role(c.get("role")), _parse_limits(c.get("limits") or {})))
        for role, limits in parsed:
            await self.set_quota(role, limits)
        return None

    async def op_get_maintenance_status(self, body: dict[str, Any]) -> Any:
        return {"status": {"draining_machines": [], "down_machines": []}}

    async def op_get_maintenance_schedule(self, body: dict[str, Any]) -> Any:
        return {"schedule": {"windows": []}}

    async def op_get_flags(self, body: dict[str, Any]) -> Any:
        return {"flags": [{"name": "allocation_interval", "value": "1secs"}]}

    # -- writes --------------------------------------------------------------------
    async def set_weights(self, weights: dict[str, float]) -> None:
        self.master.require_leader()
        await self.master.store.propose({"type": "role_weights", "weights": weights})

    async def set_quota(self, role: str, limits: dict[str, float] | None) -> None:
        self.master.require_leader()
        await self.master.store.propose({"type": "role_quota", "role": role, "limits": limits or None})

    # -- dcosd's own routes (the CLI) ------------------------------------------------
    def _fw_summary(self, f: dict[str, Any], tasks: Iterable[dict[str, Any]]) -> dict[str, Any]:
        mine = [t for t in tasks if t["framework_id"] == f["id"]]
        used = Resources()
        for t in mine:
            used = used + Resources.from_dict(t["resources"])
        state = "REMOVED" if f["removed_at"] is not None else ("CONNECTED" if f["connected"] else "DISCONNECTED")
        return {"id": f["id"], "name": f["name"], "user": f["user"], "roles": f["roles"], "state": state,
                "builtin": bool(f.get("builtin")), "failover_timeout": f["failover_timeout"],
                "registered_at": f["registered_at"], "disconnected_at": f["disconnected_at"],
                "removed_at": f["removed_at"], "tasks": len(mine), "used": used.to_dict()}

    async def dcosd_frameworks(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        live = views.tasks(self.master.store, active_only=True, limit=1_000_000)
        show_all = request.query.get("all") in ("1", "true", "True")
        rows = [self._fw_summary(f, live) for f in self._framework_rows() if show_all or f["removed_at"] is None]
        return json_response({"frameworks": rows})

    def _find_framework(self, key: str) -> dict[str, Any]:
        rows = self._framework_rows()
        exact = [f for f in rows if f["id"] == key] or [f for f in rows if f["name"] == key and f["removed_at"] is None]
        if len(exact) == 1:
            return exact[0]
        pref = [f for f in rows if f["id"].startswith(key)]
        if len(pref) == 1:
            return pref[0]
        if not exact and not pref:
            raise NotFound(f"no framework {key}")
        raise ValidationError(f"{key!r} matches several frameworks; give more of the id")

    async def dcosd_framework(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        f = self._find_framework(request.match_info["framework_id"])
        live = views.tasks(self.master.store, active_only=True, limit=1_000_000)
        out = self._fw_summary(f, live)
        out["info"] = f["info"]
        out["task_list"] = [{"id": t["id"], "name": t["name"], "state": t["state"], "agent_id": t["agent_id"],
                             "resources": t["resources"]} for t in live if t["framework_id"] == f["id"]]
        out["unacknowledged_updates"] = (self.master.store.query_one(
            "SELECT COUNT(*) FROM framework_updates WHERE framework_id = ?", (f["id"],)) or (0,))[0]
        sched = self.master.scheduling
        out["offers"] = [{"id": o.offer_id, "agent_id": o.agent_id, "resources": o.resources.flatten().to_dict()}
                         for o in (sched.alloc.offers(f["id"]) if sched.alloc is not None
                                   and f["id"] in sched.alloc.framework_ids() else [])]
        return json_response(out)

    async def dcosd_teardown(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        self.master.require_leader()
        f = self._find_framework(request.match_info["framework_id"])
        if f.get("builtin"):
            raise ValidationError("the built-in task framework cannot be torn down")
        if f["removed_at"] is not None:
            raise ValidationError(f"framework {f['id']} was already torn down")
        await self.master.scheduling.teardown(f["id"])
        return json_response({"framework_id": f["id"], "state": "REMOVED"}, status=202)

    async def dcosd_roles(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        return json_response({"roles": self._roles()})

    async def dcosd_weight(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        role = _check_role(request.match_info["role"])
        body = await read_json(request)
        w = body.get("weight") if isinstance(body, dict) else None
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0 or w != w:
            raise ValidationError("weight must be a positive number")
        await self.set_weights({role: float(w)})
        return json_response({"role": role, "weight": float(w)})

    async def dcosd_quota(self, request: web.Request) -> web.Response:
        self.master.require_operator(request)
        role = _check_role(request.match_info["role"])
        if request.method == "DELETE":
            await self.set_quota(role, None)
            return json_response({"role": role, "limits": {}})
        body = await read_json(request)
        limits = _parse_limits(body.get("limits") if isinstance(body, dict) else None)
        await self.set_quota(role, limits)
        return json_response({"role": role, "limits": limits})
