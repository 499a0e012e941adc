"""Login, logout, the current user, TOTP enrolment and API tokens."""
from __future__ import annotations

import base64
import io

import segno

from bastion import validation as v
from bastion.auth import token_view
from bastion.errors import Invalid, Unauthenticated

from .base import APIHandler, authenticated, enrolling, public


class LoginHandler(APIHandler):
    @public
    async def post(self) -> None:
        try:
            body = self.body()
            v.only_fields(body, ("username", "password", "totp"))
            username = v.text(body, "username", max_len=64)
            password = v.text(body, "password", max_len=256)
            code = v.text(body, "totp", required=False, max_len=16)
        except Invalid as exc:  # audited, at most N a minute per address so a flood cannot flood the log
            await self.audit.record_limited("login.malformed", self.client_address, address=self.client_address,
                                            why=exc.message[:200])
            raise
        recent = self.services.recent_logins
        if self.half_login is not None:  # a new login replaces any half-finished one
            await self.store.delete_login(self.half_login.id)
            recent.forget(self.half_login.id)
        if self.principal and self.principal.login:  # ...and the full one this browser had
            await self.store.delete_login(self.principal.login.id)
            recent.forget(self.principal.login.id)
        user, login = await self.auth.login(username, password, self.client_address)
        if login.stage == "totp":
            if not code:
                self.set_login_cookie(login.id)
                self.send({"totp_required": True})
                return
            user, login = await self.auth.login_totp(login, code, self.client_address)
        self.set_login_cookie(login.id)
        self.send({"user": user.public()})


class LoginTotpHandler(APIHandler):
    @public
    async def post(self) -> None:
        if self.half_login is None:
            raise Unauthenticated("log in with your password first")
        try:
            body = self.body()
            v.only_fields(body, ("code",))
            code = v.text(body, "code", max_len=16)
        except Invalid as exc:
            await self.audit.record_limited("login.malformed", self.client_address, address=self.client_address,
                                            why=exc.message[:200], step="totp")
            raise
        user, login = await self.auth.login_totp(self.half_login, code, self.client_address)
        self.services.recent_logins.forget(self.half_login.id)  # the half login is gone from the store too
        self.set_login_cookie(login.id)  # the session id changes again after the TOTP step
        self.send({"user": user.public()})


class LogoutHandler(APIHandler):
    @public
    async def post(self) -> None:
        if self.principal and self.principal.login:
            self.services.recent_logins.forget(self.principal.login.id)
            await self.auth.logout(self.principal.login, self.principal.user, self.client_address)
        elif self.half_login is not None:
            await self.store.delete_login(self.half_login.id)
        self.clear_login_cookie()
        self.send({"ok": True})


class MeHandler(APIHandler):
    @enrolling
    async def get(self) -> None:
        self.send({"user": self.principal.user.public()})


class PasswordHandler(APIHandler):
    @authenticated
    async def post(self) -> None:
        body = self.body()
        v.only_fields(body, ("old_password", "new_password"))
        old = v.text(body, "old_password", max_len=256)
        new = v.text(body, "new_password", max_len=256)
        user = self.principal.user
        if user.sso_provider:
            raise Invalid("this account signs in through single sign-on and cannot have a local password")
        if not await self.auth.verify_password(old, user.password_hash):
            raise Invalid("old_password is wrong")
        await self.auth.set_password(user, new, actor=user.username)
        self.services.recent_logins.forget_user(user.id)  # every login of the user ended with the old password
        self.clear_login_cookie()
        self.send({"ok": True})


class TotpHandler(APIHandler):
    @enrolling
    async def post(self) -> None:
        """Begin enrolment: a fresh secret, its otpauth URI and a QR code (SVG data URI)."""
        secret, uri = await self.auth.begin_totp(self.principal.user)
        # a standalone SVG document (with its xmlns): an <img> shows nothing for segno's inline-HTML flavour
        svg = io.BytesIO()
        segno.make(uri, error="m").save(svg, kind="svg", scale=4, border=2, xmldecl=False)
        qr = "data:image/svg+xml;base64," + base64.b64encode(svg.getvalue()).decode()
        self.send({"secret": secret, "uri": uri, "qr": qr})

    @authenticated
    async def delete(self) -> None:
        if self.config.auth.mfa_required:
            raise Invalid("TOTP is required on this bastion and cannot be turned off")
        user = await self.auth.disable_totp(self.principal.user, actor=self.actor)
        self.send({"user": user.public()})


class TotpConfirmHandler(APIHandler):
    @enrolling
    async def post(self) -> None:
        body = self.body()
        v.only_fields(body, ("code",))
        user = await self.auth.confirm_totp(self.principal.user, v.text(body, "code", max_len=16))
        self.send({"user": user.public()})


class TokensHandler(APIHandler):
    @authenticated
    async def get(self) -> None:
        tokens = await self.store.list_tokens(self.principal.user.id)
        self.send({"items": [token_view(t, self.config) for t in tokens], "total": len(tokens)})

    @authenticated
    async def post(self) -> None:
        body = self.body()
        v.only_fields(body, ("name", "scopes", "ttl_days"))
        name = v.text(body, "name", pattern=v.NAME_RE, rule="must be 1-64 letters, digits, spaces or .:@()+-_")
        scopes, days = self.auth.check_token_request(self.principal, body.get("scopes"), body.get("ttl_days"))
        token, secret = await self.auth.issue_token(self.principal.user, name, scopes, days)
        self.send({**token_view(token, self.config), "token": secret}, status=201)


class TokenHandler(APIHandler):
    @authenticated
    async def delete(self, token_id: str) -> None:
        await self.auth.revoke_token(self.principal, v.record_id(token_id))
        self.send({"ok": True})


default_handlers = [
    (r"/api/login", LoginHandler),
    (r"/api/login/totp", LoginTotpHandler),
    (r"/api/logout", LogoutHandler),
    (r"/api/me", MeHandler),
    (r"/api/me/password", PasswordHandler),
    (r"/api/me/totp", TotpHandler),
    (r"/api/me/totp/confirm", TotpConfirmHandler),
    (r"/api/tokens", TokensHandler),
    (r"/api/tokens/([^/]+)", TokenHandler),
]
