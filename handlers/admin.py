"""User administration and lockouts (admin)."""
from __future__ import annotations

from urllib.parse import unquote

from bastion import editing
from bastion import validation as v
from bastion.errors import Invalid, NotFound
from bastion.store import page_bounds

from .base import APIHandler, BaseHandler, role


class UsersHandler(APIHandler):
    @role("admin")
    async def get(self) -> None:
        limit, offset = page_bounds(self.get_query_argument("limit", None), self.get_query_argument("offset", None), default=100)
        page = await self.store.list_users(limit=limit, offset=offset)
        locked = {f.id for f in await self.store.list_locked()}
        self.send_page(page, lambda u: {**u.public(), "locked": f"user:{u.username}" in locked})

    @role("admin")
    async def post(self) -> None:
        body = self.body()
        v.only_fields(body, ("username", "password", "roles"))
        user = await self.auth.create_user(v.text(body, "username", max_len=32), v.text(body, "password", max_len=256),
                                           v.roles(body), actor=self.actor)
        self.send(user.public(), status=201)


class UserHandler(APIHandler):
    async def _user(self, user_id: str):  # noqa: ANN202
        user = await self.store.get_user(v.record_id(user_id, "user id"))
        if user is None:
            raise NotFound(f"user {user_id!r} not found")
        return user

    @role("admin")
    async def get(self, user_id: str) -> None:
        self.send((await self._user(user_id)).public())

    @role("admin")
    async def patch(self, user_id: str) -> None:
        body = self.body()
        v.only_fields(body, ("roles", "disabled", "password", "totp"))
        user = await self._user(user_id)
        if not body:
            raise Invalid("nothing to change")
        roles = v.roles(body) if "roles" in body else None  # type-checked before anything looks inside it
        disabled = v.boolean(body, "disabled") if body.get("disabled") is not None else None
        if user.id == self.principal.user.id and (disabled or (roles is not None and "admin" not in roles)):
            raise Invalid("you cannot disable yourself or remove your own admin role")
        if "password" in body:
            await self.auth.set_password(user, v.text(body, "password", max_len=256), actor=self.actor)
            self.services.recent_logins.forget_user(user.id)  # set_password ended every login of the user
        if body.get("totp") is False:
            user = await self.auth.disable_totp(user, actor=self.actor)
        if roles is not None or disabled is not None:
            user = await self.auth.update_user(user, roles=roles, disabled=disabled, actor=self.actor)
            self.services.recent_logins.forget_user(user.id)
            if user.disabled:  # every node ends the user's live sessions (and re-checks periodically)
                await self.hub.policy_changed(user.id, by=self.actor, why="user disabled")
        self.send(user.public())

    @role("admin")
    async def delete(self, user_id: str) -> None:
        user = await editing.delete_user(self.store, self.audit, user_id, actor=self.principal.user)
        self.services.recent_logins.forget_user(user.id)
        await self.hub.policy_changed(user.id, by=self.actor, why="user deleted")  # their live sessions end
        self.send({"ok": True})


class LocksHandler(APIHandler):
    @role("admin")
    async def get(self) -> None:
        locks = await self.store.list_locked()
        self.send({"items": [{"key": f.id, "failures": f.count, "locked_until": f.locked_until} for f in locks],
                   "total": len(locks)})


class LockHandler(APIHandler):
    @role("admin")
    async def delete(self, key: str) -> None:
        await self.auth.clear_lock(unquote(key), actor=self.actor)
        self.send({"ok": True})


class LoginRulesHandler(APIHandler):
    @role("admin")
    async def get(self) -> None:
        rules = await self.store.list_login_rules()
        self.send({"items": [r.public() for r in rules], "total": len(rules)})

    @role("admin")
    async def post(self) -> None:
        self.send((await self.auth.login_rules.create(self.body(), self.actor)).public(), status=201)


class LoginRuleHandler(APIHandler):
    @role("admin")
    async def get(self, rule_id: str) -> None:
        self.send((await self.auth.login_rules.get(rule_id)).public())

    @role("admin")
    async def patch(self, rule_id: str) -> None:
        self.send((await self.auth.login_rules.update(rule_id, self.body(), self.actor)).public())

    @role("admin")
    async def delete(self, rule_id: str) -> None:
        await self.auth.login_rules.delete(rule_id, self.actor)
        self.send({"ok": True})


class LoginRulesPage(BaseHandler):
    @role("admin")
    async def get(self) -> None:
        users = (await self.store.list_users(limit=500)).items
        self.page("login_rules.html", rules=await self.store.list_login_rules(), users=users, roles=v.ROLES,
                  user_names={u.id: u.username for u in users}, day_names=("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))


default_handlers = [
    (r"/api/login-rules", LoginRulesHandler),
    (r"/api/login-rules/([^/]+)", LoginRuleHandler),
    (r"/admin/login-rules", LoginRulesPage),
    (r"/api/users", UsersHandler),
    (r"/api/users/([^/]+)", UserHandler),
    (r"/api/locks", LocksHandler),
    (r"/api/locks/([^/]+)", LockHandler),
]
