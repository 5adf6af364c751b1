"""The cluster secret (agents ↔ master) and the operator token, created on first start.

Both live in the master's data directory, readable by root only. Agents present
the cluster secret; operators (CLI, UI, scripts) present the operator token
when auth is on.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from dcosd.errors import ConfigError

CLUSTER_SECRET_FILE = "cluster.secret"
OPERATOR_TOKEN_FILE = "operator.token"


def load_or_create(path: Path) -> str:
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return value


def read_secret(value: str | None, file: str | None) -> str | None:
    """A secret given directly or in a file (the file wins over nothing, the value over the file)."""
    if value:
        return value.strip()
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {file}: {exc}") from exc
    return None
