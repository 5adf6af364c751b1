"""Mesos v1 wire shapes (JSON) ↔ dcosd's own types — pure, stdlib + dcosd.model only.

Mesos resources are lists of ``{name, type, scalar|ranges|set, role, reservations, allocation_info}``;
dcosd's are ``Resources`` (one bag) or, with their reservation role, a mapping role → ``Resources``
(the allocator's ``RoleResources`` has the same shape). Ids are ``{"value": ...}`` objects; status
uuids are base64 bytes on the wire. Everything a framework sends is validated here and refused with
``ValidationError`` naming the field, so nothing malformed reaches the master's state.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Mapping

from dcosd.errors import ValidationError
from dcosd.model.resources import SCALAR_NAMES, ResourceError, Resources
from dcosd.model.states import TaskState

UNRESERVED = "*"
MESOS_VERSION = "1.11.0"


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ValidationError(message)


def value_of(obj: Any, what: str, *, required: bool = True) -> str | None:
    """``{"value": "x"}`` → ``"x"``."""
    if obj is None and not required:
        return None
    _require(isinstance(obj, Mapping) and isinstance(obj.get("value"), str) and obj["value"] != "",
             f"{what} must be an object with a non-empty string 'value'")
    return obj["value"]


def wrap(value: str) -> dict[str, str]:
    return {"value": value}


# -- resources -----------------------------------------------------------------------------


def resource_role(r: Mapping[str, Any]) -> str:
    """The reservation role of one Mesos resource (pre-1.x ``role`` or the last ``reservations`` entry)."""
    res = r.get("reservations")
    if isinstance(res, list) and res:
        last = res[-1]
        if isinstance(last, Mapping) and isinstance(last.get("role"), str):
            return last["role"]
    role = r.get("role")
    return role if isinstance(role, str) and role else UNRESERVED


def parse_resources(items: Any, what: str = "resources") -> dict[str, Resources]:
    """A Mesos resource list → {reservation role: Resources}. Unknown names are refused."""
    if items is None:
        return {}
    _require(isinstance(items, list), f"{what} must be a list")
    by_role: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(items):
        _require(isinstance(r, Mapping) and isinstance(r.get("name"), str), f"{what}[{i}] needs a name")
        name = r["name"]
        role = resource_role(r)
        acc = by_role.setdefault(role, {})
        kind = r.get("type", "SCALAR" if name != "ports" else "RANGES")
        if name in SCALAR_NAMES:
            _require(kind == "SCALAR", f"{what}[{i}] ({name}) must be SCALAR")
            v = (r.get("scalar") or {}).get("value")
            _require(isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v >= 0,
                     f"{what}[{i}] ({name}) needs a non-negative scalar.value")
            acc[name] = acc.get(name, 0.0) + float(v)
        elif name == "ports":
            _require(kind == "RANGES", f"{what}[{i}] (ports) must be RANGES")
            ranges = (r.get("ranges") or {}).get("range")
            _require(isinstance(ranges, list), f"{what}[{i}] (ports) needs ranges.range")
            for rg in ranges:
                _require(isinstance(rg, Mapping) and isinstance(rg.get("begin"), int) and isinstance(rg.get("end"), int),
                         f"{what}[{i}] (ports): each range needs integer begin and end")
                acc.setdefault("ports", []).append([rg["begin"], rg["end"]])
        else:
            raise ValidationError(f"{what}[{i}]: resource {name!r} is not offered by dcosd "
                                  f"(known: {', '.join(SCALAR_NAMES)}, ports)")
    out: dict[str, Resources] = {}
    for role, acc in by_role.items():
        try:
            res = Resources.from_dict(acc)
        except ResourceError as exc:
            raise ValidationError(f"{what}: {exc}") from exc
        if not res.is_empty():
            out[role] = res
    return out


def flatten(by_role: Mapping[str, Resources]) -> Resources:
    out = Resources()
    for r in by_role.values():
        out = out + r
    return out


def resources_to_mesos(by_role: Mapping[str, Resources], allocation_role: str | None = None) -> list[dict[str, Any]]:
    """{reservation role: Resources} → a Mesos resource list (``role`` and ``reservations`` both set)."""
    out: list[dict[str, Any]] = []
    for role, res in by_role.items():
        common: dict[str, Any] = {"role": role}
        if role != UNRESERVED:
            common["reservations"] = [{"type": "DYNAMIC", "role": role}]
        if allocation_role is not None:
            common["allocation_info"] = {"role": allocation_role}
        for name in SCALAR_NAMES:
            v = res.get(name)
            if v:
                out.append({"name": name, "type": "SCALAR", "scalar": {"value": v}, **common})
        if res.ports:
            out.append({"name": "ports", "type": "RANGES",
                        "ranges": {"range": [{"begin": a, "end": b} for a, b in res.ports]}, **common})
    return out


def flat_resources(res: Resources) -> dict[str, Any]:
    """The flattened form of /master/state: ``{"cpus","mem","disk","gpus","ports":"[a-b, ...]"}``."""
    out: dict[str, Any] = {k: res.get(k) for k in SCALAR_NAMES}
    if res.ports:
        out["ports"] = res.mesos_ports()
    return out


# -- tasks ------------------------------------------------------------------------------


def _env(command: Mapping[str, Any] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    variables = ((command or {}).get("environment") or {}).get("variables") or []
    _require(isinstance(variables, list), "environment.variables must be a list")
    for v in variables:
        _require(isinstance(v, Mapping) and isinstance(v.get("name"), str) and isinstance(v.get("value", ""), str),
                 "environment.variables entries need string name and value")
        env[v["name"]] = v.get("value", "")
    return env


def command_fields(command: Any, what: str) -> dict[str, Any]:
    """A Mesos CommandInfo → TaskSpec's ``cmd``/``argv``/``env``/``user`` fields."""
    _require(isinstance(command, Mapping), f"{what} must be an object")
    out: dict[str, Any] = {"env": _env(command)}
    shell = command.get("shell", True)
    value = command.get("value")
    args = command.get("arguments") or []
    _require(isinstance(args, list) and all(isinstance(a, str) for a in args), f"{what}.arguments must be strings")
    if shell:
        _require(isinstance(value, str) and value.strip() != "", f"{what}.value must be a non-empty shell command")
        out["cmd"] = value
    else:
        _require(isinstance(value, str) and value != "", f"{what}.value must name a program when shell is false")
        out["argv"] = [value, *args[1:]] if args else [value]
    if isinstance(command.get("user"), str):
        out["user"] = command["user"]
    return out


