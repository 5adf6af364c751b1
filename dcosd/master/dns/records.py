"""Mesos-DNS records from a snapshot of cluster state. Pure: stdlib only, no I/O, no clock.

``build_records(snapshot, config)`` returns an immutable ``RecordSet``: every name
(lower-case, fully qualified, trailing dot) → ``{"A": (ip, …), "AAAA": (…),
"SRV": (Srv, …), "SOA": (Soa,), "NS": (name, …)}``. The naming follows
mesos-dns ``records/generator.go`` (COMPAT.md §4):

=========================================  ======  =====================================
name                                       type    value
=========================================  ======  =====================================
``<task>.<fw>.<d>``                        A       task IP, else agent IP
``<task>-<hash>-<agent tail>.<fw>.<d>``    A       same (the canonical, per-instance name)
``<task>.<fw>.slave.<d>`` (+ canonical)    A       agent IP
``_<task>._tcp|_udp.<fw>.slave.<d>``       SRV     0 1 port ``<canonical>.<fw>.slave.<d>``
``_<task>._tcp|_udp.<fw>.<d>``             SRV     same (tasks without a discovery name)
``_<task>._<proto>.<fw>.<d>``              SRV     0 1 port ``<canonical>.<fw>.<d>`` (with a
                                                   discovery name; ``_<portname>.`` prefixed too)
``leader.<d>`` / ``master.<d>``            A       leading master / every master
``master<N>.<d>``                          A       the N-th master (order of ``masters``)
``_leader._tcp|_udp.<d>``                  SRV     0 1 5050 ``leader.<d>``
``slave.<d>``, ``_slave._tcp.<d>``         A, SRV  every agent
``<fw>.<d>``, ``_framework._tcp.<fw>.<d>`` A, SRV  the scheduler, when its IP is known
``ns1.<d>``                                A       the DNS servers (default: every master)
``<d>``                                    SOA,NS  the zone
``<vip>.marathon.l4lb.<d>``                A       a VIP's virtual address (dcosd/vips)
=========================================  ======  =====================================

``<task>`` is the task name made one label (dots become ``-``); with a discovery name
(Marathon ``/grp/app`` → ``app.grp``) both ``app.grp`` and ``app-grp`` are generated,
as mesos-dns does. ``<fw>`` keeps its dots. Only TASK_RUNNING tasks on known agents get
records, and of those with a health verdict only healthy ones. Names that cannot be put
on the wire (a label over 63 characters, a name over 253) are left out and counted in
``RecordSet.skipped`` — mesos-dns would emit them broken.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping, NamedTuple

from dcosd.master.dns.labels import MAX_LABEL, domain_frag, label, slave_id_tail, valid_name

RUNNING = "TASK_RUNNING"
DEFAULT_MASTER_PORT = 5050
DEFAULT_AGENT_PORT = 5051


# --------------------------------------------------------------------------- input
@dataclass(frozen=True)
class DnsMaster:
    id: str
    ip: str
    port: int = DEFAULT_MASTER_PORT


@dataclass(frozen=True)
class DnsAgent:
    agent_id: str
    hostname: str
    ip: str
    port: int = DEFAULT_AGENT_PORT


@dataclass(frozen=True)
class DnsFramework:
    framework_id: str
    name: str
    ip: str | None = None  # scheduler's IP literal when known (resolve hostnames before)
    port: int | None = None  # scheduler's port when known: adds _framework._tcp.<fw>


@dataclass(frozen=True)
class DnsPort:
    number: int
    protocol: str = "tcp"  # used for discovery-name SRVs; host-port SRVs get tcp and udp
    name: str | None = None  # a named discovery port adds _<name>._<task>._<proto>.<fw>


PortLike = DnsPort | int | tuple


def _port(p: PortLike) -> DnsPort:
    if isinstance(p, DnsPort):
        return p
    if isinstance(p, int):
        return DnsPort(p)
    return DnsPort(*p)


@dataclass(frozen=True)
class DnsTask:
    task_id: str
    name: str
    framework_name: str
    agent_id: str
    state: str  # a TaskState or its Mesos name; only "TASK_RUNNING" gets records
    ip: str | None = None  # the task's own (container) IP, else the agent's is used
    ports: tuple[DnsPort, ...] = ()  # DnsPort, an int or a (number, protocol[, name]) tuple
    discovery_name: str | None = None  # e.g. "app.grp" for Marathon's /grp/app
    healthy: bool | None = None  # None: no health checks; False: left out of DNS

    def __post_init__(self) -> None:
        object.__setattr__(self, "ports", tuple(_port(p) for p in self.ports))
        object.__setattr__(self, "state", str(getattr(self.state, "value", self.state)))


@dataclass(frozen=True)
class DnsSnapshot:
    """What the generator needs of the cluster: built by the master from its state."""

    masters: tuple[DnsMaster, ...] = ()
    leader: DnsMaster | None = None
    agents: tuple[DnsAgent, ...] = ()
    frameworks: tuple[DnsFramework, ...] = ()
    tasks: tuple[DnsTask, ...] = ()
    serial: int = 1  # SOA serial: e.g. the replicated log index the snapshot was taken at
    vips: tuple[tuple[str, str], ...] = ()  # (VIP DNS label, virtual IP): <label>.marathon.l4lb.<d> A


@dataclass(frozen=True)
class DnsConfig:
    domain: str = "mesos"
    ttl: int = 60
    srv_weight: int = 1
    soa_mname: str = ""  # default ns1.<domain>.
    soa_rname: str = ""  # default root.ns1.<domain>.
    soa_refresh: int = 60
    soa_retry: int = 600
    soa_expire: int = 86400
    ns_ips: tuple[str, ...] = ()  # addresses of ns1.<domain>; default: every master


# --------------------------------------------------------------------------- output
class Srv(NamedTuple):
    priority: int
    weight: int
    port: int
    target: str  # fully qualified, trailing dot


class Soa(NamedTuple):
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


class EnumRecord(NamedTuple):
    name: str
    host: str
    rtype: str


@dataclass(frozen=True)
class EnumTask:
    name: str
    id: str
    records: tuple[EnumRecord, ...]


@dataclass(frozen=True)
class EnumFramework:
    name: str
    tasks: tuple[EnumTask, ...]


Records = Mapping[str, tuple]


@dataclass(frozen=True)
class RecordSet:
    """The zone at one moment. Never mutated: a new one is built and swapped in."""

    domain: str  # "mesos." — lower-case, trailing dot
    ttl: int
    serial: int
    records: Mapping[str, Records]  # every existing name, empty non-terminals map to {}
    enumeration: tuple[EnumFramework, ...] = ()
    skipped: int = 0  # generated names left out because they cannot be valid on the wire
    config: DnsConfig = field(default_factory=DnsConfig)

    @staticmethod
    def key(name: str) -> str:
        name = name.lower()
        return name if name.endswith(".") else name + "."

    def in_zone(self, name: str) -> bool:
        key = self.key(name)
        return key == self.domain or key.endswith("." + self.domain)

    def exists(self, name: str) -> bool:
        return self.key(name) in self.records

    def get(self, name: str, rtype: str) -> tuple:
        """Values of one type at a name, case-insensitively: () when there are none."""
        return self.records.get(self.key(name), {}).get(rtype.upper(), ())

    @property
    def soa(self) -> Soa:
        return self.records[self.domain]["SOA"][0]

    def enumerate_json(self) -> dict[str, Any]:
        """The body of mesos-dns ``GET /v1/enumerate``."""
        return {
            "frameworks": [
                {
                    "tasks": [
                        {
                            "name": t.name,
                            "id": t.id,
                            "records": [{"name": r.name, "host": r.host, "rtype": r.rtype} for r in t.records],
                        }
                        for t in f.tasks
                    ],
                    "name": f.name,
                }
                for f in self.enumeration
            ]
        }

    def rrsets_json(self) -> dict[str, dict[str, list[str]]]:
        """As, AAAAs and SRVs as mesos-dns ``GET /v1/axfr`` lists them (SRV as ``target:port``)."""
        out: dict[str, dict[str, list[str]]] = {"As": {}, "AAAAs": {}, "SRVs": {}}
        for name, recs in self.records.items():
            if recs.get("A"):
                out["As"][name] = list(recs["A"])
            if recs.get("AAAA"):
                out["AAAAs"][name] = list(recs["AAAA"])
            if recs.get("SRV"):
                out["SRVs"][name] = [f"{s.target}:{s.port}" for s in recs["SRV"]]
        return out


# --------------------------------------------------------------------------- generation
def hash_string(s: str) -> str:
    """Five z-base-32 characters of SHA-1: the per-task part of canonical names (mesos-dns)."""
    top = int.from_bytes(hashlib.sha1(s.encode("utf-8")).digest()[:4], "big")  # the first 25 bits suffice
    return "".join(_ZBASE32[(top >> shift) & 31] for shift in (27, 22, 17, 12, 7))


_ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"


@functools.lru_cache(maxsize=65536)
def _parse_ip(ip: str) -> tuple[str, str] | None:
    """(record type, canonical text) of an IP literal; None for anything else."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return ("A" if addr.version == 4 else "AAAA"), str(addr)


