"""Configuration: defaults → bastion.conf (INI) → BASTION_* environment → overrides, validated once.

Every option lives in OPTIONS with its type, default and rule; `load_config` returns a frozen
`Config`. A wrong value raises ConfigError naming the option and what is allowed.
"""
from __future__ import annotations

import configparser
import dataclasses
import ipaddress
import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError


@dataclass(frozen=True)
class Option:
    """One configuration option: where it lives, its default and how it is checked."""

    section: str
    name: str
    default: Any
    kind: str  # str | int | float | bool | choice | list
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = None  # returns a message when invalid

    @property
    def key(self) -> str:
        return f"{self.section}_{self.name}"

    @property
    def env(self) -> str:
        return f"BASTION_{self.section.upper()}_{self.name.upper()}"


def _check_db_url(value: str) -> str | None:
    if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return None
    if value.startswith(("mongodb://", "mongodb+srv://")):
        return None
    return "must be sqlite:///<path> or mongodb://…"


def _check_hub_url(value: str) -> str | None:
    if value == "memory" or value.startswith(("redis://", "rediss://")):
        return None
    return "must be 'memory' or redis://host:port/db"


def _check_networks(values: tuple[str, ...]) -> str | None:
    for item in values:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"{item!r} is not an IP address or network"
    return None


def _check_node_id(value: str) -> str | None:
    if value == "" or re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        return None
    return "must be 1-64 characters of letters, digits, '.', '_' or '-'"


