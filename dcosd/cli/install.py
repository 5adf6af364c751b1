"""`dcosd install master|agent` and `dcosd uninstall` (the work is in dcosd/installer.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

BINARY_HELP = "Binary to install (default: this one-file binary; required when running from sources)."
SET_HELP = "Any other setting of the daemon as KEY=VALUE, e.g. --set log-level=debug (repeatable)."


def _settings(command: click.Command, given: dict[str, Any], extra: tuple[str, ...]) -> dict[str, Any]:
    """Settings for the role's config table, checked against the daemon command's own options."""
    # A setting is written under its flag's name (`master`, `resources`: what the config file and the
    # docs use) and found by that or by click's parameter name (`master_url`, `resources_text`).
    params: dict[str, click.Option] = {}
    for p in command.params:
        if isinstance(p, click.Option) and p.name and p.name != "help":
            for name in [p.name] + [o.lstrip("-").replace("-", "_") for o in p.opts if o.startswith("--")]:
                params[name] = p
    out: dict[str, Any] = {}
    pairs = [(k, v) for k, v in given.items() if v is not None]
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        pairs.append((key.strip().replace("-", "_"), value))
    for key, value in pairs:
        p = params.get(key)
        if p is None:
            known = ", ".join(sorted({_flag_key(p) for p in params.values()})).replace("_", "-")
            raise click.BadParameter(f"`dcosd {command.name}` has no setting {key!r} (known: {known})",
                                     param_hint="--set")
        if p.is_flag and isinstance(value, str):
            if value.lower() not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                raise click.BadParameter(f"{key} is a yes/no setting, not {value!r}", param_hint="--set")
            value = value.lower() in ("true", "yes", "1", "on")
        elif p.multiple and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        out[_flag_key(p)] = value
    return out


def _flag_key(p: click.Option) -> str:
    longs = [o for o in p.opts if o.startswith("--")]
    return longs[0][2:].replace("-", "_") if longs else str(p.name)


@click.group()
def install() -> None:
    """Install this binary as a systemd service: `install master` or `install agent --master URL`.

    Copies the binary to /usr/local/bin, writes /etc/dcosd/dcosd.toml and the units to
    /etc/systemd/system, reloads systemd once, enables and starts the service. Run as root on a
    machine whose PID 1 is systemd; running it again changes only what differs.
    """


@install.command("master")
@click.option("--listen", metavar="HOST:PORT", help="Where the API listens (default 127.0.0.1:5050).")
@click.option("--advertise", metavar="URL", help="URL other machines use to reach this master.")
@click.option("--peers", metavar="ID=URL,...", help="Every master of a 3- or 5-master cluster, the same list on "
              "each (this one's ID in --set id=ID).")
@click.option("--set", "extra", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--binary", type=click.Path(path_type=Path, dir_okay=False), help=BINARY_HELP)
def install_master(listen: str | None, advertise: str | None, peers: str | None, extra: tuple[str, ...],
                   binary: Path | None) -> None:
    """Install and start dcosd-master.service."""
    from dcosd.cli.daemons import master
    from dcosd.installer import install as do_install

    if peers is not None and "peers" not in {p.name for p in master.params}:
        raise click.UsageError("this build's `dcosd master` has no --peers yet: it runs one master")
    settings = _settings(master, {"listen": listen, "advertise": advertise, "peers": peers}, extra)
    if settings.get("peers"):  # refused now, not by a service that then fails to start
        from dcosd.master.ha import parse_peers

        ids = parse_peers(settings["peers"])
        if settings.get("id") not in ids:
            raise click.UsageError(f"--set id=ID is required with --peers: which of {', '.join(ids)} this master is")
    do_install("master", settings, binary)


@install.command("agent")
@click.option("--master", "master_url", metavar="URL", required=True,
              help="URL of a master (several: comma-separated, as `dcosd agent --master` takes them).")
@click.option("--secret-file", type=click.Path(path_type=Path, dir_okay=False),
              help="File holding the cluster secret (default: the local master's, if this machine runs one).")
@click.option("--listen", metavar="HOST:PORT", help="Where the agent's API listens (default 0.0.0.0:5051).")
@click.option("--backend", type=click.Choice(["systemd", "cgroups", "process"]),
              help="Executor backend (default: systemd, since this machine runs it).")
@click.option("--set", "extra", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--binary", type=click.Path(path_type=Path, dir_okay=False), help=BINARY_HELP)
def install_agent(master_url: str, secret_file: Path | None, listen: str | None, backend: str | None,
                  extra: tuple[str, ...], binary: Path | None) -> None:
    """Install and start dcosd-agent.service (tasks run in dcosd-tasks.slice)."""
    from dcosd.cli.daemons import agent
    from dcosd.installer import check_system, local_master_secret
    from dcosd.installer import install as do_install

    check_system()
    local = local_master_secret()
    if secret_file is None and local.is_file():
        secret_file = local
        click.echo(f"using the local master's cluster secret ({local})")
    if secret_file is None:
        raise click.UsageError("--secret-file is required: copy the master's cluster.secret (in its data "
                               "directory, /var/lib/dcosd/master by default) to this machine, mode 0600, and name it here")
    secret_file = secret_file.resolve()
    if not secret_file.is_file():
        raise click.UsageError(f"--secret-file {secret_file} does not exist")
    settings = _settings(agent, {"master": master_url, "secret_file": str(secret_file), "listen": listen,
                                 "backend": backend}, extra)
    from dcosd.config import master_urls

    master_urls(settings["master"])  # refused now, not by a service that then fails to start
    do_install("agent", settings, binary)


@click.command()
@click.option("--purge", is_flag=True, help="Also remove /etc/dcosd and the data in /var/lib/dcosd.")
def uninstall(purge: bool) -> None:
    """Stop and remove what `dcosd install` set up (services, their tasks, units, binary).

    Data in /var/lib/dcosd and the config /etc/dcosd/dcosd.toml are kept unless --purge.
    """
    from dcosd.installer import uninstall as do_uninstall

    do_uninstall(purge)


COMMANDS = [install, uninstall]