def _ip_type(ip: str | None) -> str | None:
    parsed = _parse_ip(ip) if ip else None
    return parsed[0] if parsed else None


def _ip(ip: str) -> str:
    parsed = _parse_ip(ip)
    assert parsed is not None
    return parsed[1]


def _fqdn(domain: str) -> str:
    d = ".".join(p for p in domain.lower().split(".") if p)
    if not d or not valid_name(d):
        raise ValueError(f"invalid DNS domain {domain!r}")
    return d + "."


class _Builder:
    def __init__(self, domain: str, weight: int) -> None:
        self.domain = domain
        self.weight = weight
        self.rrs: dict[str, dict[str, dict[Any, None]]] = {}
        self.skipped = 0

    def add(self, name: str, rtype: str, value: Any) -> bool:
        """Insert one record; False when it is a duplicate or the name is invalid."""
        if not valid_name(name):
            self.skipped += 1
            return False
        values = self.rrs.setdefault(name, {}).setdefault(rtype, {})
        if value in values:
            return False
        values[value] = None
        return True

    def add_ip(self, name: str, ip: str) -> tuple[bool, str]:
        parsed = _parse_ip(ip) if ip else None
        if parsed is None:
            return False, ""
        return self.add(name, parsed[0], parsed[1]), parsed[0]

    def add_srv(self, name: str, target: str, port: int) -> bool:
        return self.add(name, "SRV", Srv(0, self.weight, int(port), target))

    def freeze(self) -> dict[str, Records]:
        out: dict[str, Records] = {}
        for name, types in self.rrs.items():
            out[name] = {t: tuple(v) for t, v in types.items() if v}
        # Empty non-terminals exist (NOERROR, no data) rather than NXDOMAIN: a resolver
        # that trusts NXDOMAIN for everything below (RFC 8020) must not lose the leaves.
        suffix = "." + self.domain
        for name in list(out):
            n = name
            while n.endswith(suffix):
                n = n.split(".", 1)[1]
                if n in out:
                    break
                out[n] = {}
        return out


