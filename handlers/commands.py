"""Commands: per-session lists, fleet-wide search, filter rules, playback and verification."""
from __future__ import annotations

import asyncio

from bastion import editing
from bastion import validation as v
from bastion.errors import Invalid, NotFound
from bastion.playback import recording_file, verify_session
from bastion.store import Command, page_bounds

from .base import CSP, APIHandler, BaseHandler, role
from .sessions import SessionsMixin
from .ui import ExportMixin


class SessionCommandsHandler(SessionsMixin, APIHandler):
    @role("auditor", "admin")
    async def get(self, session_id: str) -> None:
        record = await self.load_session(session_id)
        commands = await self.store.commands_of_session(record.id)
        self.send({"items": [c.public() for c in commands], "total": len(commands)})


class SessionVerifyHandler(SessionsMixin, APIHandler):
    @role("auditor", "admin")
    async def get(self, session_id: str) -> None:
        record = await self.load_session(session_id)
        # recomputing the chain costs CPU in proportion to the recording: off the loop
        result = await asyncio.get_running_loop().run_in_executor(self.services.cpu, verify_session, self.config, record)
        self.send({"ok": result.ok, "lines": result.lines, "first_bad_line": result.first_bad_line,
                   "message": result.message})


class CommandSearchHandler(ExportMixin, APIHandler):
    @role("auditor", "admin")
    async def get(self) -> None:
        arg = self.arg
        q = arg("q")
        if q is not None and (len(q) > 200 or "\x00" in q):
            raise Invalid("q must be at most 200 characters")
        user_id = await self.user_filter()
        host_id = v.record_id(arg("host_id"), "host_id") if arg("host_id") else None
        blocked = self.flag_arg("blocked")
        limit, offset = page_bounds(arg("limit"), arg("offset"))
        since, until = v.query_float(arg("since"), "since"), v.query_float(arg("until"), "until")
        await self.send_listing(lambda lim, off: self.store.search_commands(
            q, user_id=user_id, host_id=host_id, blocked=blocked, since=since, until=until, limit=lim, offset=off),
            Command, "commands", limit, offset)


class RulesHandler(APIHandler):
    @role("admin")
    async def get(self) -> None:
        rules = await self.store.list_rules()
        self.send({"items": [r.public() for r in rules], "total": len(rules)})

    @role("admin")
    async def post(self) -> None:
        rule = await editing.create_rule(self.store, self.audit, self.body(), self.actor)
        self.services.rules.changed()
        self.send(rule.public(), status=201)


class RuleHandler(APIHandler):
    @role("admin")
    async def patch(self, rule_id: str) -> None:
        rule = await editing.update_rule(self.store, self.audit, rule_id, self.body(), self.actor)
        self.services.rules.changed()
        self.send(rule.public())

    @role("admin")
    async def delete(self, rule_id: str) -> None:
        rule = await self.store.delete_rule(v.record_id(rule_id, "rule id"))
        self.services.rules.changed()
        await self.audit.record("rule.deleted", actor=self.actor, target=rule.name)
        self.send({"ok": True})


class PlayPage(SessionsMixin, BaseHandler):
    # asciinema-player's terminal is WebAssembly: allow compiling wasm here, and nowhere else
    csp = CSP.replace("script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'")

    @role("auditor", "admin")
    async def get(self, session_id: str) -> None:
        record = await self.load_session(session_id)
        try:
            recording_file(self.config, record)
            available = True
        except NotFound:
            available = False
        await self.audit.record("recording.opened", actor=self.actor, target=record.host_name, session=record.id,
                                user=record.username, via="player")
        self.page("play.html", session=record, available=available)


class SearchPage(BaseHandler):
    @role("auditor", "admin")
    async def get(self) -> None:
        self.page("search.html", users=(await self.store.list_users(limit=500)).items, hosts=await self.store.all_hosts())


class RulesPage(BaseHandler):
    @role("admin")
    async def get(self) -> None:
        self.page("rules.html", rules=await self.store.list_rules(), apps=(await self.store.list_apps(limit=500)).items,
                  hosts=await self.store.all_hosts(), roles=v.ROLES)


default_handlers = [
    (r"/api/sessions/([^/]+)/commands", SessionCommandsHandler),
    (r"/api/sessions/([^/]+)/verify", SessionVerifyHandler),
    (r"/api/commands/search", CommandSearchHandler),
    (r"/api/command-rules", RulesHandler),
    (r"/api/command-rules/([^/]+)", RuleHandler),
    (r"/play/([^/]+)", PlayPage),
    (r"/commands", SearchPage),
    (r"/admin/rules", RulesPage),
]
