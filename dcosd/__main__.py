"""Entry point: ``dcosd <command>`` and ``python -m dcosd``.

The task supervisor (``dcosd executor``) is dispatched before anything else is
imported: it starts once per task, so its start-up cost is launch latency.
``dcosd --version`` is answered before click is imported, for the same reason.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["executor"]:
        from dcosd.executor.supervisor import main as supervisor_main

        sys.exit(supervisor_main(args[1:]))
    if args == ["--version"]:  # cheap: no click, no command modules
        from dcosd.version import version_text

        print(version_text())
        sys.exit(0)
    from dcosd.cli import run_cli

    run_cli(args)


if __name__ == "__main__":
    main()