def kill_grace(task_info: Mapping[str, Any], default: float = 3.0) -> float:
    ns = ((task_info.get("kill_policy") or {}).get("grace_period") or {}).get("nanoseconds")
    if isinstance(ns, (int, float)) and not isinstance(ns, bool) and ns >= 0:
        return min(float(ns) / 1e9, 3600.0)
    return default


def labels_of(info: Mapping[str, Any]) -> dict[str, str]:
    labels = (info.get("labels") or {}).get("labels") or []
    out = {}
    if isinstance(labels, list):
        for lb in labels:
            if isinstance(lb, Mapping) and isinstance(lb.get("key"), str):
                out[lb["key"]] = str(lb.get("value", ""))
    return out


def labels_to_mesos(labels: Mapping[str, str]) -> dict[str, Any]:
    return {"labels": [{"key": k, "value": v} for k, v in labels.items()]}


# -- status updates -----------------------------------------------------------------------


def encode_uuid(uuid: str) -> str:
    """Our status uuid (text) → the base64 bytes of the wire; executors' own base64 uuids stay as they are."""
    try:
        raw = base64.b64decode(uuid, validate=True)
        if len(raw) == 16:
            return uuid
    except (binascii.Error, ValueError):
        pass
    return base64.b64encode(uuid.encode()).decode()


def decode_uuid(wire: str) -> str:
    """The inverse of ``encode_uuid``."""
    try:
        raw = base64.b64decode(wire, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"uuid {wire[:60]!r} is not base64") from None
    if len(raw) == 16:
        return wire
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ValidationError("uuid is not a status uuid of this master") from None


def status_to_mesos(*, task_id: str, state: str, agent_id: str | None, uuid: str | None, timestamp: float,
                    source: str | None = None, reason: str | None = None, message: str = "",
                    executor_id: str | None = None, healthy: bool | None = None) -> dict[str, Any]:
    """A TaskStatus as Mesos sends it. ``agent_id`` is always present when ``uuid`` is (pymesos needs it)."""
    st: dict[str, Any] = {"task_id": wrap(task_id), "state": state, "timestamp": timestamp}
    if agent_id:
        st["agent_id"] = wrap(agent_id)
    if uuid is not None and agent_id:
        st["uuid"] = encode_uuid(uuid)
    if source:
        st["source"] = source
    if reason:
        st["reason"] = reason
    if message:
        st["message"] = message
    if executor_id:
        st["executor_id"] = wrap(executor_id)
    if healthy is not None:
        st["healthy"] = healthy
    return st


def is_state(value: Any) -> bool:
    return isinstance(value, str) and value in TaskState._value2member_map_