OPTIONS: tuple[Option, ...] = (
    Option("server", "host", "127.0.0.1", "str", "Address to listen on."),
    Option("server", "port", 8022, "int", "TCP port to listen on (0: any free port).", minimum=0, maximum=65535),
    Option("server", "data_dir", "var", "str", "Directory for the database file, the generated secret and runtime data."),
    Option("server", "secret", "", "str", "Server secret (cookies, vault, envelopes). Empty: generated into <data_dir>/secret.key (0600)."),
    Option("server", "node_id", "", "str", "Name of this node in a multi-node deployment. Empty: the machine's host name.", check=_check_node_id),
    Option("server", "trusted_proxies", (), "list", "Comma-separated addresses/networks whose X-Forwarded-For/-Proto are believed.", check=_check_networks),
    Option("server", "cookie_secure", "auto", "choice", "Secure flag on cookies: auto (when the request came over TLS), always, never.", choices=("auto", "always", "never")),
    Option("server", "debug", False, "bool", "Tornado debug mode (never in production)."),
    Option("server", "idle_timeout", 60.0, "float", "Seconds a connection may take to send a request's headers, and may stay idle between requests.", minimum=1, maximum=3600),
    Option("server", "body_timeout", 60.0, "float", "Seconds a request body may take to arrive.", minimum=1, maximum=3600),
    Option("server", "min_open_files", 1024, "int", "Refuse to start when the open-files limit (raised to the hard limit at start) stays below this.", minimum=64, maximum=1 << 20),
    Option("database", "url", "sqlite:///var/bastion.db", "str", "sqlite:///<path> (embedded, default) or mongodb://user:pass@host/db.", check=_check_db_url),
    Option("database", "timeout", 5.0, "float", "Seconds to wait for the database before answering 503.", minimum=0.1, maximum=120),
    Option("auth", "session_ttl", 43200, "int", "Seconds a browser login stays valid.", minimum=60, maximum=30 * 86400),
    Option("auth", "lockout_threshold", 5, "int", "Failed logins (per account and per client address) before a lock.", minimum=1, maximum=1000),
    Option("auth", "lockout_window", 900, "int", "Seconds over which failures are counted.", minimum=1, maximum=86400),
    Option("auth", "lockout_duration", 900, "int", "Seconds a lock lasts.", minimum=1, maximum=30 * 86400),
    Option("auth", "require_totp", False, "bool", "Every user must enrol TOTP before reaching anything else."),
    Option("auth", "password_min_length", 10, "int", "Minimum length of new passwords.", minimum=6, maximum=128),
    Option("auth", "idle_ttl", 3600, "int", "Seconds a browser login may go unused before it ends, besides session_ttl (0: no idle expiry).", minimum=0, maximum=30 * 86400),
    Option("auth", "token_ttl_default", 90, "int", "Days a new API token stays valid when its creator gives no lifetime.", minimum=1, maximum=3650),
    Option("auth", "token_ttl_max", 365, "int", "Most days an API token may stay valid (also caps tokens created before expiries existed).", minimum=1, maximum=3650),
    Option("terminal", "connect_timeout", 10.0, "float", "Seconds to reach a host and log in.", minimum=0.5, maximum=300),
    Option("terminal", "keepalive_interval", 30, "int", "Seconds between SSH keepalives (0: off).", minimum=0, maximum=3600),
    Option("terminal", "idle_timeout", 1800, "int", "Seconds without input or output before a session ends (0: never).", minimum=0, maximum=7 * 86400),
    Option("terminal", "max_sessions_per_user", 10, "int", "Concurrent terminal sessions per user.", minimum=1, maximum=10000),
    Option("terminal", "records_dir", "records", "str", "Directory for asciicast recordings."),
    Option("terminal", "record_input", False, "bool", "Also record typed input (contains typed passwords)."),
    Option("terminal", "on_record_failure", "terminate", "choice", "When a recording cannot be written: terminate the session, or warn and go on.", choices=("terminate", "warn")),
    Option("terminal", "notify_monitored", True, "bool", "Tell the user when someone starts watching the session."),
    Option("terminal", "retention_days", 0, "int", "Delete recordings older than this many days, keeping metadata (0: keep forever).", minimum=0, maximum=36500),
    Option("terminal", "ssh_window", 2097152, "int", "SSH channel window in bytes: larger is faster, and bounds what a backed-up session buffers.", minimum=32768, maximum=16 * 1048576),
    Option("terminal", "monitor_queue_bytes", 1048576, "int", "Bytes a monitor may lag behind before it is resynced from a snapshot.", minimum=65536, maximum=64 * 1048576),
    Option("modules", "dir", "modules", "str", "Folder of drop-in task modules Mid_<id>.py."),
    Option("modules", "max_runs", 4, "int", "Module runs executing at once (each in its own worker process).", minimum=1, maximum=256),
    Option("modules", "output_cap", 1048576, "int", "Bytes of stdout/stderr kept per host and run.", minimum=1024, maximum=64 * 1048576),
    Option("modules", "host_concurrency", 50, "int", "Hosts a run reaches in parallel.", minimum=1, maximum=1000),
    Option("modules", "poll_interval", 1.0, "float", "Seconds between scans of the modules folder.", minimum=0.1, maximum=3600),
    Option("hub", "url", "memory", "str", "'memory' (one node) or redis://host:port/db (several nodes).", check=_check_hub_url),
    Option("hub", "heartbeat_interval", 10.0, "float", "Seconds between this node's heartbeats in the store.", minimum=0.2, maximum=600),
    Option("hub", "node_timeout", 30.0, "float", "A node silent this long is dead: its live sessions become interrupted.", minimum=1, maximum=86400),
)


def _section_class(section: str) -> type:
    fields_ = [(o.name, Any, field(default=o.default)) for o in OPTIONS if o.section == section]
    return dataclasses.make_dataclass(section.capitalize() + "Config", fields_, frozen=True)


ServerConfig = _section_class("server")
DatabaseConfig = _section_class("database")
AuthConfig = _section_class("auth")
TerminalConfig = _section_class("terminal")
HubConfig = _section_class("hub")
ModulesConfig = _section_class("modules")


@dataclass(frozen=True)
class Config:
    """The validated configuration, one frozen object passed down from the app factory."""

    server: Any
    database: Any
    auth: Any
    terminal: Any
    hub: Any
    modules: Any
    secret: bytes = field(repr=False, default=b"")
    source: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def records_dir(self) -> Path:
        return Path(self.terminal.records_dir)

    @property
    def node_id(self) -> str:
        return self.server.node_id or socket.gethostname().split(".")[0][:64] or "node"


