"""Configuration: defaults → bastion.conf (INI) → BASTION_* environment → overrides, validated once.

Every option lives in OPTIONS with its type, default and rule; `load_config` returns a frozen
`Config`. A wrong value raises ConfigError naming the option and what is allowed.
"""
from __future__ import annotations

import configparser
import dataclasses
import difflib
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
    if value == "":
        return None  # resolved to the database file under data_dir
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


def _check_listen(value: str) -> str | None:
    if value == "":
        return None  # the SSH gateway is off
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return "must be empty (off) or ADDRESS:PORT, e.g. 127.0.0.1:2222"
    return None


def _check_node_id(value: str) -> str | None:
    if value == "" or re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        return None
    return "must be 1-64 characters of letters, digits, '.', '_' or '-'"


def _check_public_url(value: str) -> str | None:
    if value == "" or re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        return None
    return "must be http(s)://host[:port][/path]"


def _check_roles(values: tuple[str, ...]) -> str | None:
    for role in values:
        if role not in ("admin", "auditor", "user"):
            return f"unknown role {role!r}; allowed: admin, auditor, user"
    return None


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
    Option("server", "event_loop", "asyncio", "choice", "Event loop of `bastion serve`: asyncio (the standard one) or uvloop.", choices=("asyncio", "uvloop")),
    Option("server", "min_open_files", 1024, "int", "Refuse to start when the open-files limit (raised to the hard limit at start) stays below this.", minimum=64, maximum=1 << 20),
    Option("database", "url", "", "str", "sqlite:///<path> (embedded) or mongodb://user:pass@host/db. Empty: sqlite:///<data_dir>/bastion.db.", check=_check_db_url),
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
    Option("auth", "require_mfa", False, "bool", "Every user must enrol a second factor (TOTP or a passkey) before reaching anything else; require_totp = true means the same."),
    Option("terminal", "connect_timeout", 10.0, "float", "Seconds to reach a host and log in.", minimum=0.5, maximum=300),
    Option("terminal", "keepalive_interval", 30, "int", "Seconds between SSH keepalives (0: off).", minimum=0, maximum=3600),
    Option("terminal", "idle_timeout", 1800, "int", "Seconds without input or output before a session ends (0: never).", minimum=0, maximum=7 * 86400),
    Option("terminal", "max_sessions_per_user", 10, "int", "Concurrent terminal sessions per user.", minimum=1, maximum=10000),
    Option("terminal", "max_session_duration", 0, "int", "Seconds a session may last at most, warned a minute before (0: no limit).", minimum=0, maximum=30 * 86400),
    Option("terminal", "policy_recheck_interval", 1.5, "float", "Seconds between re-checks of live sessions' users, grants and locks.", minimum=0.2, maximum=3600),
    Option("terminal", "reconnect_grace", 60.0, "float", "Seconds a session waits for its browser to come back after a page reload or a lost connection (0: it ends at once).", minimum=0, maximum=3600),
    Option("terminal", "slow_client_timeout", 60.0, "float", "Seconds a terminal may hold output it does not read before the session ends.", minimum=1, maximum=3600),
    Option("terminal", "locale", "C.UTF-8", "str", "LANG/LC_CTYPE sent to hosts as SSH environment (empty: none); hosts must AcceptEnv it."),
    Option("terminal", "records_dir", "records", "str", "Directory for asciicast recordings."),
    Option("terminal", "record_input", False, "bool", "Also record typed input (contains typed passwords)."),
    Option("terminal", "on_record_failure", "terminate", "choice", "When a recording cannot be written: terminate the session, or warn and go on.", choices=("terminate", "warn")),
    Option("terminal", "notify_monitored", True, "bool", "Tell the user when someone starts watching the session."),
    Option("terminal", "retention_days", 0, "int", "Delete recordings older than this many days, keeping metadata (0: keep forever).", minimum=0, maximum=36500),
    Option("terminal", "ssh_window", 2097152, "int", "SSH channel window in bytes: larger is faster, and bounds what a backed-up session buffers.", minimum=32768, maximum=16 * 1048576),
    Option("terminal", "output_budget", 33554432, "int", "Bytes of terminal output the whole process may buffer (SSH windows, unsent socket data, recording backlogs and the replay windows kept for late watchers); each session gets an equal share, so buffers shrink as sessions multiply.", minimum=4 * 1048576, maximum=64 * 1073741824),
    Option("terminal", "monitor_queue_bytes", 1048576, "int", "Bytes a monitor may lag behind before it is resynced from a snapshot.", minimum=65536, maximum=64 * 1048576),
    Option("modules", "dir", "modules", "str", "Folder of drop-in task modules Mid_<id>.py."),
    Option("modules", "max_runs", 4, "int", "Module runs executing at once (each in its own worker process).", minimum=1, maximum=256),
    Option("modules", "output_cap", 1048576, "int", "Bytes of stdout/stderr kept per host and run.", minimum=1024, maximum=64 * 1048576),
    Option("modules", "host_concurrency", 50, "int", "Hosts a run reaches in parallel.", minimum=1, maximum=1000),
    Option("modules", "poll_interval", 1.0, "float", "Seconds between scans of the modules folder.", minimum=0.1, maximum=3600),
    Option("hub", "url", "memory", "str", "'memory' (one node) or redis://host:port/db (several nodes).", check=_check_hub_url),
    Option("hub", "heartbeat_interval", 10.0, "float", "Seconds between this node's heartbeats in the store.", minimum=0.2, maximum=600),
    Option("hub", "node_timeout", 30.0, "float", "A node silent this long is dead: its live sessions become interrupted.", minimum=1, maximum=86400),
    # ---- [sso]: single sign-on (bastion/sso/) ----
    Option("sso", "providers_file", "", "str", "TOML file describing OpenID Connect providers ([[oidc]]) and LDAP directories ([[ldap]]) with their group mappings (see README). Empty: local accounts only."),
    Option("sso", "public_url", "", "str", "Base URL users reach the bastion at (redirect URIs are built from it). Empty: from each request's own host.", check=_check_public_url),
    Option("sso", "clock_skew", 60, "int", "Seconds of clock difference tolerated when checking ID token times (exp, iat, nbf).", minimum=0, maximum=300),
    Option("sso", "http_timeout", 10.0, "float", "Seconds to wait for an OpenID provider (discovery, keys, token exchange) or an LDAP server.", minimum=0.5, maximum=120),
    Option("sso", "state_ttl", 600, "int", "Seconds a sign-in started at a provider may take to come back.", minimum=30, maximum=3600),
    Option("sso", "required_for_roles", (), "list", "Roles whose users must sign in through single sign-on (their local password is refused).", check=_check_roles),
    Option("sso", "directory_recheck_interval", 60.0, "float", "Seconds between checks that directory (LDAP) users with live sessions still exist and are enabled.", minimum=0.5, maximum=86400),
    Option("access", "approver_roles", ("auditor", "admin"), "list", "Roles whose members approve access requests and held commands.", check=lambda v: _check_roles(v)),
    Option("access", "approvers", (), "list", "Usernames who approve access requests and held commands besides those roles."),
    Option("access", "break_glass_roles", (), "list", "Roles whose members may approve their own access request (break-glass: loud, reviewed afterwards).", check=lambda v: _check_roles(v)),
    Option("access", "max_request_minutes", 480, "int", "Longest access a request may ask for, in minutes.", minimum=1, maximum=30 * 24 * 60),
    Option("access", "expiry_warning", 300, "int", "Seconds before temporary access ends when its live sessions are warned.", minimum=0, maximum=86400),
    Option("access", "review_timeout", 120, "int", "Seconds a held command waits for an approver; no answer means deny.", minimum=1, maximum=86400),
    Option("access", "invite_minutes", 30, "int", "Minutes an invitation to join a session stays usable at most.", minimum=1, maximum=24 * 60),
    Option("access", "clock_file", "", "str", "Tests only: a file holding seconds added to the clock used for access expiry and review timeouts (empty: the real clock)."),

    Option("gateway", "listen", "", "str", "ADDRESS:PORT of the SSH gateway (users' own ssh, scp, sftp). Empty: off.", check=_check_listen),
    Option("gateway", "host_key", "", "str", "The gateway's private host key file. Empty: <data_dir>/gateway_host_key (generated, 0600)."),
    Option("gateway", "max_upload_bytes", 1073741824, "int", "Largest file a user may upload through the gateway or the file panel.", minimum=0, maximum=1 << 50),
    Option("gateway", "max_download_bytes", 1073741824, "int", "Largest file a user may download through the gateway or the file panel.", minimum=0, maximum=1 << 50),
    Option("gateway", "login_timeout", 60.0, "float", "Seconds an SSH client may take to log in.", minimum=1, maximum=3600),
    Option("gateway", "proxy_jump", True, "bool", "Accept ProxyJump (ssh -J) by terminating the inner SSH with a host certificate from the gateway's CA, so the session is recorded; false: refuse it."),
    Option("gateway", "ca_key", "", "str", "The gateway's host CA private key file (ProxyJump). Empty: <data_dir>/gateway_ca_key (generated, 0600)."),
)


