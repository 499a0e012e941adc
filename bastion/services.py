"""The collaborators handlers use, built once by the app's composition root."""
from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import jinja2

from .audit import Audit
from .auth import AuthService
from .config import Config
from .inventory import Inventory
from .store import Store
from .vault import Vault


@dataclass
class Services:
    """Everything a handler may reach; tests build their own."""

    config: Config
    store: Store
    vault: Vault
    audit: Audit
    auth: AuthService
    inventory: Inventory
    templates: jinja2.Environment
    cpu: ThreadPoolExecutor  # bounded pool for CPU-bound work (password hashing) off the loop
    hub: Any = None
    terminals: Any = None
    registry: Any = None
    executor: Any = None
    runs: Any = None
    trusted_proxies: tuple[Any, ...] = field(default_factory=tuple)


def build_services(config: Config, store: Store, template_dir: str) -> Services:
    """Wire the domain objects together (the store is opened by the caller)."""
    vault = Vault(config.secret)
    audit = Audit(store)
    cpu = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bastion-cpu")
    auth = AuthService(config, store, vault, audit, cpu)
    templates = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir),
                                   autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                                   undefined=jinja2.StrictUndefined)
    nets = tuple(ipaddress.ip_network(n, strict=False) for n in config.server.trusted_proxies)
    return Services(config=config, store=store, vault=vault, audit=audit, auth=auth,
                    inventory=Inventory(store, vault, audit), templates=templates, cpu=cpu,
                    trusted_proxies=nets)
