"""Committed state of the package manager: the repositories, in priority order (migration 7).

Registered in the state machine's dispatch table (machine.py imports this module). Deterministic:
a repository is checked (fetched, parsed) by the leader *before* its command is proposed; here only
names, URLs and positions are decided. Installed packages need no table of their own: an installed
package is an app carrying the DCOS_PACKAGE_* labels (as in DC/OS's cosmos).
"""

from __future__ import annotations

from typing import Any

import apsw

from dcosd.errors import Conflict, NotFound, ValidationError
from dcosd.master.state.machine import Command, _one, handler


def repositories(db: Any) -> list[dict[str, Any]]:
    """[{name, url, priority}] in priority order (priority 0 first). ``db``: a connection or the store."""
    rows = db.execute("SELECT name, url FROM package_repositories ORDER BY position, name") \
        if isinstance(db, apsw.Connection) else db.query("SELECT name, url FROM package_repositories ORDER BY position, name")
    return [{"name": n, "url": u, "priority": i} for i, (n, u) in enumerate(rows)]


def _renumber(db: apsw.Connection, names: list[str]) -> None:
    for i, n in enumerate(names):
        db.execute("UPDATE package_repositories SET position = ? WHERE name = ?", (i, n))


@handler("package_repo_add")
def apply_package_repo_add(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """Add {name, url} at ``index`` (0 = highest priority); by default last but before the built-in
    catalogue, which stays the lowest priority unless it was removed."""
    name, url, index = c["name"], c["url"], c.get("index")
    if _one(db, "SELECT 1 FROM package_repositories WHERE name = ?", (name,)):
        raise Conflict(f"a package repository named {name!r} already exists")
    if _one(db, "SELECT 1 FROM package_repositories WHERE url = ?", (url,)):
        raise Conflict(f"a package repository with URL {url!r} already exists")
    names = [r["name"] for r in repositories(db)]
    if index is None:
        index = len(names) - 1 if names and names[-1] == "dcosd" and url != "dcosd:catalogue" else len(names)
    if not isinstance(index, int) or not 0 <= index <= len(names):
        raise ValidationError(f"repository index {index} is out of range 0..{len(names)}")
    db.execute("INSERT INTO package_repositories (name, url, position) VALUES (?,?,?)", (name, url, index))
    names.insert(index, name)
    _renumber(db, names)
    return {"name": name, "url": url, "priority": index}


@handler("package_repo_remove")
def apply_package_repo_remove(db: apsw.Connection, c: Command) -> dict[str, Any]:
    """Remove a repository by name (or URL). Installed packages stay: their apps carry what they need."""
    key = c["name"]
    row = _one(db, "SELECT name, url FROM package_repositories WHERE name = ? OR url = ?", (key, key))
    if row is None:
        raise NotFound(f"no package repository named {key!r}")
    db.execute("DELETE FROM package_repositories WHERE name = ?", (row[0],))
    _renumber(db, [r["name"] for r in repositories(db)])
    return {"name": row[0], "url": row[1]}
