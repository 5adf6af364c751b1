"""Settings precedence: defaults < config file < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dcosd import config
from dcosd.cli import cli, _register
from dcosd.errors import ConfigError


def test_cli_master_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("DCOSD_MASTER", raising=False)
    assert config.cli_masters(None) == [config.DEFAULT_MASTER_URL]
    (tmp_path / "dcosd").mkdir()
    (tmp_path / "dcosd" / "cli.toml").write_text('master = "10.0.0.1:5050"\ntoken = "t-file"\n')
    assert config.cli_masters(None) == ["http://10.0.0.1:5050"]
    assert config.cli_token(None) == "t-file"
    monkeypatch.setenv("DCOSD_MASTER", "http://env:1")
    monkeypatch.setenv("DCOSD_TOKEN", "t-env")
    assert config.cli_masters(None) == ["http://env:1"] and config.cli_token(None) == "t-env"
    assert config.cli_masters("http://flag:2/") == ["http://flag:2"] and config.cli_token("t-flag") == "t-flag"


def test_daemon_settings_file_env_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    conf = tmp_path / "dcosd.toml"
    conf.write_text('[master]\nagent-timeout = 7.5\nunreachable_grace = 9\n[agent]\nbackend = "process"\n')
    monkeypatch.setenv("DCOSD_CONFIG", str(conf))
    default_map = config.daemon_default_map()
    assert default_map["master"] == {"agent_timeout": 7.5, "unreachable_grace": 9}
    _register()
    seen = {}

    def fake_master(**kwargs):
        seen.update(kwargs)

    cmd = cli.commands["master"]
    original = cmd.callback
    cmd.callback = fake_master
    try:
        runner = CliRunner()
        runner.invoke(cli, ["master"], default_map=default_map, catch_exceptions=False)
        assert seen["agent_timeout"] == 7.5 and seen["unreachable_grace"] == 9  # file over defaults
        runner.invoke(cli, ["master"], default_map=default_map, env={"DCOSD_AGENT_TIMEOUT": "3"},
                      catch_exceptions=False)
        assert seen["agent_timeout"] == 3  # environment over file
        runner.invoke(cli, ["master", "--agent-timeout", "1"], default_map=default_map,
                      env={"DCOSD_AGENT_TIMEOUT": "3"}, catch_exceptions=False)
        assert seen["agent_timeout"] == 1  # flag over environment
    finally:
        cmd.callback = original


def test_bad_config_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    conf = tmp_path / "dcosd.toml"
    conf.write_text("[master\n")
    monkeypatch.setenv("DCOSD_CONFIG", str(conf))
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.daemon_default_map()
    conf.write_text("master = 1\n")
    with pytest.raises(ConfigError, match="must be a table"):
        config.daemon_default_map()