def build_records(snapshot: DnsSnapshot, config: DnsConfig = DnsConfig()) -> RecordSet:
    """All records of the zone for ``snapshot``. Deterministic; costs ~O(tasks × ports)."""
    domain = _fqdn(config.domain)
    b = _Builder(domain, config.srv_weight)
    tail = "." + domain

    # Frameworks: <fw>.<d> A and _framework._tcp.<fw>.<d> SRV when the scheduler is known.
    for f in snapshot.frameworks:
        fname = domain_frag(f.name)
        if not fname or _ip_type(f.ip) is None:
            continue
        a = fname + tail
        b.add_ip(a, f.ip or "")
        if f.port:
            b.add_srv("_framework._tcp." + a, a, f.port)

    # Agents: slave.<d> A, _slave._tcp.<d> SRV; remember their IPs for the tasks.
    agent_ips: dict[str, str] = {}
    slave = "slave" + tail
    for ag in snapshot.agents:
        ok, _ = b.add_ip(slave, ag.ip)
        if _ip_type(ag.ip) is None:
            continue
        b.add_srv("_slave._tcp" + tail, slave, ag.port)
        agent_ips[ag.agent_id] = _ip(ag.ip)

    _master_records(b, snapshot, tail)

    # The name servers: ns1.<d> (SOA mname), NS and SOA at the apex.
    mname = (config.soa_mname or "ns1" + tail).lower()
    mname = mname if mname.endswith(".") else mname + "."
    rname = (config.soa_rname or "root.ns1" + tail).lower()
    rname = rname if rname.endswith(".") else rname + "."
    ns_ips = config.ns_ips or tuple(m.ip for m in snapshot.masters) or (
        (snapshot.leader.ip,) if snapshot.leader else ()
    )
    if mname.endswith(tail):
        for ip in ns_ips:
            b.add_ip(mname, ip)
    soa = Soa(mname, rname, snapshot.serial & 0xFFFFFFFF, config.soa_refresh, config.soa_retry,
              config.soa_expire, config.ttl)
    b.add(domain, "SOA", soa)
    b.add(domain, "NS", mname)

    enumeration = _task_records(b, snapshot, tail, agent_ips)
    for vip_label, vip_ip in snapshot.vips:
        b.add_ip(f"{vip_label}.marathon.l4lb{tail}", vip_ip)

    return RecordSet(
        domain=domain,
        ttl=config.ttl,
        serial=soa.serial,
        records=MappingProxyType(b.freeze()),
        enumeration=enumeration,
        skipped=b.skipped,
        config=config,
    )


