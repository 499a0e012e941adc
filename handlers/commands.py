"""Commands: per-session lists, fleet-wide search, filter rules, playback and verification."""
from __future__ import annotations

import asyncio

from bastion import validation as v
from bastion.commands import compile_rule
from bastion.errors import Invalid, NotFound
from bastion.playback import recording_file, verify_session
from bastion.store import CommandRule, page_bounds

from .base import CSP, APIHandler, BaseHandler, role
from .sessions import SessionsMixin

RULE_FIELDS = ("name", "kind", "pattern", "action", "scope", "scope_value", "priority", "enabled")


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


class CommandSearchHandler(APIHandler):
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
        page = await self.store.search_commands(q, user_id=user_id, host_id=host_id, blocked=blocked,
                                                since=v.query_float(arg("since"), "since"),
                                                until=v.query_float(arg("until"), "until"), limit=limit, offset=offset)
        self.send_page(page)


class RulesHandler(APIHandler):
    @role("admin")
    async def get(self) -> None:
        rules = await self.store.list_rules()
        self.send({"items": [r.public() for r in rules], "total": len(rules)})

    @role("admin")
    async def post(self) -> None:
        body = self.body()
        v.only_fields(body, RULE_FIELDS)
        rule = CommandRule(
            name=v.text(body, "name", pattern=v.NAME_RE, rule="must be 1-64 letters, digits, spaces or .:@()+-_"),
            kind=v.text(body, "kind", required=False, default="regex", max_len=10),
            pattern=v.text(body, "pattern", max_len=1000),
            action=v.text(body, "action", required=False, default="deny", max_len=10),
            scope=v.text(body, "scope", required=False, default="all", max_len=10),
            scope_value=v.text(body, "scope_value", required=False, max_len=64),
            priority=v.integer(body, "priority", required=False, minimum=0, maximum=100000, default=100),
            enabled=v.boolean(body, "enabled", default=True))
        if rule.kind not in ("regex", "words"):
            raise Invalid("kind must be regex or words")
        if rule.action not in ("deny", "warn", "review"):
            raise Invalid("action must be deny, warn or review")
        if rule.scope not in ("all", "app", "host", "role"):
            raise Invalid("scope must be all, app, host or role")
        compile_rule(rule.kind, rule.pattern)  # a pattern that does not compile is refused here
        if rule.scope == "all":
            rule.scope_value = ""
        elif rule.scope == "role" and rule.scope_value not in v.ROLES:
            raise Invalid(f"scope_value must be a role: {', '.join(v.ROLES)}")
        elif rule.scope == "app" and await self.store.get_app(v.record_id(rule.scope_value, "scope_value")) is None:
            raise NotFound("category not found")
        elif rule.scope == "host" and await self.store.get_host(v.record_id(rule.scope_value, "scope_value")) is None:
            raise NotFound("host not found")
        await self.store.create_rule(rule)
        self.services.rules.changed()
        await self.audit.record("rule.created", actor=self.actor, target=rule.name, pattern=rule.pattern,
                                rule_action=rule.action, scope=rule.scope)
        self.send(rule.public(), status=201)


class RuleHandler(APIHandler):
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
