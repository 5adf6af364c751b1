"""Writes the catalogue packages whose service is a script of this directory: the script goes inline
into marathon.json.mustache's cmd (a heredoc), so the package needs nothing but python3 on the agent
and the catalogue stays plain Universe files. Run after editing a script:

    python dcosd/master/packages/catalogue_src/build.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CATALOGUE = HERE.parent / "catalogue" / "packages"
SCRIPTS = {"kvstore": "kvstore.py", "redis-counter": "counter.py", "offer-runner": "scheduler.py"}


def inline(script: str) -> str:
    text = (HERE / script).read_text()
    assert "{{" not in text and "PYEOF" not in text, script
    return "exec python3 - \"$PORT0\" <<'PYEOF'\n" + text + "PYEOF\n"


def main() -> None:
    for name, script in SCRIPTS.items():
        d = CATALOGUE / name[0].upper() / name / "0"
        tmpl = (d / "marathon.json.mustache").read_text()
        start = tmpl.index('"cmd": ') + len('"cmd": ')
        end = tmpl.index(",\n", start)
        tmpl = tmpl[:start] + json.dumps(inline(script)) + tmpl[end:]
        (d / "marathon.json.mustache").write_text(tmpl)


if __name__ == "__main__":
    main()
