"""The collaborators handlers use, every one built complete and typed by the composition root (bastion.app)."""
from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jinja2

from .audit import Audit
from .auth import AuthService
from .commands import RuleCache
from .config import Config
from .executor import Executor
from .foureyes import FourEyes
from .hostkeys import HostKeyTrust
from .hub import SessionHub
from .inventory import Inventory
from .journal import Journal
from .k8s.service import PodTerminals
from .logins import RecentLogins
from .modules import ModuleRegistry
from .runs import RunService
from .sessions.engine import SessionEngine
from .passkeys import PasskeyService
from .sso import SsoService
from .store import Store
from .vault import Vault

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Core:
    """What every entry point needs (the CLI stops here): store, journal, vault, audit, accounts, inventory."""

    config: Config
    store: Store
    journal: Journal
    vault: Vault
    audit: Audit
    auth: AuthService
    inventory: Inventory
    trust: HostKeyTrust
    recent_logins: RecentLogins
    cpu: ThreadPoolExecutor  # bounded pool for CPU-bound work (password hashing, hashing files) off the loop
    io: ThreadPoolExecutor  # bounded pool for file I/O (recordings, journal)


@dataclass(frozen=True)
class Services(Core):
    """Everything a handler may reach (the core and the live services); built by `open_bastion` for `serve` and
    for the tests alike."""

    templates: jinja2.Environment
    hub: SessionHub
    rules: RuleCache
    sessions: SessionEngine
    registry: ModuleRegistry
    executor: Executor
    runs: RunService
    trusted_proxies: tuple[Network, ...]
    pods: PodTerminals  # Kubernetes clusters, pod grants and pod terminals
    foureyes: FourEyes  # access requests, command review, joined sessions, pause
    sso: SsoService | None = None  # single sign-on (None only where a test builds Services without it)
    passkeys: PasskeyService | None = None  # WebAuthn second factor and passwordless login
    gateway: Any = None  # bastion.gateway.SSHGateway when [gateway] listen is set (typed Any: no import cycle)


def make_templates(template_dir: str) -> jinja2.Environment:
    """The Jinja2 environment (autoescape on, undefined names are errors)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir),
                              autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                              undefined=jinja2.StrictUndefined)


def trusted_networks(config: Config) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in config.server.trusted_proxies)
