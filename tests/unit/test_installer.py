"""The pure parts of `dcosd install`: the config file it writes, the settings it accepts, its refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click
import pytest

from dcosd import installer
from dcosd.cli import _keys_by_flag, _register
from dcosd.cli.daemons import agent, master
from dcosd.cli.install import _settings
from dcosd.config import daemon_default_map


def test_config_merges_one_table_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "dcosd.toml"
    path.write_text('[agent]\nlog-level = "debug"\nmaster = "http://old"\n\n[custom]\nx = 1\n')
    text = installer.merged_config(path, "agent", {"master": "http://m:5050", "secret_file": "/s",
                                                   "log_level": "info", "allow_root_tasks": True})
    data = tomllib.loads(text)
    assert data["agent"] == {"master": "http://m:5050", "secret_file": "/s", "log_level": "info",
                             "allow_root_tasks": True}
    assert data["custom"] == {"x": 1}
    path.write_text(text)
    # The same settings again: byte for byte the same file (install reports it unchanged).
    assert installer.merged_config(path, "agent", {"master": "http://m:5050", "secret_file": "/s"}) == text
    text = installer.merged_config(path, "master", {"listen": '0.0.0.0:5050', "peers": ["a", 'b"c']})
    assert tomllib.loads(text)["master"] == {"listen": "0.0.0.0:5050", "peers": ["a", 'b"c']}
    assert text.index("[master]") < text.index("[agent]") < text.index("[custom]")


def test_written_config_feeds_the_daemons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "dcosd.toml"
    path.write_text(installer.merged_config(path, "agent", {"master": "http://m:5050", "listen": "1.2.3.4:1",
                                                            "resources": "cpus:2"}))
    monkeypatch.setenv("DCOSD_CONFIG", str(path))
    _register()
    defaults = _keys_by_flag(daemon_default_map())["agent"]
    assert defaults == {"master_url": "http://m:5050", "listen": "1.2.3.4:1", "resources_text": "cpus:2"}


def test_bad_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dcosd.toml"
    path.write_text("[agent\n")
    with pytest.raises(installer.InstallError, match="cannot read"):
        installer.merged_config(path, "agent", {})


def test_settings_are_checked_against_the_daemon_options() -> None:
    s = _settings(agent, {"master_url": "http://m", "listen": None},
                  ("log-level=debug", "allow-root-tasks=yes", "resources_text=cpus:2", "attributes=rack:r1"))
    # Written under the flags' names, whatever click calls the parameters.
    assert s == {"master": "http://m", "log_level": "debug", "allow_root_tasks": True, "resources": "cpus:2",
                 "attributes": "rack:r1"}
    with pytest.raises(click.BadParameter, match="no setting 'nonsense'"):
        _settings(master, {}, ("nonsense=1",))
    with pytest.raises(click.BadParameter, match="not KEY=VALUE"):
        _settings(master, {}, ("listen",))
    with pytest.raises(click.BadParameter, match="yes/no"):
        _settings(agent, {}, ("allow-root-tasks=maybe",))


def test_units_come_with_the_package() -> None:
    units = installer.units_source()
    for role in installer.ROLES:
        for name in installer.role_units(role):
            text = (units / name).read_text()
            if name.endswith(".service"):
                assert "Type=notify" in text and "NotifyAccess=all" in text and "Restart=always" in text
                assert f"ExecStart={installer.BIN_PATH} {role}" in text
    assert "KillMode=mixed" in (units / "dcosd-agent.service").read_text()


def test_refusals(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(installer.os, "geteuid", lambda: 1000)
    with pytest.raises(installer.InstallError, match="must run as root"):
        installer.check_system()
    with pytest.raises(installer.InstallError, match="--binary"):
        installer.binary_to_install(None)  # from sources
    with pytest.raises(installer.InstallError, match="not an executable"):
        installer.binary_to_install(tmp_path / "missing")


def test_a_cluster_that_could_not_start_is_refused_before_anything_is_installed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad --peers or --master: a usage error now, not a service installed that then fails to start."""
    from dcosd.cli import run_cli

    def must_not_install(*_a: object) -> None:
        raise AssertionError("installed despite a bad setting")

    monkeypatch.setattr(installer, "install", must_not_install)
    monkeypatch.setattr(installer, "check_system", lambda: None)
    monkeypatch.setattr(installer, "local_master_secret", lambda: tmp_path / "none")
    secret = tmp_path / "secret"
    secret.write_text("s\n")
    peers = "m1=http://h1:5050,m2=http://h2:5050,m3=http://h3:5050"
    for args, says in (
        (["install", "master", "--peers", "m1=http://h1:5050,m2=http://h1:5050"], "the same address"),
        (["install", "master", "--peers", peers], "--set id=ID is required"),
        (["install", "master", "--peers", peers, "--set", "id=m4"], "--set id=ID is required"),
        (["install", "agent", "--master", "http://h1:5050,ftp://h2", "--secret-file", str(secret)],
         "--master: ftp://h2: the URL must be http://"),
    ):
        with pytest.raises(SystemExit) as exited:
            run_cli(args)
        err = capsys.readouterr().err
        assert exited.value.code == 2 and says in err, (args, err)
