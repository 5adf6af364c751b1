"""`dcosd package repo add|remove|list`, `search`, `describe`, `install`, `list`, `uninstall`, `update`.

A thin client of the master's /package API (cosmos-shaped; master/package_api.py). `install` and
`update` follow the deployment they start (instances ready / target) until the app is healthy,
unless --no-wait; `install` shows the package's notes and asks before installing unless --yes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from dcosd.cli.output import emit_json, kv, table
from dcosd.errors import DcosdError, ValidationError

WATCH_INTERVAL = 0.5


def _options(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise ValidationError(f"--options {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationError(f"--options {path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationError(f"--options {path}: a JSON object was expected")
    return data


def _app(client: Any, app_id: str) -> dict[str, Any] | None:
    from dcosd.errors import NotFound

    try:
        return client.get("/v2/apps" + app_id)["app"]
    except NotFound:
        return None


def _wait(client: Any, deployment_id: str, app_id: str, timeout: float | None, quiet: bool) -> tuple[bool, float]:
    """Follow a deployment until it is gone (done: every instance ready) or the timeout."""
    from dcosd.cli.apps import _progress_line

    start = time.monotonic()
    last = ""
    while True:
        current = [d for d in client.get("/dcosd/v1/services/deployments")["deployments"] if d["id"] == deployment_id]
        if not current:
            # Done means every instance ready; check it (a deployment also ends when it is replaced).
            app = _app(client, app_id)
            if app is None or app["tasksRunning"] >= app["instances"] and (
                    not app.get("healthChecks") or app["tasksHealthy"] >= app["instances"]):
                return app is not None, time.monotonic() - start
        line = _progress_line(current[0]) if current else f"{app_id}: waiting for every instance to be healthy"
        if line != last and not quiet:
            click.echo(line)
            last = line
        if timeout is not None and time.monotonic() - start > timeout:
            if not quiet:
                sys.stderr.write(f"dcosd: deployment {deployment_id} still running after {timeout:g}s: {line}\n")
            return False, time.monotonic() - start
        time.sleep(WATCH_INTERVAL)


json_opt = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group("package")
def package() -> None:
    """Universe packages: find, install, update and remove services (`dcosd package install redis`)."""


# -- repositories -----------------------------------------------------------------------------

@package.group("repo")
def repo() -> None:
    """Package repositories, in priority order (the first having a package wins)."""


def _print_repos(out: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(out)
        return
    table(["PRIORITY", "NAME", "URI", ""], [[r["priority"], r["name"], r["uri"], r.get("error", "")]
                                           for r in out["repositories"]])


@repo.command("list")
@json_opt
@click.pass_obj
def repo_list(obj: Any, as_json: bool) -> None:
    """List the repositories."""
    _print_repos(obj.client.post("/package/repository/list"), as_json)


@repo.command("add")
@click.argument("name")
@click.argument("uri")
@click.option("--index", type=int, default=None, help="Position (0 = highest priority); default: last before dcosd's own.")
@json_opt
@click.pass_obj
def repo_add(obj: Any, name: str, uri: str, index: int | None, as_json: bool) -> None:
    """Add a repository: an http(s) URL of a zip or JSON repository, a file:// URL or a path on the master."""
    if "://" not in uri and Path(uri).exists():
        uri = Path(uri).resolve().as_uri()
    body: dict[str, Any] = {"name": name, "uri": uri}
    if index is not None:
        body["index"] = index
    _print_repos(obj.client.post("/package/repository/add", body), as_json)


@repo.command("remove")
@click.argument("name")
@json_opt
@click.pass_obj
def repo_remove(obj: Any, name: str, as_json: bool) -> None:
    """Remove a repository (by name or URI). Installed packages keep running."""
    _print_repos(obj.client.post("/package/repository/delete", {"name": name}), as_json)


# -- the catalogue ------------------------------------------------------------------------------

@package.command("search")
@click.argument("term", required=False, default="")
@json_opt
@click.pass_obj
def search(obj: Any, term: str, as_json: bool) -> None:
    """Packages whose name, description or tags contain TERM (`*` globs)."""
    out = obj.client.post("/package/search", {"query": term})
    if as_json:
        emit_json(out)
        return
    table(["NAME", "VERSION", "FRAMEWORK", "REPOSITORY", "DESCRIPTION"],
          [[p["name"], p["version"], "yes" if p["framework"] else "no", p["repository"],
            (p["description"][:70] + "…") if len(p["description"]) > 71 else p["description"]]
           for p in out["packages"]])


@package.command("describe")
@click.argument("name")
@click.option("--package-version", "version", help="A version other than the newest.")
@click.option("--config", "show_config", is_flag=True, help="Show the options schema (config.json).")
@click.option("--render", "do_render", is_flag=True, help="Show the app definition installing would create.")
@click.option("--options", "options_path", metavar="FILE", help="Options (JSON) for --render.")
@click.option("--app-id", help="App id for --render.")
@json_opt
@click.pass_obj
def describe(obj: Any, name: str, version: str | None, show_config: bool, do_render: bool, options_path: str | None,
             app_id: str | None, as_json: bool) -> None:
    """Show a package: its package.json, versions, options schema, or rendered app."""
    body: dict[str, Any] = {"packageName": name}
    if version:
        body["packageVersion"] = version
    if do_render:
        if options_path:
            body["options"] = _options(options_path)
        if app_id:
            body["appId"] = app_id
        out = obj.client.post("/package/render", body)["marathonJson"]
        emit_json(out)
        return
    if options_path:
        raise ValidationError("--options goes with --render")
    out = obj.client.post("/package/describe", body)
    if show_config:
        emit_json(out["config"])
        return
    if as_json:
        emit_json(out)
        return
    pkg = out["package"]["package"]
    kv([("name", pkg["name"]), ("version", pkg["version"]), ("versions", ", ".join(out["versions"])),
        ("repository", out["package"]["repository"]), ("framework", "yes" if pkg.get("framework") else "no"),
        ("tags", ", ".join(pkg.get("tags", []))), ("description", pkg.get("description", "")),
        ("maintainer", pkg.get("maintainer", "")), ("pre-install notes", pkg.get("preInstallNotes", "")),
        ("post-install notes", pkg.get("postInstallNotes", ""))])


