"""`dcosd install master|agent` and `dcosd uninstall`: the binary, the config and the units, under systemd.

What lands where (every path built here, nowhere else)::

    /usr/local/bin/dcosd                  the binary (a copy of the running one-file binary)
    /etc/dcosd/dcosd.toml                 settings, one table per role: [master], [agent]
    /etc/systemd/system/dcosd-master.service, dcosd-agent.service, dcosd-tasks.slice
    /etc/systemd/system/dcosd-master.service.d/data-dir.conf   only for a --data-dir elsewhere
    /var/lib/dcosd/                       data (StateDirectory= of the units); kept unless --purge

Both directions are idempotent: a step whose result is already there is reported as unchanged
and skipped, systemd is reloaded at most once per run (``enable --no-reload`` before the one
``daemon-reload``), and a running service is restarted only when its binary, config or unit changed.
The unit files themselves are the ones in the repository's ``systemd/`` folder, carried by the
binary as data (``sys._MEIPASS/systemd``).
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dcosd.errors import DcosdError

BIN_PATH = Path("/usr/local/bin/dcosd")
CONFIG_PATH = Path("/etc/dcosd/dcosd.toml")
UNIT_DIR = Path("/etc/systemd/system")
DATA_DIR = Path("/var/lib/dcosd")
TASK_SLICE = "dcosd-tasks.slice"
TOP_SLICE = "dcosd.slice"  # the tasks slice's parent, implied by its name
ROLES = ("master", "agent")
SYSTEMCTL = "systemctl"


class InstallError(DcosdError):
    exit_code = 1


def unit_name(role: str) -> str:
    return f"dcosd-{role}.service"


def role_units(role: str) -> list[str]:
    """Unit files a role installs: its service, and for the agent the slice its tasks run in."""
    return [unit_name(role)] + ([TASK_SLICE] if role == "agent" else [])


def units_source() -> Path:
    """Where the unit files come from: the binary's bundle, or the source tree's systemd/."""
    if getattr(sys, "frozen", False):
        here = Path(getattr(sys, "_MEIPASS", "")) / "systemd"
    else:
        here = Path(__file__).resolve().parent.parent / "systemd"
    if not (here / unit_name("master")).is_file():
        raise InstallError(f"the unit files are not where they should be ({here})")
    return here


def check_system() -> None:
    """Refuse unless root on a machine whose PID 1 is systemd (sd_booted()'s test)."""
    if os.geteuid() != 0:
        raise InstallError("must run as root: it writes /usr/local/bin, /etc and tells systemd (try sudo)")
    if not Path("/run/systemd/system").is_dir():
        raise InstallError("systemd is not PID 1 on this machine (no /run/systemd/system): run "
                           "`dcosd master` / `dcosd agent` under the supervisor this machine has instead")


def binary_to_install(binary: Path | None) -> Path:
    """The binary to copy: --binary, else this very one-file binary; refused from Python sources."""
    if binary is None:
        if not getattr(sys, "frozen", False):
            raise InstallError("this dcosd runs from Python sources, not the one-file binary: build it "
                               "(packaging/build.sh) and run dist/dcosd install …, or pass --binary PATH")
        binary = Path(sys.executable)
    binary = binary.resolve()
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise InstallError(f"{binary} is not an executable file")
    return binary


# -- config file --------------------------------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def render_config(data: dict[str, dict[str, Any]]) -> str:
    lines = ["# dcosd settings; written by `dcosd install`, safe to edit (then: systemctl restart dcosd-…).",
             "# Each key is a flag of `dcosd master` / `dcosd agent` (dashes or underscores) and an",
             "# environment variable DCOSD_<NAME>; flags win over the environment, which wins over this file."]
    for section in sorted(data, key=lambda s: (s not in ROLES, ROLES.index(s) if s in ROLES else 0, s)):
        values = data[section]
        lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def merged_config(path: Path, role: str, settings: dict[str, Any]) -> str:
    """The config file with ``settings`` set in the role's table; other keys and tables kept."""
    data: dict[str, dict[str, Any]] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InstallError(f"cannot read {path}: {exc} (fix or remove it first)") from exc
    table = dict(data.get(role) or {})
    for k, v in settings.items():
        key, dashed = k.replace("-", "_"), k.replace("_", "-")
        if dashed != key:
            table.pop(dashed, None)  # the same setting spelled with dashes by hand
        table[key] = v
    data[role] = table
    return render_config(data)


# -- steps --------------------------------------------------------------------------------------

@dataclass
class Run:
    """One install/uninstall: what changed, and the lines that tell the operator what was done."""

    say: Callable[[str], None] = print
    changed: set[str] = field(default_factory=set)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([SYSTEMCTL, *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise InstallError(f"systemctl {' '.join(args)} failed: {(r.stderr or r.stdout).strip()}")
        return r

    def write_file(self, path: Path, text: str, mode: int, what: str) -> bool:
        try:
            if path.read_text() == text:
                self.say(f"  unchanged  {path}")
                return False
        except OSError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(mode)
        os.replace(tmp, path)
        self.say(f"  wrote      {path}  ({what})")
        self.changed.add(what)
        return True

    def copy_binary(self, src: Path) -> None:
        if BIN_PATH.exists() and (src == BIN_PATH.resolve() or filecmp.cmp(src, BIN_PATH, shallow=False)):
            self.say(f"  unchanged  {BIN_PATH}")
            return
        BIN_PATH.parent.mkdir(parents=True, exist_ok=True)
        tmp = BIN_PATH.with_name(".dcosd.tmp")
        shutil.copyfile(src, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, BIN_PATH)  # rename: a running dcosd keeps its old file (no ETXTBSY)
        self.say(f"  installed  {BIN_PATH}  (from {src})")
        self.changed.add("binary")

    def is_active(self, unit: str) -> bool:
        return self.systemctl("is-active", "--quiet", unit, check=False).returncode == 0

    def is_enabled(self, unit: str) -> bool:
        return self.systemctl("is-enabled", "--quiet", unit, check=False).returncode == 0

    def journal_tail(self, unit: str, n: int = 15) -> str:
        r = subprocess.run(["journalctl", "-u", unit, "-n", str(n), "--no-pager", "-q"], capture_output=True,
                           text=True)
        return r.stdout.strip()


def install(role: str, settings: dict[str, Any], binary: Path | None, say: Callable[[str], None] = print) -> None:
    """Binary, config, units; one daemon-reload; enable; start (or restart if anything changed)."""
    if role not in ROLES:
        raise InstallError(f"unknown role {role!r}")
    check_system()
    src = binary_to_install(binary)
    units = units_source()
    run = Run(say)
    service = unit_name(role)
    say(f"installing the dcosd {role}:")
    run.copy_binary(src)
    config = merged_config(CONFIG_PATH, role, settings)
    run.write_file(CONFIG_PATH, config, 0o640, "config")
    for name in role_units(role):
        run.write_file(UNIT_DIR / name, (units / name).read_text(), 0o644, "units")
    if role == "master":
        master_data_dir(run, tomllib.loads(config).get("master", {}).get("data_dir"))
    if not run.is_enabled(service):
        run.systemctl("enable", "--no-reload", service)
        say(f"  enabled    {service}  (starts at boot)")
        run.changed.add("units")
    if "units" in run.changed:
        run.systemctl("daemon-reload")
        say("  reloaded   systemd (daemon-reload)")
    active = run.is_active(service)
    run.systemctl("reset-failed", service, check=False)
    verb = "restart" if active and run.changed else "start"
    if active and not run.changed:
        say(f"  running    {service}  (nothing changed)")
    else:
        r = run.systemctl(verb, service, check=False)  # returns once the unit sent READY=1, or failed
        if r.returncode != 0 or not run.is_active(service):
            raise InstallError(f"{service} did not start: {(r.stderr or r.stdout).strip()}\n"
                               f"{run.journal_tail(service)}\n(see: journalctl -u {service})")
        say(f"  {verb + 'ed':<10} {service}  (ready)")
    say(f"dcosd {role} is running; logs: journalctl -u {service} -f; config: {CONFIG_PATH} [{role}]")


def master_data_dir(run: Run, data_dir: str | None) -> None:
    """The master unit has ProtectSystem=strict: a --data-dir outside /var/lib/dcosd gets a drop-in
    that makes it writable (created now: systemd refuses to start with a missing ReadWritePaths=)."""
    drop_in = UNIT_DIR / f"{unit_name('master')}.d" / "data-dir.conf"
    path = Path(data_dir).resolve() if data_dir else None
    if path is None or path == DATA_DIR or DATA_DIR in path.parents:
        if drop_in.exists():
            drop_in.unlink()
            run.say(f"  removed    {drop_in}")
            run.changed.add("units")
        return
    path.mkdir(parents=True, exist_ok=True)
    run.write_file(drop_in, "# Written by `dcosd install master`: its data directory lies outside /var/lib/dcosd.\n"
                   f"[Service]\nReadWritePaths={path}\n", 0o644, "units")


def configured_dirs() -> dict[str, Path]:
    """Data directories named in the config file ([master] data_dir, [agent] work_dir), if any."""
    try:
        data = tomllib.loads(CONFIG_PATH.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    out = {}
    for role, key in (("master", "data_dir"), ("agent", "work_dir")):
        table = data.get(role) or {}
        value = table.get(key) or table.get(key.replace("_", "-"))
        if value:
            out[role] = Path(str(value))
    return out


def local_master_secret() -> Path:
    """The cluster secret of a master installed on this machine (its data directory may be configured)."""
    return configured_dirs().get("master", DATA_DIR / "master") / "cluster.secret"


def installed_roles() -> list[str]:
    return [r for r in ROLES if (UNIT_DIR / unit_name(r)).exists()]


def task_units(run: Run) -> list[str]:
    out = run.systemctl("list-units", "--all", "--no-legend", "--plain", "dcosd-*.service", check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n not in {unit_name(r) for r in ROLES}]


def uninstall(purge: bool, say: Callable[[str], None] = print) -> None:
    """Stop and disable the services, stop the tasks, remove units and binary; data kept unless purge."""
    check_system()
    run = Run(say)
    say("uninstalling dcosd:")
    for role in ("agent", "master"):  # the agent first: it reports to the master
        service = unit_name(role)
        if run.is_active(service):
            run.systemctl("stop", service)
            say(f"  stopped    {service}")
            run.changed.add("stopped")
        if run.is_enabled(service):
            run.systemctl("disable", "--no-reload", service)
            say(f"  disabled   {service}")
            run.changed.add("units")
    tasks = task_units(run)
    if tasks or run.is_active(TOP_SLICE):
        run.systemctl("stop", TOP_SLICE, check=False)  # and with it dcosd-tasks.slice and every task
        say(f"  stopped    {TOP_SLICE}  ({len(tasks)} task unit(s))")
        run.changed.add("stopped")
    for role in ROLES:
        for name in role_units(role):
            path = UNIT_DIR / name
            if path.exists():
                path.unlink()
                say(f"  removed    {path}")
                run.changed.add("units")
        drop_ins = UNIT_DIR / f"{unit_name(role)}.d"
        if drop_ins.is_dir():
            shutil.rmtree(drop_ins)
            say(f"  removed    {drop_ins}")
            run.changed.add("units")
    if "units" in run.changed:
        run.systemctl("daemon-reload")
        say("  reloaded   systemd (daemon-reload)")
    run.systemctl("reset-failed", "dcosd-*", check=False)
    if BIN_PATH.exists():
        BIN_PATH.unlink()
        say(f"  removed    {BIN_PATH}")
        run.changed.add("binary")
    elsewhere = [p for p in configured_dirs().values() if p.exists() and DATA_DIR not in p.resolve().parents]
    if purge:
        for path in elsewhere:
            say(f"  not purged {path}  (a configured data directory outside {DATA_DIR}: remove it by hand)")
        for path in (CONFIG_PATH.parent, DATA_DIR):
            if path.exists():
                shutil.rmtree(path)
                say(f"  purged     {path}")
                run.changed.add("purged")
    else:
        kept = [str(p) for p in (CONFIG_PATH, DATA_DIR, *elsewhere) if p.exists()]
        if kept:
            say(f"  kept       {', '.join(kept)}  (--purge removes them)")
    if not run.changed:
        say("  (nothing was installed)")
    say("dcosd is uninstalled")
