"""Settings: defaults < config file < environment < flags.

Daemon settings are click options (each with its help and a named default);
the config file (``/etc/dcosd/dcosd.toml``, or ``$DCOSD_CONFIG``) feeds them
through click's ``default_map`` and every option also reads ``DCOSD_<NAME>``
from the environment, so the precedence holds for every setting at once.

The CLI's own settings — which master, which token — come from flags,
``DCOSD_MASTER``/``DCOSD_TOKEN``, then ``~/.config/dcosd/cli.toml``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dcosd.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/dcosd/dcosd.toml")
DEFAULT_MASTER_PORT = 5050
DEFAULT_AGENT_PORT = 5051
DEFAULT_MASTER_URL = f"http://127.0.0.1:{DEFAULT_MASTER_PORT}"


def default_data_dir() -> Path:
    """/var/lib/dcosd as root, else the user's data directory."""
    if os.geteuid() == 0:
        return Path("/var/lib/dcosd")
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "dcosd"


def cli_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "dcosd" / "cli.toml"


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc


def daemon_default_map() -> dict[str, Any]:
    """Sections [master], [agent], [up] of the config file, with keys as option names (dashes or underscores)."""
    path = Path(os.environ.get("DCOSD_CONFIG", SYSTEM_CONFIG))
    data = load_toml(path)
    out: dict[str, Any] = {}
    for section in ("master", "agent", "up"):
        values = data.get(section, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        out[section] = {k.replace("-", "_"): v for k, v in values.items()}
    return out


def master_url(text: str, label: str) -> str:
    """A master's URL as operators write it (``h1:5050`` means ``http://h1:5050``), without a trailing
    slash. A ConfigError starting with ``label`` says what is wrong with it."""
    url = text.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 — raises ValueError when it is not a number in 0-65535
    except ValueError as exc:
        raise ConfigError(f"{label}: {url}: {exc}") from None
    if u.scheme not in ("http", "https"):
        raise ConfigError(f"{label}: {url}: the URL must be http:// or https://")
    if not u.hostname:
        raise ConfigError(f"{label}: {url}: the URL names no host")
    if u.query or u.fragment or u.username or u.password:
        raise ConfigError(f"{label}: {url}: a master's URL is scheme://host[:port][/path], nothing more")
    return url


def master_urls(text: str, label: str = "--master") -> list[str]:
    """A comma-separated list of masters (an agent's --master), each checked by master_url()."""
    return [master_url(u, label) for u in (x.strip() for x in text.split(",")) if u]


def url_address(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL that master_url() accepted."""
    u = urlsplit(url)
    return u.scheme, u.hostname or "", u.port if u.port is not None else (443 if u.scheme == "https" else 80)


def cli_masters(flag: str | None) -> list[str]:
    """The masters the CLI may ask, in order: one URL, or several separated by commas (replicated
    masters: when one cannot be reached the next is tried, as etcdctl does with --endpoints)."""
    text = flag or os.environ.get("DCOSD_MASTER") or load_toml(cli_config_path()).get("master") or DEFAULT_MASTER_URL
    urls = master_urls(str(text), "--master")
    if not urls:
        raise ConfigError("--master: no master URL given")
    return urls


def cli_token(flag: str | None) -> str | None:
    token = flag or os.environ.get("DCOSD_TOKEN") or load_toml(cli_config_path()).get("token")
    if token:
        return str(token).strip()
    # On a master machine, root may use the master's own operator token (in its configured data dir).
    try:
        configured = daemon_default_map()["master"].get("data_dir")
    except ConfigError:
        configured = None
    local = (Path(configured) if configured else default_data_dir() / "master") / "operator.token"
    try:
        return local.read_text().strip() or None
    except OSError:
        return None
