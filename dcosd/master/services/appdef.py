"""Marathon app definitions: parse strictly, normalise with Marathon's defaults, merge updates — pure.

An app is kept as its normalised Marathon JSON (camelCase, every supported field
present with its default), so what an operator PUTs back after a GET is exactly
what is stored. Fields Marathon computes (tasks, counts, version info …) are
ignored on input; anything else unknown is refused with 422 naming the field.
"""

from __future__ import annotations

import copy
import datetime
import math
import re
from typing import Any, Mapping

from dcosd.errors import ValidationError
from dcosd.master.services import constraints as cons
from dcosd.model.resources import MAX_SCALAR
from dcosd.vips.table import VipError, vips_from_port_definitions

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_SEGMENT = re.compile(r"^([a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])$")
MAX_ID = 200
MAX_INSTANCES = 100_000
KILL_SELECTIONS = ("YOUNGEST_FIRST", "OLDEST_FIRST")
HEALTH_PROTOCOLS = {"HTTP": "HTTP", "HTTPS": "HTTPS", "TCP": "TCP", "COMMAND": "COMMAND", "MESOS_HTTP": "HTTP",
                    "MESOS_HTTPS": "HTTPS", "MESOS_TCP": "TCP"}


class AppInvalid(ValidationError):
    """An app or group definition Marathon would refuse: 422 with the field in the message."""

    http_status = 422


# Read-only fields a client may send back from a GET: ignored, never an error.
READ_ONLY = {"tasks", "tasksRunning", "tasksStaged", "tasksHealthy", "tasksUnhealthy", "deployments",
             "versionInfo", "lastTaskFailure", "taskStats", "readinessCheckResults", "version"}

DEFAULTS: dict[str, Any] = {
    "cmd": None, "args": None, "cpus": 1.0, "mem": 128.0, "disk": 0.0, "gpus": 0, "instances": 1,
    "env": {}, "labels": {}, "user": None, "uris": [], "fetch": [], "portDefinitions": None, "ports": None,
    "requirePorts": False, "constraints": [], "healthChecks": [], "backoffSeconds": 1.0, "backoffFactor": 1.15,
    "maxLaunchDelaySeconds": 300.0, "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0},
    "dependencies": [], "killSelection": "YOUNGEST_FIRST", "taskKillGracePeriodSeconds": None,
    "acceptedResourceRoles": None, "role": "*", "container": None, "executor": "", "storeUrls": [],
    "taskRateLimit": None, "unreachableStrategy": None, "ipAddress": None, "readinessChecks": [], "secrets": {},
    "residency": None, "networks": None,
}
WRITABLE = set(DEFAULTS) | {"id"}

HEALTH_DEFAULTS: dict[str, Any] = {
    "protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300, "intervalSeconds": 60,
    "timeoutSeconds": 20, "maxConsecutiveFailures": 3, "delaySeconds": 15, "ignoreHttp1xx": False,
}
HEALTH_FIELDS = set(HEALTH_DEFAULTS) | {"command", "port"}


def fmt_time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(TIME_FORMAT)


def _bad(msg: str) -> AppInvalid:
    return AppInvalid(msg)


def normalise_id(raw: Any, base: str = "/", what: str = "id") -> str:
    """An absolute app/group path: relative ids are resolved against ``base``; each segment checked."""
    if not isinstance(raw, str) or raw.strip() == "":
        raise _bad(f"{what}: must be a non-empty path such as /group/app")
    path = raw if raw.startswith("/") else base.rstrip("/") + "/" + raw
    parts: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if not parts:
                raise _bad(f"{what}: {raw!r} climbs above the root")
            parts.pop()
            continue
        if not _SEGMENT.fullmatch(seg):
            raise _bad(f"{what}: {raw!r} is invalid (segments are lower-case letters, digits and '-', "
                       f"not starting or ending with '-')")
        parts.append(seg)
    out = "/" + "/".join(parts)
    if len(out) > MAX_ID:
        raise _bad(f"{what}: longer than {MAX_ID} characters")
    return out


def discovery_name(app_id: str) -> str:
    """Marathon's discovery name: the path reversed, ``/grp/app`` → ``app.grp``."""
    return ".".join(reversed([s for s in app_id.split("/") if s]))


def parent_of(app_id: str) -> str:
    return app_id.rsplit("/", 1)[0] or "/"


