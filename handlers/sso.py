"""Single sign-on routes: OpenID Connect start and callback, and the directory (LDAP) login API."""
from __future__ import annotations

import secrets

from bastion import validation as v
from bastion.errors import BastionError, Invalid, NotFound, Unavailable
from bastion.sso import BROWSER_COOKIE, SsoService

from .base import APIHandler, BaseHandler, public
from .pages import _safe_next

NAME = r"([a-z0-9][a-z0-9_-]{0,31})"


class SsoMixin:
    """The SSO service and the redirect URI of a provider (from [sso] public_url, else this request's host)."""

    @property
    def sso(self) -> SsoService:
        service = self.services.sso  # type: ignore[attr-defined]
        if service is None:
            raise NotFound("single sign-on is not configured")
        return service

    def redirect_uri(self, name: str) -> str:
        base = self.config.sso.public_url.rstrip("/")  # type: ignore[attr-defined]
        if not base:
            scheme = "https" if self.over_tls else "http"  # type: ignore[attr-defined]
            base = f"{scheme}://{self.request.host}"  # type: ignore[attr-defined]
        return f"{base}/sso/oidc/{name}/callback"


class OidcStartHandler(SsoMixin, BaseHandler):
    @public
    async def get(self, name: str) -> None:
        nxt = _safe_next(self.get_query_argument("next", None))
        browser = secrets.token_urlsafe(32)
        try:
            url = await self.sso.begin_oidc(name, self.redirect_uri(name), nxt, browser)
        except (Unavailable, BastionError) as exc:
            if isinstance(exc, NotFound):
                raise
            self.set_status(exc.status)
            self.page("login.html", next=nxt, totp_step=False, sso=self.sso.buttons, sso_error=exc.message)
            return
        # SameSite=Lax: the provider sends the browser back with a cross-site top-level GET, which Lax allows
        self.set_signed_cookie(BROWSER_COOKIE, browser, expires_days=None, httponly=True, samesite="Lax",
                               secure=self._secure_cookies(), path="/sso/")
        self.redirect(url)


class OidcCallbackHandler(SsoMixin, BaseHandler):
    @public
    async def get(self, name: str) -> None:
        raw = self.get_signed_cookie(BROWSER_COOKIE, max_age_days=1)
        self.clear_cookie(BROWSER_COOKIE, path="/sso/")
        try:
            user, login, nxt = await self.sso.finish_oidc(
                name, state=self.get_query_argument("state", "")[:256], code=self.get_query_argument("code", "")[:4096],
                error=self.get_query_argument("error", "")[:100], browser_value=raw.decode("ascii", "replace") if raw else "",
                address=self.client_address)
        except NotFound:
            raise
        except BastionError as exc:
            self.set_status(exc.status)
            self.page("login.html", next="/", totp_step=False, sso=self.sso.buttons, sso_error=exc.message)
            return
        if self.principal and self.principal.login:  # a new login replaces the one this browser had
            await self.store.delete_login(self.principal.login.id)
            self.services.recent_logins.forget(self.principal.login.id)
        self.set_login_cookie(login.id)
        target = nxt if login.stage == "full" else "/login?next=" + nxt
        self.page("sso_done.html", next=target)


class DirectoryLoginHandler(SsoMixin, APIHandler):
    @public
    async def post(self) -> None:
        try:
            body = self.body()
            v.only_fields(body, ("directory", "username", "password", "totp"))
            directory = v.text(body, "directory", max_len=32)
            username = v.text(body, "username", max_len=64)
            password = v.text(body, "password", max_len=256)
            code = v.text(body, "totp", required=False, max_len=16)
        except Invalid as exc:
            await self.audit.record_limited("login.malformed", self.client_address, address=self.client_address,
                                            why=exc.message[:200])
            raise
        recent = self.services.recent_logins
        if self.half_login is not None:
            await self.store.delete_login(self.half_login.id)
            recent.forget(self.half_login.id)
        if self.principal and self.principal.login:
            await self.store.delete_login(self.principal.login.id)
            recent.forget(self.principal.login.id)
        user, login = await self.sso.directory_login(directory, username, password, self.client_address)
        if login.stage == "totp":
            if not code:
                self.set_login_cookie(login.id)
                self.send({"totp_required": True})
                return
            user, login = await self.auth.login_totp(login, code, self.client_address)
        self.set_login_cookie(login.id)
        self.send({"user": user.public()})


default_handlers = [
    (rf"/sso/oidc/{NAME}/start", OidcStartHandler),
    (rf"/sso/oidc/{NAME}/callback", OidcCallbackHandler),
    (r"/api/login/directory", DirectoryLoginHandler),
]