# -- install / list / update / uninstall ----------------------------------------------------------

def _follow(obj: Any, out: dict[str, Any], no_wait: bool, timeout: float | None, as_json: bool) -> int:
    ok, took = (True, 0.0) if no_wait else _wait(obj.client, out["deploymentId"], out["appId"], timeout, as_json)
    out = {**out, "healthy": ok and not no_wait, "seconds": round(took, 3)}
    if as_json:
        emit_json(out)
    elif ok and not no_wait:
        click.echo(f"{out['appId']} is healthy ({took:.1f}s)")
    return 0 if ok else 1


@package.command("install")
@click.argument("name")
@click.option("--package-version", "version", help="A version other than the newest.")
@click.option("--options", "options_path", metavar="FILE", help="Options (JSON) over the package's defaults.")
@click.option("--app-id", help="Install under this app id (e.g. to install a package twice).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-wait", is_flag=True, help="Return once the deployment has started.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Wait at most this long for healthy (exit 1).")
@json_opt
@click.pass_obj
def install(obj: Any, name: str, version: str | None, options_path: str | None, app_id: str | None, yes: bool,
            no_wait: bool, timeout: float, as_json: bool) -> int:
    """Install a package as a service and wait until it is healthy."""
    body: dict[str, Any] = {"packageName": name}
    if version:
        body["packageVersion"] = version
    options = _options(options_path)
    if options is not None:
        body["options"] = options
    if app_id:
        body["appId"] = app_id
    # Render first: bad options or an unknown package fail before any question is asked.
    app = obj.client.post("/package/render", body)["marathonJson"]
    pkg = obj.client.post("/package/describe", {k: v for k, v in body.items()
                                                if k in ("packageName", "packageVersion")})["package"]["package"]
    if not as_json and pkg.get("preInstallNotes"):
        click.echo(pkg["preInstallNotes"])
    if not yes:
        if not sys.stdin.isatty():
            raise ValidationError("not installing without confirmation: pass --yes")
        if not click.confirm(f"Install {pkg['name']} {pkg['version']} as {app['id']}?", default=True):
            raise click.Abort()
    out = obj.client.post("/package/install", body)
    if not as_json:
        click.echo(f"installing {out['packageName']} {out['packageVersion']} as {out['appId']} "
                   f"(deployment {out['deploymentId']})")
    rc = _follow(obj, out, no_wait, timeout, as_json)
    if not as_json and rc == 0 and out.get("postInstallNotes"):
        click.echo(out["postInstallNotes"])
    return rc


@package.command("list")
@click.argument("name", required=False)
@click.option("--app-id", help="Only this app.")
@json_opt
@click.pass_obj
def list_installed(obj: Any, name: str | None, app_id: str | None, as_json: bool) -> None:
    """Installed packages (apps carrying DCOS_PACKAGE_* labels)."""
    body = {k: v for k, v in (("packageName", name), ("appId", app_id)) if v}
    out = obj.client.post("/package/list", body)
    if as_json:
        emit_json(out)
        return
    table(["NAME", "VERSION", "APP", "INSTANCES", "SOURCE"],
          [[p["name"], p["version"], p["appId"], p["instances"], p["source"]] for p in out["packages"]])


@package.command("uninstall")
@click.argument("name")
@click.option("--app-id", help="The app to remove, when the package is installed more than once.")
@click.option("--all", "all_", is_flag=True, help="Remove every app of the package.")
@json_opt
@click.pass_obj
def uninstall(obj: Any, name: str, app_id: str | None, all_: bool, as_json: bool) -> None:
    """Remove an installed package's app(s)."""
    body: dict[str, Any] = {"packageName": name, "all": all_}
    if app_id:
        body["appId"] = app_id
    out = obj.client.post("/package/uninstall", body)
    if as_json:
        emit_json(out)
        return
    for r in out["results"]:
        click.echo(f"uninstalled {r['packageName']} {r['packageVersion']} ({r['appId']})")
        if r.get("postUninstallNotes"):
            click.echo(r["postUninstallNotes"])


@package.command("update")
@click.argument("name")
@click.option("--package-version", "version", required=True, help="The version to move to.")
@click.option("--options", "options_path", metavar="FILE", help="Options over the ones it was installed with.")
@click.option("--app-id", help="The app to update, when the package is installed more than once.")
@click.option("--no-wait", is_flag=True, help="Return once the deployment has started.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Wait at most this long (exit 1).")
@json_opt
@click.pass_obj
def update(obj: Any, name: str, version: str, options_path: str | None, app_id: str | None, no_wait: bool,
           timeout: float, as_json: bool) -> int:
    """Move an installed package to another version (earlier options kept), as a rolling deployment."""
    body: dict[str, Any] = {"packageName": name, "packageVersion": version}
    options = _options(options_path)
    if options is not None:
        body["options"] = options
    if app_id:
        body["appId"] = app_id
    out = obj.client.post("/package/update", body)
    if not as_json:
        click.echo(f"updating {out['appId']}: {name} {out['previousVersion']} → {out['packageVersion']} "
                   f"(deployment {out['deploymentId']})")
    return _follow(obj, out, no_wait, timeout, as_json)


COMMANDS = [package]

__all__ = ["COMMANDS", "DcosdError"]
