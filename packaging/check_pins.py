"""Every runtime dependency of pyproject.toml (and its `systemd` extra) is pinned with == in
packaging/requirements-build.txt, or the binary would be built without it. Run by packaging/build.sh
and by tests/unit/test_packaging.py, so a new dependency fails fast, not in the built binary.

    python3 packaging/check_pins.py      # exit 1 and the missing names
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_dependencies(pyproject: Path = REPO / "pyproject.toml") -> set[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", [])) + list(project.get("optional-dependencies", {}).get("systemd", []))
    return {norm(m.group(1)) for r in reqs if (m := NAME.match(r))}


def pinned(requirements: Path = REPO / "packaging" / "requirements-build.txt") -> dict[str, str]:
    out = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise SystemExit(f"{requirements}: {line!r} is not pinned with ==")
            out[norm(name)] = version.strip()
    return out


def missing() -> list[str]:
    return sorted(runtime_dependencies() - set(pinned()))


if __name__ == "__main__":
    gone = missing()
    if gone:
        print(f"packaging/requirements-build.txt lacks runtime dependencies of pyproject.toml: {', '.join(gone)}\n"
              "  pin them (and what they need) with ==: pip install them into .venv-build, then pip freeze",
              file=sys.stderr)
        sys.exit(1)
