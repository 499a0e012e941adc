"""HTML pages. Lists are rendered server-side (autoescaped); forms post JSON to the API (static/app.js)."""
from __future__ import annotations

import time
from collections import defaultdict
from urllib.parse import urlparse

from bastion.auth import token_view
from bastion.errors import NotFound
from bastion.store import page_bounds

from .base import BaseHandler, authenticated, enrolling, public, role


def _safe_next(target: str | None) -> str:
    """Only local paths are followed after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parsed = urlparse(target)
    return parsed.path + (("?" + parsed.query) if parsed.query else "")


class LoginPage(BaseHandler):
    @public
    def get(self) -> None:
        nxt = _safe_next(self.get_query_argument("next", None))
        if self.principal:
            self.redirect(nxt)
            return
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie the login form needs
        self.page("login.html", next=nxt, totp_step=self.half_login is not None)


class HomePage(BaseHandler):
    @authenticated
    async def get(self) -> None:
        hosts = await self.inventory.hosts_for(self.principal.user)
        apps = {a.id: a for a in (await self.store.list_apps(limit=500)).items}
        groups: dict[str, list] = defaultdict(list)
        for host in hosts:
            groups[apps[host.app_id].name if host.app_id in apps else "Uncategorised"].append(host)
        self.page("home.html", groups=sorted(groups.items()), host_count=len(hosts))


class AccountPage(BaseHandler):
    @enrolling
    async def get(self) -> None:
        tokens = [token_view(t, self.config) for t in await self.store.list_tokens(self.principal.user.id)]
        from bastion.gateway.keys import key_view
        ssh_keys = [key_view(k) for k in await self.store.ssh_keys_of_user(self.principal.user.id)]
        self.page("account.html", tokens=tokens, require_totp=self.config.auth.require_totp, now=time.time(),
                  ttl_default=min(self.config.auth.token_ttl_default, self.config.auth.token_ttl_max),
                  ttl_max=self.config.auth.token_ttl_max, ssh_keys=ssh_keys, gateway=self.services.gateway)


class UsersPage(BaseHandler):
    @role("admin")
    async def get(self) -> None:
        limit, offset = page_bounds(self.get_query_argument("limit", None), self.get_query_argument("offset", None), default=100)
        users = await self.store.list_users(limit=limit, offset=offset)
        locks = await self.store.list_locked()
        self.page("users.html", users=users, locks=locks, locked={f.id for f in locks}, limit=limit, offset=offset)


class InventoryPage(BaseHandler):
    @role("admin")
    async def get(self) -> None:
        apps = (await self.store.list_apps(limit=500)).items
        creds = (await self.store.list_credentials(limit=500)).items
        limit, offset = page_bounds(self.get_query_argument("limit", None), self.get_query_argument("offset", None), default=100)
        hosts = await self.store.list_hosts(limit=limit, offset=offset)
        self.page("inventory.html", apps=apps, creds=creds, hosts=hosts, app_names={a.id: a.name for a in apps},
                  cred_names={c.id: c.name for c in creds}, limit=limit, offset=offset)


class GrantsPage(BaseHandler):
    @role("admin")
    async def get(self) -> None:
        users = (await self.store.list_users(limit=500)).items
        apps = (await self.store.list_apps(limit=500)).items
        hosts = await self.store.all_hosts()
        grants = await self.store.list_grants(limit=500)
        self.page("grants.html", users=users, apps=apps, hosts=hosts, grants=grants,
                  user_names={u.id: u.username for u in users}, app_names={a.id: a.name for a in apps},
                  host_names={h.id: h.name for h in hosts})


class AuditPage(BaseHandler):
    @role("auditor", "admin")
    async def get(self) -> None:
        from bastion.audit import ACTIONS
        action = self.get_query_argument("action", "") or None
        actor = (self.get_query_argument("actor", "") or "")[:64] or None
        if action not in ACTIONS:
            action = None
        limit, offset = page_bounds(self.get_query_argument("limit", None), self.get_query_argument("offset", None))
        events = await self.store.list_events(action=action, actor=actor, limit=limit, offset=offset)
        self.page("audit.html", events=events, actions=sorted(ACTIONS), action=action or "", actor=actor or "",
                  limit=limit, offset=offset)


class NotFoundPage(BaseHandler):
    """Any unknown path: our 404 (JSON for /api/, a page otherwise) with the usual security headers."""

    @public
    def get(self, *args: str) -> None:
        raise NotFound("no such page or API route")

    @public
    def post(self, *args: str) -> None:
        raise NotFound("no such page or API route")

    def check_xsrf_cookie(self) -> None:
        pass  # nothing happens here; a 404 must not turn into a 403


default_handlers = [
    (r"/login", LoginPage),
    (r"/", HomePage),
    (r"/account", AccountPage),
    (r"/admin/users", UsersPage),
    (r"/admin/inventory", InventoryPage),
    (r"/admin/grants", GrantsPage),
    (r"/audit", AuditPage),
]
