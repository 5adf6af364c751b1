"""`dcosd master`, `dcosd agent` and `dcosd up` — the long-running processes."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import click

from dcosd import sdnotify
from dcosd.config import DEFAULT_AGENT_PORT, DEFAULT_MASTER_PORT, default_data_dir
from dcosd.errors import ConfigError

log = logging.getLogger("dcosd")


def _setup_logging(level: str) -> None:
    # Under systemd stderr goes to journald (JOURNAL_STREAM is set), which stamps the time itself.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format=stamp + "%(levelname)s %(name)s: %(message)s")


def _split_listen(listen: str, default_port: int) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep:
        return listen, default_port
    try:
        return host or "0.0.0.0", int(port)
    except ValueError:
        raise ConfigError(f"--listen {listen!r} is not HOST:PORT") from None


def _serve(main: Callable[[asyncio.Event], Awaitable[Any]], *, fast_loop: bool = False) -> None:
    """Run a daemon until SIGTERM/SIGINT, then let it stop cleanly.

    ``fast_loop``: on uvloop (libuv) unless DCOSD_EVENT_LOOP=asyncio. For the master, whose every
    replicated write is an HTTP request plus Raft messages: aiohttp serves a request for ~40% less
    CPU on it (measured 253 -> 158 us). Agents stay on asyncio's loop, whose child watching and pidfd
    handling their executors were built and tested on.
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    if fast_loop and os.environ.get("DCOSD_EVENT_LOOP", "uvloop") != "asyncio":
        import uvloop

        uvloop.run(runner())
        return
    asyncio.run(runner())


