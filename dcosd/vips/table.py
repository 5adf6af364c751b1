"""The VIP table: which virtual address:port balances onto which backends. Pure: stdlib only.

A task declares its VIPs in the spec label ``DCOSD_VIPS`` — a JSON list of
``{"port_index": i, "vip": "/name:port"}``: connections to ``name:port`` go to the
task's i-th allocated host port. Marathon-style apps write ``portDefinitions[i].labels
{"VIP_0": "/name:port"}``; ``vips_from_port_definitions`` turns those into the label.

``build_table(tasks, agent_ips)`` gives, for every ``name:port`` declared by a live task,
a stable virtual IPv4 address (``allocate_addresses``: a hash of the name into
``11.0.0.0/8``, collisions settled deterministically) and the backends ``(agent ip,
host port)`` of the RUNNING tasks that are healthy or have no health check and are not
being killed. Declarations that cannot be used (malformed label, port index beyond the
task's ports, unknown agent) are left out and named in ``VipTable.problems``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

LABEL = "DCOSD_VIPS"
DEFAULT_NETWORK = "11.0.0.0/8"  # as DC/OS's l4lb for named VIPs
DNS_ZONE = "marathon.l4lb"  # <name>.marathon.l4lb.<domain>
RUNNING = "TASK_RUNNING"
LIVE_STATES = frozenset({"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_UNREACHABLE"})
MAX_VIPS_PER_TASK = 32
MAX_LABEL_CHARS = 8192
MAX_NAME_CHARS = 200

_VIP_RE = re.compile(r"/?(?P<name>[A-Za-z0-9._/-]+):(?P<port>[0-9]{1,5})")
_MARATHON_KEY = re.compile(r"VIP_[0-9]+")


class VipError(ValueError):
    """A VIP declaration that cannot be used; the message says which part and why."""


@dataclass(frozen=True, order=True)
class VipAddress:
    """``/name:port`` as declared: the name keeps its slashes (``/grp/app``), without a leading one."""

    name: str
    port: int

    @property
    def key(self) -> str:
        return f"/{self.name}:{self.port}"

    @property
    def dns_label(self) -> str:
        return dns_label(self.name)


@dataclass(frozen=True)
class VipBinding:
    port_index: int
    vip: VipAddress


def dns_label(name: str) -> str:
    """The label of ``<label>.marathon.l4lb.<domain>``: slashes dropped (``/grp/app`` → ``grpapp``,
    as DC/OS), then the Mesos-DNS label rules (lower case; ``.``/``_`` → ``-``; ≤ 63 characters)."""
    from dcosd.master.dns.labels import label  # pure, stdlib-only

    return label(name.replace("/", ""))


def parse_vip(text: Any) -> VipAddress:
    """``"/name:port"`` → VipAddress; VipError saying what is wrong otherwise."""
    if not isinstance(text, str):
        raise VipError(f"a VIP must be a string like '/name:port', not {type(text).__name__}")
    m = _VIP_RE.fullmatch(text.strip())
    if m is None:
        raise VipError(f"VIP {text!r} is not '/name:port' (name: letters, digits, '.', '_', '-', '/')")
    name, port = m["name"].strip("/"), int(m["port"])
    if not name or "//" in name or len(name) > MAX_NAME_CHARS:
        raise VipError(f"VIP {text!r} has no usable name")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise VipError(f"VIP {text!r}: only named VIPs ('/name:port') are supported, not IP addresses")
    if not 1 <= port <= 65535:
        raise VipError(f"VIP {text!r}: port {port} is out of range (1-65535)")
    if not dns_label(name):
        raise VipError(f"VIP {text!r}: the name has no character usable in a DNS name")
    return VipAddress(name, port)


def parse_label(value: Any) -> tuple[VipBinding, ...]:
    """The ``DCOSD_VIPS`` label value → bindings; VipError for anything malformed."""
    if not isinstance(value, str):
        raise VipError(f"label {LABEL} must be a JSON string")
    if len(value) > MAX_LABEL_CHARS:
        raise VipError(f"label {LABEL} is longer than {MAX_LABEL_CHARS} characters")
    try:
        items = json.loads(value)
    except ValueError as exc:
        raise VipError(f"label {LABEL} is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise VipError(f'label {LABEL} must be a JSON list of {{"port_index": i, "vip": "/name:port"}}')
    if len(items) > MAX_VIPS_PER_TASK:
        raise VipError(f"label {LABEL} declares more than {MAX_VIPS_PER_TASK} VIPs")
    out: list[VipBinding] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"port_index", "vip"}:
            raise VipError(f'label {LABEL}[{n}] must be {{"port_index": i, "vip": "/name:port"}}')
        idx = item["port_index"]
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < 1024:
            raise VipError(f"label {LABEL}[{n}].port_index must be an integer from 0")
        try:
            vip = parse_vip(item["vip"])
        except VipError as exc:
            raise VipError(f"label {LABEL}[{n}]: {exc}") from None
        b = VipBinding(idx, vip)
        if b not in out:
            out.append(b)
    return tuple(out)


def label_value(bindings: Iterable[tuple[int, str] | VipBinding]) -> str:
    """Bindings (or ``(port_index, "/name:port")`` pairs) → the ``DCOSD_VIPS`` label value (validated)."""
    items = []
    for b in bindings:
        idx, vip = (b.port_index, b.vip.key) if isinstance(b, VipBinding) else b
        items.append({"port_index": idx, "vip": parse_vip(vip).key})
    value = json.dumps(items, separators=(",", ":"))
    parse_label(value)
    return value


def vips_from_port_definitions(port_definitions: Sequence[Mapping[str, Any]] | None) -> str | None:
    """Marathon ``portDefinitions`` (or ``portMappings``) → the ``DCOSD_VIPS`` label value, None without VIPs.

    Every ``labels`` entry named ``VIP_<n>`` of the i-th port definition binds its ``/name:port``
    to the task's i-th host port, as DC/OS does. VipError names the offending entry.
    """
    pairs: list[tuple[int, str]] = []
    for i, pd in enumerate(port_definitions or ()):
        if not isinstance(pd, Mapping):
            raise VipError(f"portDefinitions[{i}] must be an object")
        labels = pd.get("labels") or {}
        if not isinstance(labels, Mapping):
            raise VipError(f"portDefinitions[{i}].labels must be an object")
        for key in sorted(labels):
            if _MARATHON_KEY.fullmatch(str(key)):
                try:
                    pairs.append((i, parse_vip(labels[key]).key))
                except VipError as exc:
                    raise VipError(f"portDefinitions[{i}].labels.{key}: {exc}") from None
    return label_value(pairs) if pairs else None


# --------------------------------------------------------------------------- addresses
def _candidate(name: str, attempt: int, size: int) -> int:
    digest = hashlib.sha256(f"{name}#{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


def allocate_addresses(names: Iterable[str], network: str = DEFAULT_NETWORK) -> dict[str, str]:
    """A stable address in ``network`` for each name (a VIP's DNS label), the same for the same set of names.

    Each name has a sequence of candidates (SHA-256 of ``name#attempt``). Round by round,
    every name still without an address asks for its next candidate; a free candidate asked
    for by several names goes to the smallest name, the others try again next round. So a
    name's address changes only when a name that wanted the same address in an earlier or
    the same round appears or goes away — with 2^24 addresses, rare. Host parts ending in
    .0 or .255 are never used.
    """
    net = ipaddress.IPv4Network(network)
    size, base = net.num_addresses, int(net.network_address)
    pending = sorted(set(names))
    if len(pending) > size // 4:
        raise VipError(f"{len(pending)} VIP names do not fit in {network}")
    taken: dict[int, str] = {}
    attempt = 0
    while pending:
        wants: dict[int, str] = {}
        for name in pending:
            c = _candidate(name, attempt, size) if attempt < 64 else _first_free(taken, base, size)
            if c in taken or not _usable(base + c, base, size):
                continue
            if c not in wants or name < wants[c]:
                wants[c] = name
        for c, name in wants.items():
            taken[c] = name
        won = set(wants.values())
        pending = [n for n in pending if n not in won]
        attempt += 1
    return {name: str(ipaddress.IPv4Address(base + c)) for c, name in taken.items()}


def _usable(addr: int, base: int, size: int) -> bool:
    return addr != base and addr != base + size - 1 and addr & 0xFF not in (0, 255)


def _first_free(taken: Mapping[int, str], base: int, size: int) -> int:
    for c in range(size):
        if c not in taken and _usable(base + c, base, size):
            return c
    raise VipError("no free VIP address")


# --------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class VipTask:
    """What the table needs of one task (the master builds these from its state)."""

    task_id: str
    agent_id: str | None
    state: str
    label: str | None  # the DCOSD_VIPS label value
    ports: tuple[int, ...] = ()  # the host ports allocated to the task, in order
    healthy: bool | None = None
    kill_requested: bool = False


@dataclass(frozen=True)
class Vip:
    name: str  # without the leading slash
    port: int
    ip: str
    backends: tuple[tuple[str, int], ...]  # (agent ip, host port), sorted

    @property
    def key(self) -> str:
        return f"/{self.name}:{self.port}"

    @property
    def dns_label(self) -> str:
        return dns_label(self.name)

    def dns_name(self, domain: str = "mesos") -> str:
        return f"{self.dns_label}.{DNS_ZONE}.{domain.strip('.')}"

    def to_dict(self) -> dict[str, Any]:
        return {"vip": self.key, "name": self.name, "port": self.port, "ip": self.ip,
                "backends": [[h, p] for h, p in self.backends]}


@dataclass(frozen=True)
class VipTable:
    vips: tuple[Vip, ...] = ()  # sorted by (name, port)
    problems: tuple[str, ...] = field(default=(), compare=False)

    def to_wire(self) -> list[dict[str, Any]]:
        return [v.to_dict() for v in self.vips]

    def addresses(self) -> dict[str, str]:
        """VIP name → its address (allocated per DNS label of the name)."""
        return {v.name: v.ip for v in self.vips}

    def dns_records(self, domain: str = "mesos") -> tuple[tuple[str, str], ...]:
        """(fully qualified name, address) for each VIP name: the A records of the l4lb zone."""
        return tuple(sorted({(v.dns_name(domain), v.ip) for v in self.vips}))


def build_table(tasks: Iterable[VipTask], agent_ips: Mapping[str, str],
                network: str = DEFAULT_NETWORK) -> VipTable:
    """The VIP table of a cluster state. Deterministic; O(tasks × VIPs per task)."""
    # Keyed by (DNS label, port): names that share a DNS name share an address, so they are one VIP.
    declared: dict[tuple[str, int], set[tuple[str, int]]] = {}
    shown: dict[tuple[str, int], str] = {}
    problems: list[str] = []
    for t in tasks:
        if not t.label or t.state not in LIVE_STATES:
            continue
        try:
            bindings = parse_label(t.label)
        except VipError as exc:
            problems.append(f"task {t.task_id}: {exc}")
            continue
        serving = (t.state == RUNNING and t.healthy is not False and not t.kill_requested)
        ip = agent_ips.get(t.agent_id or "")
        for b in bindings:
            key = (b.vip.dns_label, b.vip.port)
            backends = declared.setdefault(key, set())
            shown[key] = min(shown.get(key, b.vip.name), b.vip.name)
            if b.port_index >= len(t.ports):
                problems.append(f"task {t.task_id}: {b.vip.key} wants host port #{b.port_index} but the task "
                                f"has {len(t.ports)} port(s)")
                continue
            if not serving:
                continue
            if ip is None:
                problems.append(f"task {t.task_id}: its agent {t.agent_id} has no known address")
                continue
            backends.add((ip, t.ports[b.port_index]))
    try:
        addresses = allocate_addresses({lab for lab, _ in declared}, network)
    except VipError as exc:
        return VipTable((), (*problems, str(exc)))
    vips = tuple(Vip(shown[k], k[1], addresses[k[0]], tuple(sorted(declared[k])))
                 for k in sorted(declared, key=lambda k: (shown[k], k[1])))
    return VipTable(vips, tuple(problems))


def table_from_wire(items: Any) -> VipTable:
    """A table as the master sent it, checked: ValueError for anything the agent must not act on."""
    if not isinstance(items, list):
        raise VipError("the VIP table must be a list")
    vips = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise VipError(f"vips[{n}] must be an object")
        vip = parse_vip(item.get("vip"))
        ip = ipaddress.ip_address(str(item.get("ip")))
        if ip.version != 4 or ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_link_local:
            raise VipError(f"vips[{n}].ip {ip} cannot be a virtual address")
        backends = []
        for b in item.get("backends") or []:
            if (not isinstance(b, list) or len(b) != 2 or not isinstance(b[1], int)
                    or not 1 <= b[1] <= 65535):
                raise VipError(f"vips[{n}].backends has a malformed entry {b!r}")
            backends.append((str(ipaddress.ip_address(str(b[0]))), b[1]))
        vips.append(Vip(vip.name, vip.port, str(ip), tuple(sorted(backends))))
    return VipTable(tuple(sorted(vips, key=lambda v: (v.name, v.port))))