def _master_records(b: _Builder, snapshot: DnsSnapshot, tail: str) -> None:
    """leader/master/master<N> as mesos-dns masterRecord: indices follow ``masters``' order."""
    all_masters = "master" + tail
    leader = snapshot.leader
    leader_addr = None
    if leader is not None and _ip_type(leader.ip):
        leader_addr = (_ip(leader.ip), leader.port)
        b.add_ip("leader" + tail, leader.ip)
        b.add_ip(all_masters, leader.ip)
        b.add_srv("_leader._tcp" + tail, "leader" + tail, leader.port)
        b.add_srv("_leader._udp" + tail, "leader" + tail, leader.port)
    idx = 0
    leader_indexed = False
    for m in snapshot.masters:
        if _ip_type(m.ip) is None:
            continue
        addr = (_ip(m.ip), m.port)
        if addr != leader_addr:
            added, _ = b.add_ip(all_masters, m.ip)
            if not added:
                continue  # the same master listed twice
        elif leader_indexed:
            continue
        b.add_ip(f"master{idx}" + tail, m.ip)
        idx += 1
        leader_indexed = leader_indexed or addr == leader_addr
    if leader_addr is not None and not leader_indexed:
        b.add_ip(f"master{idx}" + tail, leader_addr[0])


def _task_records(
    b: _Builder, snapshot: DnsSnapshot, tail: str, agent_ips: Mapping[str, str]
) -> tuple[EnumFramework, ...]:
    by_framework: dict[str, list[EnumTask]] = {}
    for f in snapshot.frameworks:
        by_framework.setdefault(f.name, [])
    for task in snapshot.tasks:
        tasks = by_framework.setdefault(task.framework_name, [])
        agent_ip = agent_ips.get(task.agent_id)
        if agent_ip is None or task.state != RUNNING or task.healthy is False:
            continue
        fname = domain_frag(task.framework_name)
        if not fname:
            continue
        recorded: list[EnumRecord] = []
        ctx = _TaskContext(task, fname, tail, agent_ip, b, recorded)
        if task.discovery_name:
            # Both the dotted discovery name (mesos-dns' "legacy" form) and its one-label form.
            for name in dict.fromkeys((domain_frag(task.discovery_name), label(task.discovery_name))):
                if name:
                    ctx.generate(name, discovery=True)
        else:
            name = label(task.name)
            if name:
                ctx.generate(name, discovery=False)
        tasks.append(EnumTask(task.name, task.task_id, tuple(recorded)))
    return tuple(EnumFramework(name, tuple(tasks)) for name, tasks in by_framework.items())