def _parse(option: Option, raw: Any) -> Any:
    where = f"[{option.section}] {option.name}"
    if not isinstance(raw, str):
        value = raw
    else:
        text = raw.strip()
        try:
            if option.kind == "int":
                value = int(text)
            elif option.kind == "float":
                value = float(text)
            elif option.kind == "bool":
                low = text.lower()
                if low in ("1", "true", "yes", "on"):
                    value = True
                elif low in ("0", "false", "no", "off"):
                    value = False
                else:
                    raise ValueError
            elif option.kind == "list":
                value = tuple(p.strip() for p in text.split(",") if p.strip())
            else:
                value = text
        except ValueError:
            kinds = {"int": "an integer", "float": "a number", "bool": "true or false"}
            raise ConfigError(f"config {where} = {text!r}: must be {kinds.get(option.kind, option.kind)}") from None
    if option.kind == "choice" and value not in option.choices:
        raise ConfigError(f"config {where} = {value!r}: allowed values are {', '.join(option.choices)}")
    if option.minimum is not None and value < option.minimum or option.maximum is not None and value > option.maximum:
        raise ConfigError(f"config {where} = {value!r}: must be between {option.minimum:g} and {option.maximum:g}")
    if option.check:
        problem = option.check(value)
        if problem:
            shown = "<hidden>" if option.name in ("secret",) else repr(value)
            raise ConfigError(f"config {where} = {shown}: {problem}")
    return value


def load_config(
    path: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read defaults, the INI file, BASTION_* variables and overrides ("section_name": value)."""
    env = os.environ if env is None else env
    path = path if path is not None else env.get("BASTION_CONFIG")
    parser = configparser.ConfigParser(interpolation=None)
    source = "defaults"
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            parser.read(p, encoding="utf-8")
        except configparser.Error as exc:
            raise ConfigError(f"config file {p}: {exc.message.splitlines()[0]}") from None
        source = str(p)
    known = {(o.section, o.name) for o in OPTIONS}
    for section in parser.sections():
        for name in parser[section]:
            if (section, name) not in known:
                raise ConfigError(f"config [{section}] {name}: unknown option (see bastion.conf for the list)")
    overrides = dict(overrides or {})
    values: dict[str, dict[str, Any]] = {}
    for option in OPTIONS:
        raw: Any = option.default
        if parser.has_option(option.section, option.name):
            raw = parser.get(option.section, option.name)
        if option.env in env:
            raw = env[option.env]
        if option.key in overrides:
            raw = overrides.pop(option.key)
        values.setdefault(option.section, {})[option.name] = _parse(option, raw)
    if overrides:
        raise ConfigError(f"unknown config override {sorted(overrides)[0]!r}")
    sections = {
        "server": ServerConfig(**values["server"]),
        "database": DatabaseConfig(**values["database"]),
        "auth": AuthConfig(**values["auth"]),
        "terminal": TerminalConfig(**values["terminal"]),
        "hub": HubConfig(**values["hub"]),
        "modules": ModulesConfig(**values["modules"]),
    }
    return Config(**sections, source=source)


def with_secret(config: Config) -> Config:
    """Return config with the server secret loaded, generating a 0600 file on first start."""
    if config.server.secret:
        secret = config.server.secret.encode()
        if len(secret) < 16:
            raise ConfigError("config [server] secret: must be at least 16 characters")
        return dataclasses.replace(config, secret=secret)
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_file = data_dir / "secret.key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    mode = key_file.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"secret file {key_file} has mode {mode:o}: must not be readable by group or others (chmod 600)")
    secret = key_file.read_text(encoding="utf-8").strip().encode()
    if len(secret) < 16:
        raise ConfigError(f"secret file {key_file} is too short")
    return dataclasses.replace(config, secret=secret)


def redact_url(url: str) -> str:
    """A database/hub URL with its password replaced, safe to print."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def render_default_conf() -> str:
    """bastion.conf text: every option commented with its default."""
    out = ["# Bastion configuration. Every option is shown commented out with its default.",
           "# Environment variables BASTION_<SECTION>_<OPTION> override this file.", ""]
    section = None
    for o in OPTIONS:
        if o.section != section:
            if section is not None:
                out.append("")
            out.append(f"[{o.section}]")
            section = o.section
        default = o.default
        if isinstance(default, bool):
            default = "true" if default else "false"
        elif isinstance(default, tuple):
            default = ", ".join(default)
        extra = f" ({' | '.join(o.choices)})" if o.choices else ""
        out.append(f"# {o.help}{extra}")
        out.append(f"# {o.name} = {default}")
    return "\n".join(out) + "\n"