def _check_roles(values: tuple[str, ...]) -> str | None:
    for item in values:
        if item not in ("admin", "auditor", "user"):
            return f"{item!r} is not a role (admin, auditor, user)"
    return None


def _default(section: str, name: str) -> Any:
    """The default OPTIONS gives an option: the section dataclasses take their defaults from here."""
    for option in OPTIONS:
        if option.section == section and option.name == name:
            return option.default
    raise KeyError(f"{section}.{name}")  # a typo in a dataclass below: fails at import, never at run time


@dataclass(frozen=True)
class ServerConfig:
    """[server]: where the web server listens, its data and its secret."""

    host: str = _default("server", "host")
    port: int = _default("server", "port")
    data_dir: str = _default("server", "data_dir")
    secret: str = field(default=_default("server", "secret"), repr=False)  # never in a log or a traceback
    node_id: str = _default("server", "node_id")
    trusted_proxies: tuple[str, ...] = _default("server", "trusted_proxies")
    cookie_secure: str = _default("server", "cookie_secure")
    debug: bool = _default("server", "debug")
    idle_timeout: float = _default("server", "idle_timeout")
    body_timeout: float = _default("server", "body_timeout")
    event_loop: str = _default("server", "event_loop")
    min_open_files: int = _default("server", "min_open_files")


