"""Task modules, runs and command envelopes."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from bastion import validation as v
from bastion.errors import Invalid, NotFound
from bastion.modules import TEMPLATE, check_module_id
from bastion.run_view import run_view
from bastion.store import ModuleState, page_bounds

from .base import APIHandler, BaseHandler, authenticated, role

RUN_STATUSES = ("queued", "running", "ok", "partial", "failed", "timeout", "cancelled")


def module_view(m: ModuleState) -> dict[str, Any]:
    doc = m.public()
    doc.pop("digest", None)
    return doc


def visible(m: ModuleState, roles: list[str]) -> bool:
    return m.state != "missing" and (not m.allowed_roles or any(r in roles for r in m.allowed_roles) or "admin" in roles)


class ModulesHandler(APIHandler):
    @authenticated
    async def get(self) -> None:
        items = [module_view(m) for m in await self.store.list_modules() if visible(m, self.principal.roles)]
        self.send({"items": items, "total": len(items)})


class ModuleHandler(APIHandler):
    @role("admin")
    async def patch(self, module_id: str) -> None:
        module = await self.store.get_module(check_module_id(module_id))
        if module is None:
            raise NotFound(f"module {module_id} not found")
        body = self.body()
        v.only_fields(body, ("enabled", "allowed_roles", "allowed_apps"))
        if "enabled" in body:
            module.enabled = v.boolean(body, "enabled")
            if module.state in ("enabled", "disabled"):
                module.state = "enabled" if module.enabled else "disabled"
        if "allowed_roles" in body:
            module.allowed_roles = v.roles(body, "allowed_roles") if body["allowed_roles"] else []
        if "allowed_apps" in body:
            apps = body["allowed_apps"]
            if not isinstance(apps, list) or not all(isinstance(a, str) and v.ID_RE.match(a) for a in apps):
                raise Invalid("allowed_apps must be a list of category ids")
            for app_id in apps:
                if await self.store.get_app(app_id) is None:
                    raise NotFound(f"category {app_id!r} not found")
            module.allowed_apps = sorted(set(apps))
        await self.store.save(module)
        await self.audit.record("module.updated", actor=self.actor, target=module.name, enabled=module.enabled,
                                allowed_roles=module.allowed_roles, allowed_apps=module.allowed_apps)
        self.send(module_view(module))


class ModuleReserveHandler(APIHandler):
    @role("admin")
    async def post(self) -> None:
        module_id = await self.services.registry.next_free_id()
        # held as a placeholder so the next reservation gets another id; the file's arrival fills it in
        await self.store.put_module(ModuleState(id=module_id, name=f"Module {module_id}", state="missing",
                                                error="reserved; the file is not saved yet"))
        await self.audit.record("module.reserved", actor=self.actor, target=f"Mid_{module_id}.py")
        self.send({"id": module_id, "filename": f"Mid_{module_id}.py",
                   "template": TEMPLATE.format(name=f"Module {module_id}")}, status=201)


class ModuleRunsHandler(APIHandler):
    write_scope = "runs"

    @authenticated
    async def post(self, module_id: str) -> None:
        module_id = check_module_id(module_id)
        body = self.body()
        v.only_fields(body, ("host_ids", "params"))
        host_ids = body.get("host_ids")
        if not isinstance(host_ids, list) or not all(isinstance(h, str) and v.ID_RE.match(h) for h in host_ids):
            raise Invalid("host_ids must be a list of host id strings")
        params = body.get("params", {})
        if not isinstance(params, dict):
            raise Invalid("params must be an object")
        envelope = self.services.runs.seal_for_web(self.principal.user, module_id, host_ids, params)
        run = await self.services.runs.accept(envelope, self.principal.user, via="web" if self.principal.via == "cookie" else "api",
                                              address=self.client_address)
        self.send({"run_id": run.id, **run.public()}, status=201)


class CommandsHandler(APIHandler):
    write_scope = "runs"

    @authenticated
    async def post(self) -> None:
        body = self.body()
        v.only_fields(body, ("envelope",))
        run = await self.services.runs.accept(body.get("envelope"), self.principal.user, via="cli",
                                              address=self.client_address)
        self.send({"run_id": run.id, **run.public()}, status=201)


class RunsHandler(APIHandler):
    @authenticated
    async def get(self) -> None:
        arg = self.arg
        # users see their own runs; auditors and admins see everyone's, optionally filtered by ?user=
        user_id = await self.user_filter() if self.principal.has_role("auditor", "admin") else self.principal.user.id
        module_id = check_module_id(arg("module_id")) if arg("module_id") else None
        status = arg("status")
        if status and status not in RUN_STATUSES:
            raise Invalid(f"status must be one of {', '.join(RUN_STATUSES)}")
        limit, offset = page_bounds(arg("limit"), arg("offset"))
        page = await self.store.list_runs(user_id=user_id, module_id=module_id, status=status, limit=limit, offset=offset)
        self.send_page(page, lambda r: run_view(r, with_results=False))


class RunHandler(APIHandler):
    @authenticated
    async def get(self, run_id: str) -> None:
        run = await self.load_run(run_id)
        # while it executes on this node, the executor's copy is fresher than the store's (saved every 0.2 s)
        run = self.services.executor.live_run(run.id) or run
        since = self.arg("since")
        if since is not None and not (since.isascii() and since.isdigit() and len(since) <= 12):
            raise Invalid("since must be a result sequence number (0 or more)")
        self.send(run_view(run, int(since) if since is not None else None))


class RunCancelHandler(APIHandler):
    write_scope = "runs"

    @authenticated
    async def post(self, run_id: str) -> None:
        run = await self.load_run(run_id)
        run = await self.services.runs.cancel(run, self.principal.user, address=self.client_address)
        self.send(run_view(run, with_results=False))


class RunRerunHandler(APIHandler):
    write_scope = "runs"

    @authenticated
    async def post(self, run_id: str) -> None:
        run = await self.load_run(run_id)
        body = self.body() if self.request.body.strip() else {}
        v.only_fields(body, ("params",))
        new = await self.services.runs.rerun_failed(run, self.principal.user, body.get("params"),
                                                    via="web" if self.principal.via == "cookie" else "api",
                                                    address=self.client_address)
        self.send({"run_id": new.id, **run_view(new)}, status=201)


class ModulesPage(BaseHandler):
    @authenticated
    async def get(self) -> None:
        modules = [m for m in await self.store.list_modules() if visible(m, self.principal.roles)]
        by_category: dict[str, list[ModuleState]] = defaultdict(list)
        for m in modules:
            by_category[m.category or "Other"].append(m)
        hosts = await self.inventory.hosts_for(self.principal.user)
        apps = {a.id: a.name for a in (await self.store.list_apps(limit=500)).items}
        self.page("modules.html", categories=sorted(by_category.items()), hosts=hosts, apps=apps,
                  is_admin=self.principal.has_role("admin"))


class RunPage(BaseHandler):
    @authenticated
    async def get(self, run_id: str) -> None:
        run = await self.load_run(run_id)
        user = self.principal.user
        self.page("run.html", run=run, may_cancel=run.user_id == user.id or self.principal.has_role("admin"))


class RunsPage(BaseHandler):
    @authenticated
    async def get(self) -> None:
        self.page("runs.html", statuses=RUN_STATUSES, modules=await self.store.list_modules())


default_handlers = [
    (r"/api/modules", ModulesHandler),
    (r"/api/modules/reserve", ModuleReserveHandler),
    (r"/api/modules/([^/]+)", ModuleHandler),
    (r"/api/modules/([^/]+)/runs", ModuleRunsHandler),
    (r"/api/commands", CommandsHandler),
    (r"/api/runs", RunsHandler),
    (r"/api/runs/([^/]+)", RunHandler),
    (r"/api/runs/([^/]+)/cancel", RunCancelHandler),
    (r"/api/runs/([^/]+)/rerun", RunRerunHandler),
    (r"/modules", ModulesPage),
    (r"/runs", RunsPage),
    (r"/runs/([^/]+)", RunPage),
]