def _number(v: Any, field: str, lo: float, hi: float, integer: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise _bad(f"{field}: must be a number")
    if integer and v != int(v):
        raise _bad(f"{field}: must be a whole number")
    if not lo <= v <= hi:
        raise _bad(f"{field}: must be between {lo:g} and {hi:g} (got {v:g})")
    return int(v) if integer else float(v)


def _str_map(v: Any, field: str) -> dict[str, str]:
    if not isinstance(v, Mapping):
        raise _bad(f"{field}: must be an object of strings")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or k == "" or "=" in k or "\0" in k:
            raise _bad(f"{field}: {k!r} is not a valid name")
        if isinstance(val, Mapping) and field == "env" and set(val) == {"secret"}:
            raise _bad(f"env.{k}: secrets are not supported")
        if not isinstance(val, str) or "\0" in val:
            raise _bad(f"{field}.{k}: must be a string")
        out[k] = val
    return out


def _health_check(raw: Any, i: int, nports: int) -> dict[str, Any]:
    f = f"healthChecks[{i}]"
    if not isinstance(raw, Mapping):
        raise _bad(f"{f}: must be an object")
    unknown = set(raw) - HEALTH_FIELDS
    if unknown:
        raise _bad(f"{f}: unknown field(s) {', '.join(sorted(unknown))}")
    hc = {**HEALTH_DEFAULTS, **{k: v for k, v in raw.items() if v is not None}}
    proto = hc["protocol"]
    if proto not in HEALTH_PROTOCOLS:
        raise _bad(f"{f}.protocol: must be one of {', '.join(sorted(HEALTH_PROTOCOLS))}")
    hc["protocol"] = proto
    for key, hi in (("gracePeriodSeconds", 86400), ("intervalSeconds", 86400), ("timeoutSeconds", 86400),
                    ("maxConsecutiveFailures", 1_000_000), ("delaySeconds", 86400)):
        hc[key] = _number(hc[key], f"{f}.{key}", 0, hi)
        if key != "gracePeriodSeconds" and key != "delaySeconds" and key != "maxConsecutiveFailures":
            if hc[key] <= 0:
                raise _bad(f"{f}.{key}: must be greater than 0")
    hc["maxConsecutiveFailures"] = int(hc["maxConsecutiveFailures"])
    if HEALTH_PROTOCOLS[proto] == "COMMAND":
        cmd = hc.get("command")
        if isinstance(cmd, Mapping):
            cmd = cmd.get("value")
        if not isinstance(cmd, str) or not cmd.strip():
            raise _bad(f"{f}.command: a COMMAND health check needs a command {{\"value\": \"...\"}}")
        hc["command"] = {"value": cmd}
        for k in ("path", "portIndex", "ignoreHttp1xx"):
            hc.pop(k, None)
    else:
        hc.pop("command", None)
        if "port" in hc:
            hc["port"] = int(_number(hc["port"], f"{f}.port", 1, 65535, integer=True))
            hc.pop("portIndex", None)
        else:
            hc["portIndex"] = int(_number(hc["portIndex"], f"{f}.portIndex", 0, 1000, integer=True))
            if hc["portIndex"] >= nports:
                raise _bad(f"{f}.portIndex: {hc['portIndex']} but the app has {nports} port(s)")
        if HEALTH_PROTOCOLS[proto] == "TCP":
            hc.pop("path", None)
        elif not isinstance(hc.get("path"), str) or not hc["path"].startswith("/"):
            raise _bad(f"{f}.path: must start with /")
    return hc


def _ports(app: dict[str, Any], given: Mapping[str, Any]) -> None:
    if given.get("portDefinitions") is not None and given.get("ports") is not None:
        raise _bad("ports: give either ports or portDefinitions, not both")
    if given.get("portDefinitions") is not None:
        pds = given["portDefinitions"]
        if not isinstance(pds, list):
            raise _bad("portDefinitions: must be a list")
        out = []
        for i, pd in enumerate(pds):
            if not isinstance(pd, Mapping):
                raise _bad(f"portDefinitions[{i}]: must be an object")
            unknown = set(pd) - {"port", "protocol", "name", "labels"}
            if unknown:
                raise _bad(f"portDefinitions[{i}]: unknown field(s) {', '.join(sorted(unknown))}")
            port = int(_number(pd.get("port", 0), f"portDefinitions[{i}].port", 0, 65535, integer=True))
            proto = pd.get("protocol", "tcp")
            if proto not in ("tcp", "udp", "udp,tcp", "tcp,udp"):
                raise _bad(f"portDefinitions[{i}].protocol: must be tcp or udp")
            d: dict[str, Any] = {"port": port, "protocol": proto}
            if pd.get("name") is not None:
                if not isinstance(pd["name"], str):
                    raise _bad(f"portDefinitions[{i}].name: must be a string")
                d["name"] = pd["name"]
            if pd.get("labels"):
                d["labels"] = _str_map(pd["labels"], f"portDefinitions[{i}].labels")
            out.append(d)
    elif given.get("ports") is not None:
        ps = given["ports"]
        if not isinstance(ps, list):
            raise _bad("ports: must be a list of port numbers")
        out = [{"port": int(_number(p, f"ports[{i}]", 0, 65535, integer=True)), "protocol": "tcp"}
               for i, p in enumerate(ps)]
    else:
        out = [{"port": 0, "protocol": "tcp"}]  # Marathon's default: one host port
    nonzero = [d["port"] for d in out if d["port"]]
    if len(set(nonzero)) != len(nonzero):
        raise _bad("portDefinitions: the same port is listed twice")
    try:  # VIP_n labels (DC/OS named VIPs): refused here, not when an instance launches
        vips_from_port_definitions(out)
    except VipError as exc:
        raise _bad(str(exc)) from None
    app["portDefinitions"] = out
    app["ports"] = [d["port"] for d in out]
    if app["requirePorts"] and any(d["port"] == 0 for d in out):
        raise _bad("requirePorts: every port must be given (non-zero) when requirePorts is true")


def parse_app(raw: Any, *, app_id: str | None = None, base: str = "/") -> dict[str, Any]:
    """A full app definition (POST, or PUT of an app that does not exist yet), normalised."""
    if not isinstance(raw, Mapping):
        raise _bad("an app definition must be a JSON object")
    given = {k: v for k, v in raw.items() if k not in READ_ONLY}
    unknown = set(given) - WRITABLE
    if unknown:
        raise _bad(f"unknown field(s) in app definition: {', '.join(sorted(unknown))}")
    if app_id is None:
        if "id" not in given:
            raise _bad("id: an app needs an id")
        app_id = normalise_id(given["id"], base)
    elif "id" in given and given["id"] is not None and normalise_id(given["id"], base) != app_id:
        raise _bad(f"id: {given['id']!r} does not match the path {app_id}")
    if app_id == "/":
        raise _bad("id: the root group cannot be an app")
    app = copy.deepcopy(DEFAULTS)
    for k, v in given.items():
        if k not in ("id", "ports", "portDefinitions") and v is not None:
            app[k] = copy.deepcopy(v)
    app["id"] = app_id
    _validate(app, given)
    return app


def merge_update(current: Mapping[str, Any], patch: Any, base: str = "/") -> dict[str, Any]:
    """A PUT onto an existing app: given fields replace the current ones (Marathon's AppUpdate)."""
    if not isinstance(patch, Mapping):
        raise _bad("an app update must be a JSON object")
    given = {k: v for k, v in patch.items() if k not in READ_ONLY}
    unknown = set(given) - WRITABLE
    if unknown:
        raise _bad(f"unknown field(s) in app definition: {', '.join(sorted(unknown))}")
    if "id" in given and given["id"] is not None and normalise_id(given["id"], base) != current["id"]:
        raise _bad(f"id: an app cannot be renamed ({given['id']!r} ≠ {current['id']})")
    merged = {k: copy.deepcopy(v) for k, v in current.items() if k not in ("ports", "portDefinitions")}
    if "cmd" in given and given["cmd"] is not None:
        merged["args"] = None
    if "args" in given and given["args"] is not None:
        merged["cmd"] = None
    for k, v in given.items():
        if k not in ("id", "ports", "portDefinitions"):
            merged[k] = copy.deepcopy(v) if v is not None else copy.deepcopy(DEFAULTS[k])
    ports_src = {"portDefinitions": current["portDefinitions"]}
    if given.get("portDefinitions") is not None:
        ports_src = {"portDefinitions": given["portDefinitions"]}
    elif given.get("ports") is not None:
        ports_src = {"ports": given["ports"]}
    _validate(merged, ports_src)
    return merged


def _validate(app: dict[str, Any], ports_src: Mapping[str, Any]) -> None:
    if (app["cmd"] is None) == (app["args"] is None):
        raise _bad("cmd: an app needs exactly one of cmd or args")
    if app["cmd"] is not None and (not isinstance(app["cmd"], str) or not app["cmd"].strip() or "\0" in app["cmd"]):
        raise _bad("cmd: must be a non-empty string")
    if app["args"] is not None and (not isinstance(app["args"], list) or not app["args"]
                                    or not all(isinstance(a, str) and "\0" not in a for a in app["args"])):
        raise _bad("args: must be a non-empty list of strings")
    app["cpus"] = _number(app["cpus"], "cpus", 0.001, MAX_SCALAR["cpus"])
    app["mem"] = _number(app["mem"], "mem", 4, MAX_SCALAR["mem"])
    app["disk"] = _number(app["disk"], "disk", 0, MAX_SCALAR["disk"])
    app["gpus"] = _number(app["gpus"], "gpus", 0, MAX_SCALAR["gpus"], integer=True)
    app["instances"] = _number(app["instances"], "instances", 0, MAX_INSTANCES, integer=True)
    app["env"] = _str_map(app["env"], "env")
    app["labels"] = _str_map(app["labels"], "labels")
    if app["user"] is not None and (not isinstance(app["user"], str) or not app["user"].isprintable()
                                    or not 0 < len(app["user"]) <= 64):
        raise _bad("user: must be a user name")
    uris = app["uris"]
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise _bad("uris: must be a list of strings")
    for u in uris + [f.get("uri") if isinstance(f, Mapping) else f for f in app["fetch"] or []]:
        if not isinstance(u, str) or not re.match(r"^(https?|file)://", u):
            raise _bad(f"uris: {u!r} is not an http(s):// or file:// URI")
    if not isinstance(app["requirePorts"], bool):
        raise _bad("requirePorts: must be true or false")
    _ports(app, ports_src)
    try:
        app["constraints"] = cons.parse(app["constraints"])
    except cons.ConstraintError as exc:
        raise _bad(f"constraints: {exc}") from None
    hcs = app["healthChecks"]
    if not isinstance(hcs, list):
        raise _bad("healthChecks: must be a list")
    app["healthChecks"] = [_health_check(h, i, len(app["portDefinitions"])) for i, h in enumerate(hcs)]
    app["backoffSeconds"] = _number(app["backoffSeconds"], "backoffSeconds", 0, 86400)
    app["backoffFactor"] = _number(app["backoffFactor"], "backoffFactor", 1.0, 100)
    app["maxLaunchDelaySeconds"] = _number(app["maxLaunchDelaySeconds"], "maxLaunchDelaySeconds", 0, 86400)
    us = app["upgradeStrategy"]
    if not isinstance(us, Mapping) or set(us) - {"minimumHealthCapacity", "maximumOverCapacity"}:
        raise _bad("upgradeStrategy: must be {minimumHealthCapacity, maximumOverCapacity}")
    us = {**DEFAULTS["upgradeStrategy"], **{k: v for k, v in us.items() if v is not None}}
    us["minimumHealthCapacity"] = _number(us["minimumHealthCapacity"], "upgradeStrategy.minimumHealthCapacity", 0, 1)
    us["maximumOverCapacity"] = _number(us["maximumOverCapacity"], "upgradeStrategy.maximumOverCapacity", 0, 1)
    app["upgradeStrategy"] = us
    deps = app["dependencies"]
    if not isinstance(deps, list):
        raise _bad("dependencies: must be a list of app ids")
    app["dependencies"] = [normalise_id(d, parent_of(app["id"]), "dependencies") for d in deps]
    if app["id"] in app["dependencies"]:
        raise _bad("dependencies: an app cannot depend on itself")
    if app["killSelection"] not in KILL_SELECTIONS:
        raise _bad(f"killSelection: must be one of {', '.join(KILL_SELECTIONS)}")
    g = app["taskKillGracePeriodSeconds"]
    if g is not None:
        app["taskKillGracePeriodSeconds"] = _number(g, "taskKillGracePeriodSeconds", 0, 3600)
    if app["container"] not in (None, {}) and (not isinstance(app["container"], Mapping)
                                              or app["container"].get("docker") or app["container"].get("type") == "DOCKER"):
        raise _bad("container: Docker containers are not supported; give cmd or args")
    if app["role"] not in (None, "*") and not isinstance(app["role"], str):
        raise _bad("role: must be a string")
    if app["acceptedResourceRoles"] is not None and (not isinstance(app["acceptedResourceRoles"], list) or any(
            not isinstance(r, str) for r in app["acceptedResourceRoles"])):
        raise _bad("acceptedResourceRoles: must be a list of roles")
    if not isinstance(app["fetch"], list):
        raise _bad("fetch: must be a list of {uri}")


def config_key(app: Mapping[str, Any]) -> dict[str, Any]:
    """What makes running tasks stale when it changes: everything but the instance count."""
    return {k: v for k, v in app.items() if k != "instances"}


def min_healthy(app: Mapping[str, Any]) -> int:
    return math.ceil(app["instances"] * app["upgradeStrategy"]["minimumHealthCapacity"] - 1e-9)


def max_capacity(app: Mapping[str, Any]) -> int:
    return math.floor(app["instances"] * (1 + app["upgradeStrategy"]["maximumOverCapacity"]) + 1e-9)


def task_health_checks(app: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The health checks as the agent runs them (launch message)."""
    out = []
    for hc in app["healthChecks"]:
        proto = HEALTH_PROTOCOLS[hc["protocol"]]
        d = {"protocol": proto, "grace_seconds": hc["gracePeriodSeconds"], "interval_seconds": hc["intervalSeconds"],
             "timeout_seconds": hc["timeoutSeconds"], "max_failures": hc["maxConsecutiveFailures"]}
        if proto == "COMMAND":
            d["command"] = hc["command"]["value"]
        else:
            if "port" in hc:
                d["port"] = hc["port"]
            else:
                d["port_index"] = hc["portIndex"]
            if proto != "TCP":
                d["path"] = hc["path"]
        out.append(d)
    return out