@dataclass(frozen=True, repr=False)
class DatabaseConfig:
    """[database]: the metadata store (url is resolved: never empty once loaded)."""

    url: str = _default("database", "url")
    timeout: float = _default("database", "timeout")

    def __repr__(self) -> str:
        # a mongodb:// URL may carry a password
        return f"DatabaseConfig(url={redact_url(self.url)!r}, timeout={self.timeout!r})"


@dataclass(frozen=True)
class AuthConfig:
    """[auth]: login lifetime, lockout and password rules."""

    session_ttl: int = _default("auth", "session_ttl")
    lockout_threshold: int = _default("auth", "lockout_threshold")
    lockout_window: int = _default("auth", "lockout_window")
    lockout_duration: int = _default("auth", "lockout_duration")
    require_totp: bool = _default("auth", "require_totp")
    password_min_length: int = _default("auth", "password_min_length")
    idle_ttl: int = _default("auth", "idle_ttl")
    token_ttl_default: int = _default("auth", "token_ttl_default")
    token_ttl_max: int = _default("auth", "token_ttl_max")
    require_mfa: bool = _default("auth", "require_mfa")

    @property
    def mfa_required(self) -> bool:
        """Whether a second factor is required (require_mfa, or its older name require_totp)."""
        return self.require_mfa or self.require_totp


@dataclass(frozen=True)
class TerminalConfig:
    """[terminal]: outbound SSH, session limits and recording."""

    connect_timeout: float = _default("terminal", "connect_timeout")
    keepalive_interval: int = _default("terminal", "keepalive_interval")
    idle_timeout: int = _default("terminal", "idle_timeout")
    max_sessions_per_user: int = _default("terminal", "max_sessions_per_user")
    max_session_duration: int = _default("terminal", "max_session_duration")
    policy_recheck_interval: float = _default("terminal", "policy_recheck_interval")
    reconnect_grace: float = _default("terminal", "reconnect_grace")
    slow_client_timeout: float = _default("terminal", "slow_client_timeout")
    locale: str = _default("terminal", "locale")
    records_dir: str = _default("terminal", "records_dir")
    record_input: bool = _default("terminal", "record_input")
    on_record_failure: str = _default("terminal", "on_record_failure")
    notify_monitored: bool = _default("terminal", "notify_monitored")
    retention_days: int = _default("terminal", "retention_days")
    ssh_window: int = _default("terminal", "ssh_window")
    output_budget: int = _default("terminal", "output_budget")
    monitor_queue_bytes: int = _default("terminal", "monitor_queue_bytes")


@dataclass(frozen=True)
class ModulesConfig:
    """[modules]: the drop-in folder and the executor's limits."""

    dir: str = _default("modules", "dir")
    max_runs: int = _default("modules", "max_runs")
    output_cap: int = _default("modules", "output_cap")
    host_concurrency: int = _default("modules", "host_concurrency")
    poll_interval: float = _default("modules", "poll_interval")


@dataclass(frozen=True, repr=False)
class HubConfig:
    """[hub]: the live-session registry, local or shared through Redis."""

    url: str = _default("hub", "url")
    heartbeat_interval: float = _default("hub", "heartbeat_interval")
    node_timeout: float = _default("hub", "node_timeout")

    def __repr__(self) -> str:
        # a redis:// URL may carry a password
        return (f"HubConfig(url={redact_url(self.url)!r}, heartbeat_interval={self.heartbeat_interval!r}, "
                f"node_timeout={self.node_timeout!r})")


