"""Configuration: defaults, file, environment, validation messages, the secret file, CLI help."""
from __future__ import annotations

import configparser
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.config import OPTIONS, load_config, redact_url, with_secret
from bastion.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_embedded_database() -> None:
    cfg = load_config(None, env={})
    assert cfg.database.url == "sqlite:///var/bastion.db"
    assert cfg.server.host == "127.0.0.1"
    assert cfg.terminal.on_record_failure == "terminate"


def test_shipped_conf_lists_every_option_commented() -> None:
    text = (ROOT / "bastion.conf").read_text()
    for option in OPTIONS:
        assert f"# {option.name} = " in text, option.name
    parser = configparser.ConfigParser()
    parser.read_string(text)
    assert all(not parser[s] for s in parser.sections())  # everything commented out
    load_config(ROOT / "bastion.conf", env={})


def test_file_then_env_then_override(tmp_path: Path) -> None:
    conf = tmp_path / "b.conf"
    conf.write_text("[server]\nport = 9000\n[auth]\nlockout_threshold = 3\n")
    cfg = load_config(conf, env={"BASTION_SERVER_PORT": "9100"})
    assert cfg.server.port == 9100 and cfg.auth.lockout_threshold == 3
    cfg = load_config(conf, env={"BASTION_SERVER_PORT": "9100"}, overrides={"server_port": 9200})
    assert cfg.server.port == 9200


@pytest.mark.parametrize("env, fragment", [
    ({"BASTION_SERVER_PORT": "99999"}, "[server] port"),
    ({"BASTION_SERVER_PORT": "abc"}, "must be an integer"),
    ({"BASTION_AUTH_REQUIRE_TOTP": "maybe"}, "[auth] require_totp"),
    ({"BASTION_TERMINAL_ON_RECORD_FAILURE": "ignore"}, "allowed values are terminate, warn"),
    ({"BASTION_DATABASE_URL": "postgres://x"}, "[database] url"),
    ({"BASTION_SERVER_TRUSTED_PROXIES": "10.0.0.0/8, nonsense"}, "'nonsense' is not an IP"),
    ({"BASTION_HUB_URL": "tcp://x"}, "[hub] url"),
    ({"BASTION_SERVER_NODE_ID": "a b"}, "[server] node_id"),
])
def test_wrong_values_name_the_option(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    assert fragment in info.value.message
    assert "\n" not in info.value.message


def test_unknown_option_in_file(tmp_path: Path) -> None:
    conf = tmp_path / "b.conf"
    conf.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"\[server\] prot: unknown option"):
        load_config(conf, env={})


def test_secret_generated_0600_and_stable(tmp_path: Path) -> None:
    cfg = load_config(None, env={}, overrides={"server_data_dir": str(tmp_path / "d")})
    first = with_secret(cfg)
    key_file = tmp_path / "d" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert with_secret(cfg).secret == first.secret and len(first.secret) >= 32
    assert first.secret.decode() not in repr(first)
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="must not be readable"):
        with_secret(cfg)


def test_redact_url_hides_password() -> None:
    assert redact_url("mongodb://bob:hunter2@db:27017/x") == "mongodb://bob:***@db:27017/x"


@pytest.mark.parametrize("args", [[], ["serve"], ["init"], ["user"], ["user", "add"], ["user", "passwd"],
                                  ["user", "disable"], ["user", "enable"], ["user", "list"], ["play"], ["verify"],
                                  ["purge"], ["run"]])
def test_cli_help(args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "bastion", *args, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage: bastion" in out.stdout


def test_cli_user_management(tmp_path: Path) -> None:
    env = {"BASTION_SERVER_DATA_DIR": str(tmp_path / "var"),
           "BASTION_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'b.db'}", "PATH": "/usr/bin:/bin"}
    run = lambda *a, stdin=None: subprocess.run([sys.executable, "-m", "bastion", *a], input=stdin, capture_output=True,  # noqa: E731
                                                text=True, env=env, timeout=60)
    out = run("init")
    assert out.returncode == 0 and "created user 'admin' with password: " in out.stdout
    out = run("user", "add", "carol", "--role", "auditor", "--password-stdin", stdin="carol-password-1\n")
    assert out.returncode == 0, out.stderr
    out = run("user", "add", "carol", "--password-stdin", stdin="carol-password-1\n")
    assert out.returncode == 2 and "already exists" in out.stderr
    out = run("user", "add", "dave", "--password-stdin", stdin="short\n")
    assert out.returncode == 2 and "at least 10 characters" in out.stderr
    assert run("user", "disable", "carol").returncode == 0
    state = lambda: {line.split()[0]: line.split()[-1] for line in run("user", "list").stdout.splitlines()[1:]}  # noqa: E731
    listing = run("user", "list").stdout
    assert "carol" in listing and "auditor" in listing
    assert state() == {"admin": "active", "carol": "disabled"}
    out = run("user", "enable", "carol")
    assert out.returncode == 0 and "user carol enabled" in out.stdout, out
    assert state() == {"admin": "active", "carol": "active"}
    assert run("user", "enable", "nobody").returncode == 2
    assert run("user", "passwd", "nobody", "--password-stdin", stdin="x" * 12 + "\n").returncode == 2