class _TaskContext:
    def __init__(
        self, task: DnsTask, fname: str, tail: str, agent_ip: str, b: _Builder, recorded: list[EnumRecord]
    ) -> None:
        self.task = task
        self.fname = fname
        self.tail = tail
        self.agent_ip = agent_ip
        self.b = b
        self.recorded = recorded
        self.suffix = f"-{hash_string(task.task_id)}-{slave_id_tail(task.agent_id)}"
        self.task_ip = agent_ip
        if _ip_type(task.ip):
            self.task_ip = _ip(task.ip or "")

    def _ip(self, name: str, ip: str) -> None:
        added, rtype = self.b.add_ip(name, ip)
        if added:
            self.recorded.append(EnumRecord(name, ip, rtype))

    def _srv(self, name: str, target: str, port: int) -> None:
        if self.b.add_srv(name, target, port):
            self.recorded.append(EnumRecord(name, f"{target}:{port}", "SRV"))

    def generate(self, name: str, discovery: bool) -> None:
        # The canonical per-instance name; its last label is cut so that it stays ≤ 63.
        head, _, last = name.rpartition(".")
        last = last[: MAX_LABEL - len(self.suffix)].rstrip("-")
        canonical = (head + "." if head else "") + last + self.suffix + "." + self.fname
        arec = name + "." + self.fname
        fw_tail = "." + self.fname + self.tail
        for n in (arec, canonical):
            self._ip(n + self.tail, self.task_ip)
        for n in (arec, canonical):
            self._ip(n + ".slave" + self.tail, self.agent_ip)

        slave_target = canonical + ".slave" + self.tail
        subdomains = (".slave",) if discovery else (".slave", "")
        for port in self.task.ports:
            for proto in ("_tcp", "_udp"):
                for sub in subdomains:
                    self._srv(f"_{name}.{proto}.{self.fname}{sub}{self.tail}", slave_target, port.number)
        if not discovery:
            return
        target = canonical + self.tail
        for port in self.task.ports:
            proto = label(port.protocol or "")
            for p in (proto,) if proto else ("tcp", "udp"):
                service = f"_{name}._{p}{fw_tail}"
                self._srv(service, target, port.number)
                pname = label(port.name or "")
                if pname:
                    self._srv(f"_{pname}.{service}", target, port.number)


def snapshot_from(
    *,
    masters: Iterable[DnsMaster] = (),
    leader: DnsMaster | None = None,
    agents: Iterable[DnsAgent] = (),
    frameworks: Iterable[DnsFramework] = (),
    tasks: Iterable[DnsTask] = (),
    serial: int = 1,
    vips: Iterable[tuple[str, str]] = (),
) -> DnsSnapshot:
    """A snapshot from any iterables (the dataclass itself wants tuples)."""
    return DnsSnapshot(tuple(masters), leader, tuple(agents), tuple(frameworks), tuple(tasks), serial,
                       tuple(vips))
