"""The command tree. One module per noun; daemons in daemons.py.

Every error a user can cause ends as one line on stderr and a documented exit
code, never a traceback:

    0 success      2 bad input or usage   4 conflict        6 master/agent unreachable
    1 error        3 not found            5 unauthorized    (run --wait: the task's exit code)
"""

from __future__ import annotations

import sys

import click

from dcosd.errors import DcosdError

EXIT_CODES_HELP = """Exit codes: 0 success, 1 error, 2 bad input, 3 not found, 4 conflict,
5 unauthorized, 6 master unreachable; `run --wait` exits with the task's code."""


class Context:
    def __init__(self, master: str | None, token: str | None) -> None:
        self._master = master
        self._token = token
        self._client = None

    @property
    def client(self):  # noqa: ANN201 — imported lazily to keep start-up cheap
        if self._client is None:
            from dcosd.cli.client import Client
            from dcosd.config import cli_masters, cli_token

            self._client = Client(cli_masters(self._master), cli_token(self._token))
        return self._client


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODES_HELP)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, help="Show the version, commit and bundled libraries.",
              callback=lambda ctx, _p, v: _print_version(ctx) if v and not ctx.resilient_parsing else None)
@click.option("--master", "master_url", metavar="URL[,URL...]",
              help="Master to talk to (env DCOSD_MASTER; default http://127.0.0.1:5050); with several, the next "
                   "is tried when one cannot be reached.")
@click.option("--token", metavar="TOKEN", help="Operator token when the cluster has auth on (env DCOSD_TOKEN).")
@click.pass_context
def cli(ctx: click.Context, master_url: str | None, token: str | None) -> None:
    """dcosd — a data-center operating system in one binary.

    Run `dcosd up` for a one-machine cluster, then `dcosd run -- CMD` and `dcosd task list`.
    """
    ctx.obj = Context(master_url, token)


def _print_version(ctx: click.Context) -> None:
    from dcosd.version import version_text

    click.echo(version_text())
    ctx.exit()


def _register() -> None:
    from dcosd.cli import apps, daemons, dns, frameworks, install, jobs, machines, nodes, packages, tasks, vips

    for module in (daemons, tasks, nodes, dns, install, jobs, machines, vips, apps, frameworks, packages):
        for command in module.COMMANDS:
            cli.add_command(command)


def _keys_by_flag(default_map: dict) -> dict:
    """Config keys are spelled as the flags are (`master`, `resources`); click looks defaults up by
    parameter name (`master_url`, `resources_text`)."""
    for section, values in default_map.items():
        command = cli.commands.get(section)
        for p in command.params if command else ():
            for opt in getattr(p, "opts", ()):
                key = opt.lstrip("-").replace("-", "_")
                if key != p.name and key in values:
                    values.setdefault(p.name, values.pop(key))
    return default_map


def run_cli(args: list[str]) -> None:
    _register()
    try:
        from dcosd.config import daemon_default_map

        default_map = _keys_by_flag(daemon_default_map())
        rv = cli.main(args=args, prog_name="dcosd", standalone_mode=False, default_map=default_map)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except DcosdError as exc:
        sys.stderr.write(f"dcosd: error: {exc.message}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)
