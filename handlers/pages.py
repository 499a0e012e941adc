"""HTML pages. Lists are rendered server-side (autoescaped); forms post JSON to the API (static/app.js)."""
from __future__ import annotations

import time
from collections import defaultdict
from urllib.parse import urlencode, urlparse

from bastion.auth import token_view
from bastion.errors import NotFound
from bastion.store import Page, page_bounds

from .base import BaseHandler, authenticated, enrolling, public, role


def _safe_next(target: str | None) -> str:
    """Only local paths are followed after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parsed = urlparse(target)
    return parsed.path + (("?" + parsed.query) if parsed.query else "")


def host_matches(host, q: str, category: str) -> bool:  # noqa: ANN001 - a Host record
    """Whether every word of a search is in the host's name, address, category or tags."""
    text = " ".join([host.name, f"{host.address}:{host.port}", category, *host.tags]).lower()
    return all(word in text for word in q.lower().split())


class LoginPage(BaseHandler):
    @public
    def get(self) -> None:
        nxt = _safe_next(self.get_query_argument("next", None))
        if self.principal:
            self.redirect(nxt)
            return
        self.xsrf_token  # noqa: B018 - sets the _xsrf cookie the login form needs
        sso = self.services.sso.buttons if self.services.sso else []
        self.page("login.html", next=nxt, totp_step=self.half_login is not None, sso=sso, sso_error="")


class HomePage(BaseHandler):
    @authenticated
    async def get(self) -> None:
        hosts = await self.inventory.hosts_for(self.principal.user)
        apps = {a.id: a for a in (await self.store.list_apps(limit=500)).items}
        groups: dict[str, list] = defaultdict(list)
        for host in hosts:
            groups[apps[host.app_id].name if host.app_id in apps else "Uncategorised"].append(host)
        setup = None
        if not hosts and self.principal.has_role("admin"):  # first run: what is still missing before a terminal
            setup = {"apps": len(apps), "creds": (await self.store.list_credentials(limit=1)).total,
                     "hosts": (await self.store.list_hosts(limit=1)).total}
        self.page("home.html", groups=sorted(groups.items()), host_count=len(hosts), setup=setup)


class AccountPage(BaseHandler):
    @enrolling
    async def get(self) -> None:
        tokens = [token_view(t, self.config) for t in await self.store.list_tokens(self.principal.user.id)]
        passkeys = await self.store.passkeys_of_user(self.principal.user.id)
        from bastion.gateway.keys import key_view
        ssh_keys = [key_view(k) for k in await self.store.ssh_keys_of_user(self.principal.user.id)]
        self.page("account.html", tokens=tokens, require_totp=self.config.auth.mfa_required, now=time.time(), passkeys=passkeys,
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
        q = (self.get_query_argument("q", "") or "").strip()[:64]
        if q:  # every word in the host's name, address, category or tags
            names = {a.id: a.name for a in apps}
            found = [h for h in await self.store.all_hosts() if host_matches(h, q, names.get(h.app_id, ""))]
            hosts = Page(items=found[offset:offset + limit], total=len(found))
        else:
            hosts = await self.store.list_hosts(limit=limit, offset=offset)
        self.page("inventory.html", apps=apps, creds=creds, hosts=hosts, app_names={a.id: a.name for a in apps},
                  cred_names={c.id: c.name for c in creds}, limit=limit, offset=offset, q=q)


class GrantsPage(BaseHandler):
    @role("admin")
    async def get(self) -> None:
        users = (await self.store.list_users(limit=500)).items
        apps = (await self.store.list_apps(limit=500)).items
        hosts = await self.store.all_hosts()
        limit, offset = page_bounds(self.get_query_argument("limit", None), self.get_query_argument("offset", None), default=100)
        grants = await self.store.list_grants(limit=limit, offset=offset)
        self.page("grants.html", users=users, apps=apps, hosts=hosts, grants=grants, limit=limit, offset=offset,
                  user_names={u.id: u.username for u in users}, app_names={a.id: a.name for a in apps},
                  host_names={h.id: h.name for h in hosts})


class AuditPage(BaseHandler):
    @role("auditor", "admin")
    async def get(self) -> None:
        from bastion.audit import ACTIONS
        from bastion.validation import day_range
        action = self.get_query_argument("action", "") or None
        actor = (self.get_query_argument("actor", "") or "")[:64] or None
        if action not in ACTIONS:
            action = None
        date_from, date_to = self.get_query_argument("from", "")[:10], self.get_query_argument("to", "")[:10]
        since, until = day_range(date_from, date_to)  # whole UTC days, like the other pages' date filters
        limit, offset = page_bounds(self.get_query_argument("limit", None), self.get_query_argument("offset", None))
        events = await self.store.list_events(action=action, actor=actor, since=since, until=until, limit=limit,
                                              offset=offset)
        filters = {"action": action or "", "actor": actor or "", "from": date_from, "to": date_to}
        export = {"action": action or "", "actor": actor or "", "since": since or "", "until": until or "",
                  "format": "csv"}
        self.page("audit.html", events=events, actions=sorted(ACTIONS), action=action or "", actor=actor or "",
                  date_from=date_from, date_to=date_to, limit=limit, offset=offset,
                  page_query=urlencode({k: x for k, x in filters.items() if x}),
                  export_query=urlencode({k: x for k, x in export.items() if x}))


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