def _quiet_gc() -> None:
    """Keep the cyclic garbage collector from pausing a busy master for tens of milliseconds.

    Everything allocated by start-up (modules, routes, the loaded state) is frozen out of collection,
    and young collections run every 50,000 allocations instead of 700: a master serving ~1,000 writes
    per second otherwise ran a full collection every few seconds, which showed as bursts of slow
    writes (p99 at 64 clients 101 -> 85 ms, max 136 -> 97 ms, measured with 3 masters on loopback).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _log_option(f: Callable) -> Callable:
    return click.option("--log-level", default="info", show_default=True, envvar="DCOSD_LOG_LEVEL",
                        type=click.Choice(["debug", "info", "warning", "error"]), help="Log verbosity.")(f)


def _dns_options(f: Callable) -> Callable:
    for opt in reversed([
        click.option("--dns-listen", envvar="DCOSD_DNS_LISTEN", default="",
                     help="HOST:PORT for Mesos-DNS over UDP and TCP (default: the API's host, port 53; 'off': none)."),
        click.option("--dns-domain", envvar="DCOSD_DNS_DOMAIN", default="mesos", show_default=True,
                     help="The DNS zone the masters answer for."),
        click.option("--dns-ttl", envvar="DCOSD_DNS_TTL", type=click.IntRange(0, 86400), default=60,
                     show_default=True, help="TTL of DNS answers, seconds."),
        click.option("--dns-upstream", "dns_upstreams", envvar="DCOSD_DNS_UPSTREAM", multiple=True,
                     help="Resolver for other zones, IP[:PORT] (repeatable; default: /etc/resolv.conf's)."),
    ]):
        f = opt(f)
    return f


def _dns_config(host: str, listen: str, domain: str, ttl: int, upstreams: tuple[str, ...]) -> Any:
    from dcosd.master.discovery import DiscoveryConfig

    if listen == "off":
        dns_listen = None
    else:
        dns_listen = listen or f"{'0.0.0.0' if host in ('', '::') else host}:53"
    return DiscoveryConfig(listen=dns_listen, domain=domain.strip(".").lower() or "mesos", ttl=ttl,
                           upstreams=tuple(upstreams) or None)


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="DCOSD_DATA_DIR",
              help="State directory (default /var/lib/dcosd/master as root).")
@click.option("--listen", default=f"127.0.0.1:{DEFAULT_MASTER_PORT}", show_default=True, envvar="DCOSD_LISTEN",
              help="HOST:PORT to serve the API on.")
@click.option("--advertise", envvar="DCOSD_ADVERTISE", help="URL other machines use to reach this master.")
@click.option("--auth/--no-auth", default=True, show_default=True, envvar="DCOSD_AUTH",
              help="Require the operator token on operator calls.")
@click.option("--agent-timeout", type=float, default=20.0, show_default=True, envvar="DCOSD_AGENT_TIMEOUT",
              help="Seconds without a heartbeat before an agent is unreachable.")
@click.option("--unreachable-grace", type=float, default=60.0, show_default=True,
              envvar="DCOSD_UNREACHABLE_GRACE", help="Seconds an agent may stay unreachable before its tasks are lost.")
@_dns_options
@click.option("--peers", envvar="DCOSD_PEERS", default="",
              help="Every master of the cluster, ID=URL,... (same list on each; 3 or 5). None: a one-master cluster.")
@click.option("--id", "node_id", envvar="DCOSD_ID", help="This master's ID in --peers.")
@click.option("--rejoin", is_flag=True, envvar="DCOSD_REJOIN",
              help="Replace a dead master under its ID with an empty data directory (see replog/DESIGN.md).")
@click.option("--restore-from", type=click.Path(path_type=Path, dir_okay=False), envvar="DCOSD_RESTORE_FROM",
              help="Start an EMPTY data directory from a backup (`dcosd cluster backup`); every master of the "
                   "restored cluster starts from the same file.")
@click.option("--secret-file", envvar="DCOSD_SECRET_FILE", type=click.Path(),
              help="Cluster secret shared by all masters (copy the first master's data-dir/cluster.secret).")
@click.option("--operator-token-file", envvar="DCOSD_OPERATOR_TOKEN_FILE", type=click.Path(),
              help="Operator token shared by all masters (copy the first master's data-dir/operator.token).")
@click.option("--raft-tick-ms", type=click.IntRange(5, 1000), default=40, show_default=True,
              envvar="DCOSD_RAFT_TICK_MS", help="Raft tick; elections time out after 10-20 ticks, heartbeats every 2.")
@_log_option
def master(data_dir: Path | None, listen: str, advertise: str | None, auth: bool, agent_timeout: float,
           unreachable_grace: float, dns_listen: str, dns_domain: str, dns_ttl: int, dns_upstreams: tuple[str, ...],
           peers: str, node_id: str | None, rejoin: bool, restore_from: Path | None, secret_file: str | None,
           operator_token_file: str | None, raft_tick_ms: int, log_level: str) -> None:
    """Run a master: state, placement and the APIs."""
    from dcosd.master.service import Master, MasterConfig

    _setup_logging(log_level)
    host, port = _split_listen(listen, DEFAULT_MASTER_PORT)
    if agent_timeout <= 0 or unreachable_grace < 0:
        raise ConfigError("--agent-timeout must be positive and --unreachable-grace not negative")
    cfg = MasterConfig(data_dir=data_dir or default_data_dir() / "master", host=host, port=port, auth=auth,
                       agent_timeout=agent_timeout, unreachable_grace=unreachable_grace, advertise=advertise,
                       heartbeat_interval=min(2.0, agent_timeout / 4),
                       dns=_dns_config(host, dns_listen, dns_domain, dns_ttl, dns_upstreams))
    if peers:
        from dcosd.master.auth import read_secret
        from dcosd.master.ha import parse_peers

        cfg.peers = parse_peers(peers)
        if not node_id:
            raise ConfigError("--peers needs --id (this master's ID in the list)")
        cfg.node_id, cfg.rejoin, cfg.raft_tick = node_id, rejoin, raft_tick_ms / 1000
        cfg.secret = read_secret(None, secret_file)
        cfg.operator_token = read_secret(None, operator_token_file)
        if cfg.advertise is None:
            cfg.advertise = cfg.peers.get(node_id)
    elif rejoin:
        raise ConfigError("--rejoin only makes sense with --peers")
    if restore_from is not None:
        if not peers:
            raise ConfigError("--restore-from is for replicated masters (--peers); a one-master cluster's backup "
                              "is a copy of its data directory")
        if rejoin:
            raise ConfigError("--restore-from starts a new cluster; --rejoin joins a running one: not both")
        try:
            with open(restore_from, "rb"):  # read when the store opens; refused here if it cannot be
                pass
        except OSError as exc:
            raise ConfigError(f"--restore-from: cannot read {restore_from}: {exc}") from exc
        cfg.restore = restore_from.resolve()

    async def main(stop: asyncio.Event) -> None:
        m = Master(cfg)
        await m.start()
        _quiet_gc()
        log.info("master ready at %s (data in %s; auth %s)", m.advertise_url, cfg.data_dir, "on" if auth else "off")
        sdnotify.ready(f"serving at {m.advertise_url}")  # Type=notify units: started only now
        try:
            await stop.wait()
        finally:
            sdnotify.stopping()
            await m.stop()

    _serve(main, fast_loop=True)


def _agent_options(f: Callable) -> Callable:
    for opt in reversed([
        click.option("--backend", type=click.Choice(["systemd", "cgroups", "process"]), envvar="DCOSD_BACKEND",
                     help="Executor backend (default: systemd if PID 1 is systemd, else cgroups as root, else process)."),
        click.option("--resources", "resources_text", envvar="DCOSD_RESOURCES", default="",
                     help="Override fingerprinted resources: 'cpus:4;mem:2048;ports:[31000-32000]'."),
        click.option("--attributes", "attributes_text", envvar="DCOSD_ATTRIBUTES", default="",
                     help="Attributes for placement constraints: 'rack:r1;zone:a'."),
        click.option("--hostname", envvar="DCOSD_HOSTNAME", help="Hostname to report (default: this machine's)."),
        click.option("--default-user", envvar="DCOSD_DEFAULT_USER",
                     help="User tasks run as when they name none (default nobody, as root)."),
        click.option("--allow-root-tasks", is_flag=True, envvar="DCOSD_ALLOW_ROOT_TASKS",
                     help="Allow tasks to run as root."),
        click.option("--vips/--no-vips", default=True, show_default=True, envvar="DCOSD_VIPS",
                     help="Serve the cluster's VIPs on this machine (addresses on lo; needs root)."),
    ]):
        f = opt(f)
    return f


@click.command()
@click.option("--master", "master_url", required=True, envvar="DCOSD_MASTER",
              help="URL of a master, or of several (comma-separated): any master of the cluster will do.")
@click.option("--work-dir", type=click.Path(path_type=Path), envvar="DCOSD_WORK_DIR",
              help="Agent state and sandboxes (default /var/lib/dcosd/agent as root).")
@click.option("--listen", default=f"0.0.0.0:{DEFAULT_AGENT_PORT}", show_default=True, envvar="DCOSD_AGENT_LISTEN",
              help="HOST:PORT of the agent's API (sandbox files; authenticated by the cluster secret).")
@click.option("--secret", envvar="DCOSD_SECRET", help="Cluster secret (the master's data-dir/cluster.secret).")
@click.option("--secret-file", envvar="DCOSD_SECRET_FILE", type=click.Path(), help="File holding the cluster secret.")
@click.option("--advertise-ip", envvar="DCOSD_ADVERTISE_IP", help="IP to report (default: the one towards the master).")
@_agent_options
@_log_option
def agent(master_url: str, work_dir: Path | None, listen: str, secret: str | None, secret_file: str | None,
          advertise_ip: str | None, backend: str | None, resources_text: str, attributes_text: str,
          hostname: str | None, default_user: str | None, allow_root_tasks: bool, vips: bool, log_level: str) -> None:
    """Run an agent: offer this machine's resources and run tasks."""
    from dcosd.agent import fingerprint
    from dcosd.agent.service import Agent, AgentConfig
    from dcosd.master.auth import read_secret

    _setup_logging(log_level)
    host, port = _split_listen(listen, DEFAULT_AGENT_PORT)
    cfg = AgentConfig(master=master_url, work_dir=work_dir or default_data_dir() / "agent",
                      secret=read_secret(secret, secret_file), host=host, port=port, backend=backend,
                      resources=fingerprint.parse_resources(resources_text),
                      attributes=fingerprint.parse_attributes(attributes_text), hostname=hostname,
                      advertise_ip=advertise_ip, default_user=default_user, allow_root_tasks=allow_root_tasks,
                      vips=vips)
    if cfg.secret is None:
        log.warning("no cluster secret given (--secret/--secret-file): a master will refuse this agent")

    async def main(stop: asyncio.Event) -> None:
        a = Agent(cfg)
        await a.start()
        log.info("agent serving on port %d, work dir %s", a.bound_port, cfg.work_dir)
        sdnotify.ready(f"serving on port {a.bound_port}, backend {a.backend.name}; registering with {a.master_url}")
        try:
            await stop.wait()
        finally:
            sdnotify.stopping()
            await a.stop()

    _serve(main)


