"""Tornado handlers grouped by audience; each module ends with its `default_handlers`."""
from __future__ import annotations

from . import admin, audit, auth, inventory, pages


def all_handlers() -> list[tuple]:
    """Every route of the app, joined from the handler modules."""
    routes: list[tuple] = []
    for module in (auth, admin, inventory, audit, pages):
        routes.extend(module.default_handlers)
    for name in ("terminal", "sessions", "commands", "modules", "ops", "k8s", "ui", "sso", "passkeys", "foureyes",
                 "gateway"):
        try:
            module = __import__(f"handlers.{name}", fromlist=["default_handlers"])
        except ModuleNotFoundError as exc:
            if exc.name != f"handlers.{name}":
                raise
            continue
        routes.extend(module.default_handlers)
    return routes