@dataclass(frozen=True)
class SsoConfig:
    """[sso]: single sign-on (OpenID Connect, LDAP) and where its providers are described."""

    providers_file: str = _default("sso", "providers_file")
    public_url: str = _default("sso", "public_url")
    clock_skew: int = _default("sso", "clock_skew")
    http_timeout: float = _default("sso", "http_timeout")
    state_ttl: int = _default("sso", "state_ttl")
    required_for_roles: tuple[str, ...] = _default("sso", "required_for_roles")
    directory_recheck_interval: float = _default("sso", "directory_recheck_interval")


@dataclass(frozen=True)
class AccessConfig:
    """[access]: who approves access requests and held commands, and their time limits."""

    approver_roles: tuple[str, ...] = _default("access", "approver_roles")
    approvers: tuple[str, ...] = _default("access", "approvers")
    break_glass_roles: tuple[str, ...] = _default("access", "break_glass_roles")
    max_request_minutes: int = _default("access", "max_request_minutes")
    expiry_warning: int = _default("access", "expiry_warning")
    review_timeout: int = _default("access", "review_timeout")
    invite_minutes: int = _default("access", "invite_minutes")
    clock_file: str = _default("access", "clock_file")


@dataclass(frozen=True)
class GatewayConfig:
    """[gateway]: the SSH gateway (off unless listen is set) and its file transfer caps."""

    listen: str = _default("gateway", "listen")
    host_key: str = _default("gateway", "host_key")
    max_upload_bytes: int = _default("gateway", "max_upload_bytes")
    max_download_bytes: int = _default("gateway", "max_download_bytes")
    login_timeout: float = _default("gateway", "login_timeout")
    proxy_jump: bool = _default("gateway", "proxy_jump")
    ca_key: str = _default("gateway", "ca_key")


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "database": DatabaseConfig,
    "auth": AuthConfig,
    "terminal": TerminalConfig,
    "hub": HubConfig,
    "modules": ModulesConfig,
    "sso": SsoConfig,
    "access": AccessConfig,

    "gateway": GatewayConfig,
}


@dataclass(frozen=True)
class Config:
    """The validated configuration, one frozen object passed down from the app factory."""

    server: ServerConfig
    database: DatabaseConfig
    auth: AuthConfig
    terminal: TerminalConfig
    hub: HubConfig
    modules: ModulesConfig
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    secret: bytes = field(repr=False, default=b"")
    source: str = ""
    sso: SsoConfig = field(default_factory=SsoConfig)
    access: AccessConfig = field(default_factory=AccessConfig)

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
        value = float(raw) if option.kind == "float" and isinstance(raw, int) and not isinstance(raw, bool) else raw
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
            shown = "<hidden>" if option.name == "secret" else repr(redact_url(value) if option.name == "url" else value)
            raise ConfigError(f"config {where} = {shown}: {problem}")
    return value


# BASTION_* variables that are not options but are read on purpose; any other BASTION_* name that is not an
# option is a typo and refused, as an unknown option in the file is.
OTHER_ENV: frozenset[str] = frozenset({
    "BASTION_CONFIG",     # the configuration file (load_config)
    "BASTION_LOG_LEVEL",  # logging level of `bastion serve` (app.py)
    "BASTION_URL",        # `bastion run`: the bastion to submit to (client.py)
    "BASTION_TOKEN",      # `bastion run`: the API token (client.py)
})
OTHER_ENV_PREFIXES: tuple[str, ...] = ("BASTION_TEST_",)  # test-suite settings, e.g. BASTION_TEST_MONGODB_URI


def _check_env_names(env: Mapping[str, str]) -> None:
    known = {o.env for o in OPTIONS} | OTHER_ENV
    for name in sorted(env):
        if not name.startswith("BASTION_") or name in known or name.startswith(OTHER_ENV_PREFIXES):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else " (see bastion.conf for the list)"
        raise ConfigError(f"environment variable {name}: unknown option{hint}")


def default_database_url(data_dir: str) -> str:
    """The embedded database's URL: a file under data_dir (what an empty [database] url means)."""
    return f"sqlite:///{Path(data_dir) / 'bastion.db'}"


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
    _check_env_names(env)
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
    if not values["database"]["url"]:
        values["database"]["url"] = default_database_url(values["server"]["data_dir"])
    return Config(
        server=ServerConfig(**values["server"]),
        database=DatabaseConfig(**values["database"]),
        auth=AuthConfig(**values["auth"]),
        terminal=TerminalConfig(**values["terminal"]),
        hub=HubConfig(**values["hub"]),
        modules=ModulesConfig(**values["modules"]),
        gateway=GatewayConfig(**values["gateway"]),
        source=source,
        sso=SsoConfig(**values["sso"]),
        access=AccessConfig(**values["access"]),
    )


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
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", url)


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
