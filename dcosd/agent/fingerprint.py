"""What this machine offers: resources and attributes, from psutil and the operator's flags."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

import psutil

from dcosd.errors import ConfigError
from dcosd.model.resources import ResourceError, Resources

DEFAULT_PORTS = (31000, 32000)

_RANGE = re.compile(r"^\[?\s*(\d+)\s*-\s*(\d+)\s*\]?$")


def parse_resources(text: str) -> dict[str, Any]:
    """Mesos' flag syntax: ``cpus:4;mem:2048;disk:10000;ports:[31000-32000,33000-33100]``."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition(":")
        if not sep:
            raise ConfigError(f"resource {part!r} is not name:value")
        name = name.strip()
        if name == "ports":
            ranges = []
            for r in value.strip().strip("[]").split(","):
                m = _RANGE.match(r.strip())
                if not m:
                    raise ConfigError(f"port range {r!r} is not begin-end")
                ranges.append([int(m.group(1)), int(m.group(2))])
            out["ports"] = ranges
        else:
            try:
                out[name] = float(value)
            except ValueError:
                raise ConfigError(f"resource {name} must be a number, not {value!r}") from None
    try:
        Resources.from_dict(out)
    except ResourceError as exc:
        raise ConfigError(f"--resources: {exc}") from exc
    return out


def parse_attributes(text: str) -> dict[str, str]:
    """``rack:r1;zone:a`` → {"rack": "r1", "zone": "a"}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        k, sep, v = part.partition(":")
        if not sep or not k.strip():
            raise ConfigError(f"attribute {part!r} is not name:value")
        out[k.strip()] = v.strip()
    return out


def detect(work_dir: Path, overrides: dict[str, Any] | None = None) -> Resources:
    total_mb = psutil.virtual_memory().total // (1 << 20)
    # Leave the machine some memory for itself, as Mesos does: 1 GB, or half on small machines.
    mem = max(total_mb - 1024, total_mb // 2)
    try:
        disk_mb = psutil.disk_usage(str(work_dir)).free // (1 << 20)
    except OSError:
        disk_mb = 0
    disk = max(disk_mb - 5 * 1024, disk_mb // 2)
    data: dict[str, Any] = {"cpus": float(psutil.cpu_count() or 1), "mem": float(mem), "disk": float(disk),
                            "ports": [list(DEFAULT_PORTS)]}
    data.update(overrides or {})
    return Resources.from_dict(data)


def hostname() -> str:
    return socket.gethostname()


def ip_towards(host: str) -> str:
    """The local address used to reach ``host`` (a UDP connect sends no packet)."""
    if host in ("localhost", "") or host.startswith("127."):
        return "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def cgroup_layout() -> str:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "v2"
    if os.path.isdir("/sys/fs/cgroup/unified"):
        return "hybrid"
    return "v1" if os.path.isdir("/sys/fs/cgroup/memory") else "none"