SAMPLE_SERVICE = {
    "name": "hello-web",
    "cmd": "echo \"hello from dcosd task $MESOS_TASK_ID\" > index.html && exec python3 -m http.server $PORT0",
    "resources": {"cpus": 0.1, "mem": 64, "ports": [[31080, 31080]]},
}


@click.command()
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="DCOSD_DATA_DIR",
              help="Where the master's state and the agent's sandboxes live (default /var/lib/dcosd as root).")
@click.option("--port", type=int, default=DEFAULT_MASTER_PORT, show_default=True, help="Master port on 127.0.0.1.")
@click.option("--agent-port", type=int, default=DEFAULT_AGENT_PORT, show_default=True, help="Agent port on 127.0.0.1.")
@click.option("--sample", is_flag=True, help="Also start a sample web service (port 31080).")
@_agent_options
@_dns_options
@_log_option
def up(data_dir: Path | None, port: int, agent_port: int, sample: bool, backend: str | None, resources_text: str,
       attributes_text: str, hostname: str | None, default_user: str | None, allow_root_tasks: bool, vips: bool,
       dns_listen: str,
       dns_domain: str, dns_ttl: int, dns_upstreams: tuple[str, ...], log_level: str) -> None:
    """A one-machine cluster: master and agent in this process, on 127.0.0.1."""
    from dcosd.agent import fingerprint
    from dcosd.agent.service import Agent, AgentConfig
    from dcosd.master.service import Master, MasterConfig

    _setup_logging(log_level)
    base = data_dir or default_data_dir()
    mcfg = MasterConfig(data_dir=base / "master", host="127.0.0.1", port=port, auth=False,
                        dns=_dns_config("127.0.0.1", dns_listen, dns_domain, dns_ttl, dns_upstreams))

    async def main(stop: asyncio.Event) -> None:
        m = Master(mcfg)
        await m.start()
        acfg = AgentConfig(master=m.advertise_url, work_dir=base / "agent", secret=m.cluster_secret,
                           host="127.0.0.1", port=agent_port, backend=backend,
                           resources=fingerprint.parse_resources(resources_text),
                           attributes=fingerprint.parse_attributes(attributes_text), hostname=hostname,
                           default_user=default_user, allow_root_tasks=allow_root_tasks, vips=vips)
        a = Agent(acfg)
        try:
            await a.start()
            await asyncio.wait_for(a.registered.wait(), 30)
            url = m.advertise_url
            lines = [
                f"dcosd is up: {url}  (data in {base})",
                f"  executor backend: {a.backend.name} ({a.backend_note})",
                "  auth is OFF: the API listens on 127.0.0.1 only",
                (f"  DNS: dig @127.0.0.1 -p {m.discovery.server.port} leader.{mcfg.dns.domain}"
                 if m.discovery.server else "  DNS: not serving (see the log); `dcosd dns list` still works"),
                "Try:",
                "  dcosd cluster status",
                "  dcosd run --wait -- echo hello",
                "  dcosd task list",
                "  dcosd task logs -f <task-id>",
                "Stop with Ctrl-C (tasks keep running and are re-adopted at the next `dcosd up`).",
            ]
            if sample:
                started = await _start_sample(m)
                lines.insert(3, f"  sample service: {started} — curl http://127.0.0.1:31080/")
            print("\n".join(lines), flush=True)
            await stop.wait()
        finally:
            await a.stop()
            await m.stop()

    _serve(main)


async def _start_sample(m: Any) -> str:
    """Submit the sample service unless one is already live."""
    import time

    from dcosd.master.state import views
    from dcosd.model.task import TaskSpec

    for t in views.tasks(m.store, active_only=True) + views.queued_tasks(m.store):
        if t["spec"]["name"] == SAMPLE_SERVICE["name"]:
            return f"task {t['id']} (already running)"
    spec = TaskSpec.from_dict(SAMPLE_SERVICE, assign_id=True)
    await m.store.propose({"type": "task_submit", "time": time.time(), "spec": spec.to_dict()})
    m.placement_wanted()
    return f"task {spec.task_id}"


COMMANDS = [master, agent, up]


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def executor() -> None:
    """(internal) Supervise one task; started by the agent, never by hand."""
    raise click.UsageError("`dcosd executor` is started by the agent for each task")


COMMANDS.append(executor)
