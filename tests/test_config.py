"""Configuration: defaults, file, environment, validation messages, the secret file, CLI help."""
from __future__ import annotations

import configparser
import dataclasses
import re
import stat
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from bastion.config import (OPTIONS, OTHER_ENV, OTHER_ENV_PREFIXES, SECTIONS, Config, load_config, redact_url,
                            render_default_conf, with_secret)
from bastion.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_embedded_database() -> None:
    cfg = load_config(None, env={})
    assert cfg.database.url == "sqlite:///var/bastion.db"
    assert cfg.server.host == "127.0.0.1"
    assert cfg.terminal.on_record_failure == "terminate"


KIND_TYPES = {"str": str, "choice": str, "int": int, "float": float, "bool": bool, "list": tuple[str, ...]}


def test_section_dataclasses_agree_with_options() -> None:
    """OPTIONS is the one table of defaults and rules: every section dataclass mirrors it field for field."""
    assert set(SECTIONS) == {o.section for o in OPTIONS}
    assert typing.get_type_hints(Config) == {**SECTIONS, "secret": bytes, "source": str}
    for section, cls in SECTIONS.items():
        options = [o for o in OPTIONS if o.section == section]
        fields = dataclasses.fields(cls)
        assert [f.name for f in fields] == [o.name for o in options], section
        hints = typing.get_type_hints(cls)
        for f, option in zip(fields, options):
            assert hints[f.name] == KIND_TYPES[option.kind], f"{section}.{f.name}"
            assert f.default == option.default, f"{section}.{f.name}"
        assert cls.__dataclass_params__.frozen, section
    cfg = load_config(None, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.port = 1  # type: ignore[misc]
    for section in SECTIONS:  # loaded values have the declared types, not strings
        for f in dataclasses.fields(SECTIONS[section]):
            value = getattr(getattr(cfg, section), f.name)
            expected = typing.get_type_hints(SECTIONS[section])[f.name]
            assert isinstance(value, typing.get_origin(expected) or expected), f"{section}.{f.name}"


SECRET = "file-or-env-secret-0123456789"


@pytest.mark.parametrize("source", ["file", "env", "override"])
def test_secret_never_in_repr(tmp_path: Path, source: str) -> None:
    conf = tmp_path / "b.conf"
    conf.write_text(f"[server]\nsecret = {SECRET}\n" if source == "file" else "[server]\nport = 9000\n")
    env = {"BASTION_SERVER_SECRET": SECRET} if source == "env" else {}
    overrides = {"server_secret": SECRET} if source == "override" else {}
    cfg = with_secret(load_config(conf, env=env, overrides=overrides))
    assert cfg.server.secret == SECRET and cfg.secret == SECRET.encode()  # it was loaded...
    for text in (repr(cfg), repr(cfg.server), str(cfg), str(cfg.server)):
        assert SECRET not in text  # ...and is never shown
    assert "port=" in repr(cfg.server)  # the rest still is


def test_url_passwords_not_in_repr() -> None:
    cfg = load_config(None, env={"BASTION_DATABASE_URL": "mongodb://bob:db-pass-1@db:27017/x",
                                 "BASTION_HUB_URL": "redis://:hub-pass-1@127.0.0.1:6379/0"})
    assert cfg.database.url == "mongodb://bob:db-pass-1@db:27017/x"
    text = repr(cfg)
    assert "db-pass-1" not in text and "hub-pass-1" not in text
    assert "mongodb://bob:***@db:27017/x" in text and "redis://:***@127.0.0.1:6379/0" in text


def test_database_follows_data_dir(tmp_path: Path) -> None:
    assert load_config(None, env={}).database.url == "sqlite:///var/bastion.db"
    cfg = load_config(None, env={"BASTION_SERVER_DATA_DIR": "/var/lib/bastion"})
    assert cfg.database.url == "sqlite:////var/lib/bastion/bastion.db"
    conf = tmp_path / "b.conf"
    conf.write_text("[server]\ndata_dir = /srv/b\n")
    assert load_config(conf, env={}).database.url == "sqlite:////srv/b/bastion.db"
    # a URL says otherwise: it wins, whatever data_dir is
    conf.write_text("[server]\ndata_dir = /srv/b\n[database]\nurl = sqlite:///elsewhere/x.db\n")
    assert load_config(conf, env={}).database.url == "sqlite:///elsewhere/x.db"
    assert load_config(conf, env={"BASTION_DATABASE_URL": "mongodb://h/db"}).database.url == "mongodb://h/db"


def test_database_file_is_created_under_data_dir(tmp_path: Path) -> None:
    """The systemd recipe: only data_dir is writable, the working directory is not touched."""
    data, cwd = tmp_path / "lib" / "bastion", tmp_path / "cwd"
    cwd.mkdir()
    conf = tmp_path / "bastion.conf"
    conf.write_text(f"[server]\ndata_dir = {data}\n")
    out = subprocess.run([sys.executable, "-m", "bastion", "init"], cwd=cwd, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "BASTION_CONFIG": str(conf), "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert (data / "bastion.db").is_file() and (data / "secret.key").is_file()
    assert list(cwd.iterdir()) == []
    assert f"database sqlite:///{data}/bastion.db" in out.stdout


@pytest.mark.parametrize("name, hint", [
    ("BASTION_SERVER_POTR", "did you mean BASTION_SERVER_PORT?"),
    ("BASTION_DATABSE_URL", "did you mean BASTION_DATABASE_URL?"),
    ("BASTION_NONSENSE", "see bastion.conf for the list"),
])
def test_unknown_environment_variable(name: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={name: "1"})
    assert info.value.message == f"environment variable {name}: unknown option ({hint})"


def test_other_bastion_variables_allowed() -> None:
    env = {name: "x" for name in OTHER_ENV if name != "BASTION_CONFIG"} | {"BASTION_TEST_MONGODB_URI": "mongodb://h",
                                                                           "NOT_BASTION_X": "1", "HOME": "/root"}
    assert load_config(None, env=env).server.port == 8022


def test_every_bastion_variable_in_the_tree_is_known() -> None:
    """A variable the code or the docs name must be an option or on the allowed list, or serve would refuse it."""
    known = {o.env for o in OPTIONS} | OTHER_ENV
    mine = {Path(__file__).name, "test_cli.py"}  # these two spell wrong names on purpose
    files = [p for d in ("bastion", "handlers", "tests", "scripts") for p in (ROOT / d).rglob("*")
             if p.suffix in (".py", ".sh", ".js", ".html") and p.name not in mine and ".venv" not in p.parts]
    files += [ROOT / "README.md", ROOT / "Makefile"]
    seen: dict[str, str] = {}
    for path in files:
        for name in re.findall(r"\bBASTION_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")):
            seen.setdefault(name, str(path.relative_to(ROOT)))
    assert "BASTION_LOG_LEVEL" in seen and "BASTION_SERVER_PORT" in seen  # the scan found the usual ones
    typos = {"BASTION_SERVER_POTR"}  # the README's example of a refused name
    unknown = {n: p for n, p in seen.items() if n not in known | typos and not n.startswith(OTHER_ENV_PREFIXES)}
    assert unknown == {}


def test_shipped_conf_is_rendered_from_options() -> None:
    assert (ROOT / "bastion.conf").read_text() == render_default_conf()


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


def test_wrong_database_url_does_not_show_its_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"BASTION_DATABASE_URL": "postgres://bob:pg-pass-1@h/db"})
    assert "pg-pass-1" not in info.value.message and "[database] url" in info.value.message


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
    assert redact_url("redis://:hunter2@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("args", [[], ["serve"], ["init"], ["user"], ["user", "add"], ["user", "passwd"],
                                  ["user", "disable"], ["user", "enable"], ["user", "unlock"], ["user", "list"],
                                  ["locks"], ["locks", "clear"], ["play"], ["verify"], ["purge"], ["run"]])
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
