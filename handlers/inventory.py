"""Categories, credentials, hosts and grants."""
from __future__ import annotations

from bastion import editing
from bastion import validation as v
from bastion.store import page_bounds

from .base import APIHandler, authenticated, role


class PagedMixin:
    def paging(self, default: int = 100) -> tuple[int, int]:
        return page_bounds(self.get_query_argument("limit", None), self.get_query_argument("offset", None), default=default)  # type: ignore[attr-defined]


class AppsHandler(PagedMixin, APIHandler):
    @authenticated
    async def get(self) -> None:
        limit, offset = self.paging()
        self.send_page(await self.store.list_apps(limit=limit, offset=offset))

    @role("admin")
    async def post(self) -> None:
        self.send((await self.inventory.create_app(self.body(), self.actor)).public(), status=201)


class AppHandler(APIHandler):
    @role("admin")
    async def patch(self, app_id: str) -> None:
        self.send((await editing.update_app(self.inventory, app_id, self.body(), self.actor)).public())

    @role("admin")
    async def delete(self, app_id: str) -> None:
        await self.inventory.delete_app(app_id, self.actor)
        self.send({"ok": True})


class CredentialsHandler(PagedMixin, APIHandler):
    @role("admin")
    async def get(self) -> None:
        limit, offset = self.paging()
        self.send_page(await self.store.list_credentials(limit=limit, offset=offset))

    @role("admin")
    async def post(self) -> None:
        self.send((await self.inventory.create_credential(self.body(), self.actor)).public(), status=201)


class CredentialHandler(APIHandler):
    @role("admin")
    async def patch(self, cred_id: str) -> None:
        self.send((await editing.update_credential(self.inventory, cred_id, self.body(), self.actor)).public())

    @role("admin")
    async def delete(self, cred_id: str) -> None:
        await self.inventory.delete_credential(cred_id, self.actor)
        self.send({"ok": True})


class HostsHandler(PagedMixin, APIHandler):
    @authenticated
    async def get(self) -> None:
        app_id = self.get_query_argument("app_id", None)
        if app_id:
            v.record_id(app_id, "app_id")
        if self.principal.has_role("admin"):
            limit, offset = self.paging()
            self.send_page(await self.store.list_hosts(app_id=app_id, limit=limit, offset=offset))
            return
        hosts = [h for h in await self.inventory.hosts_for(self.principal.user) if not app_id or h.app_id == app_id]
        self.send({"items": [h.public() for h in hosts], "total": len(hosts)})

    @role("admin")
    async def post(self) -> None:
        self.send((await self.inventory.create_host(self.body(), self.actor)).public(), status=201)


class HostHandler(APIHandler):
    @authenticated
    async def get(self, host_id: str) -> None:
        if self.principal.has_role("admin"):
            host = await self.inventory.get_host(host_id)
        else:
            host = await self.inventory.openable_host(self.principal.user, host_id, address=self.client_address,
                                                      purpose="view")
        self.send(host.public())

    @role("admin")
    async def patch(self, host_id: str) -> None:
        self.send((await self.inventory.update_host(host_id, self.body(), self.actor)).public())

    @role("admin")
    async def delete(self, host_id: str) -> None:
        await self.inventory.delete_host(host_id, self.actor)
        self.send({"ok": True})


class HostAcceptKeyHandler(APIHandler):
    @role("admin")
    async def post(self, host_id: str) -> None:
        self.send((await self.inventory.accept_offered_key(host_id, self.actor)).public())


class GrantsHandler(PagedMixin, APIHandler):
    @role("admin")
    async def get(self) -> None:
        user_id = self.get_query_argument("user_id", None)
        if user_id:
            v.record_id(user_id, "user_id")
        limit, offset = self.paging()
        self.send_page(await self.store.list_grants(user_id=user_id, limit=limit, offset=offset))

    @role("admin")
    async def post(self) -> None:
        self.send((await self.inventory.create_grant(self.body(), self.actor)).public(), status=201)


class GrantHandler(APIHandler):
    @role("admin")
    async def delete(self, grant_id: str) -> None:
        grant = await self.inventory.delete_grant(grant_id, self.actor)
        await self.hub.policy_changed(grant.user_id, by=self.actor, why="access revoked")
        self.send({"ok": True})


default_handlers = [
    (r"/api/apps", AppsHandler),
    (r"/api/apps/([^/]+)", AppHandler),
    (r"/api/credentials", CredentialsHandler),
    (r"/api/credentials/([^/]+)", CredentialHandler),
    (r"/api/hosts", HostsHandler),
    (r"/api/hosts/([^/]+)", HostHandler),
    (r"/api/hosts/([^/]+)/accept-key", HostAcceptKeyHandler),
    (r"/api/grants", GrantsHandler),
    (r"/api/grants/([^/]+)", GrantHandler),
]
