"""Base handlers: services from Application.settings, authentication, access decorators, error mapping."""
from __future__ import annotations

import functools
import inspect
import ipaddress
import json
import logging
import secrets
from typing import Any, Awaitable, Callable
from urllib.parse import quote

import tornado.web
from tornado.websocket import WebSocketHandler

from bastion.audit import request_client
from bastion.auth import AuthService, Principal
from bastion.errors import BastionError, Forbidden, NotFound, Unauthenticated, Unavailable
from bastion.logins import STALE
from bastion.services import Services
from bastion.validation import parse_json_object, record_id

log = logging.getLogger(__name__)
LOGIN_COOKIE = "bastion_login"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
# xterm.js 6 (terminal and watch pages only) styles itself at run time: its DOM renderer and scrollbar create
# <style> elements whose text depends on the theme and the measured cell size (so no hash fits), and it colours
# truecolor cells and contrast-adjusted text through style="..." attributes (without them truecolor cells are
# drawn in the background colour; tests/test_browser_render.py). Those pages therefore allow <style> elements
# carrying this response's nonce (static/terminal.js stamps it on the elements xterm.js creates) and style
# attributes. Attributes cannot hold selectors, @import or @font-face, so they cannot read the page; every
# other page keeps plain style-src 'self', and no page allows inline script.
XTERM_STYLE_SRC = "style-src 'self'; style-src-elem 'self' 'nonce-{nonce}'; style-src-attr 'unsafe-inline'"


# ---- access decorators -----------------------------------------------------------------------
def _access(kind: str, roles: tuple[str, ...] = (), allow_half_totp: bool = False) -> Callable:
    def decorator(method: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def wrapper(self: "BaseMixin", *args: Any, **kwargs: Any) -> Any:
            if kind != "public" and not self.require_access(roles, allow_unenrolled=allow_half_totp):
                return None
            result = method(self, *args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        wrapper._bastion_access = (kind, roles)  # type: ignore[attr-defined]
        return wrapper
    return decorator


def public(method: Callable) -> Callable:
    """Anyone may call this (login page, static health checks)."""
    return _access("public")(method)


def authenticated(method: Callable) -> Callable:
    """Any logged-in user (cookie after every login step, or API token)."""
    return _access("authenticated")(method)


def enrolling(method: Callable) -> Callable:
    """Logged in, allowed even before a required TOTP enrolment (the enrolment routes)."""
    return _access("authenticated", allow_half_totp=True)(method)


def role(*roles: str) -> Callable[[Callable], Callable]:
    """Logged in with one of these roles."""
    return _access("role", tuple(roles))


def check_route_access(routes: list[tuple]) -> None:
    """Refuse to start if any route method lacks an access decorator."""
    for route in routes:
        handler = route[1]
        if not isinstance(handler, type) or not issubclass(handler, tornado.web.RequestHandler):
            continue
        if issubclass(handler, tornado.web.StaticFileHandler):
            continue
        for name in ("get", "post", "put", "patch", "delete", "head"):
            method = getattr(handler, name, None)
            base = getattr(tornado.web.RequestHandler, name, None)
            if name == "get" and issubclass(handler, WebSocketHandler) and method is WebSocketHandler.get:
                raise RuntimeError(f"{handler.__name__}.get (WebSocket upgrade) has no access decorator")
            if method is None or method is base or (issubclass(handler, WebSocketHandler) and method is getattr(WebSocketHandler, name, None)):
                continue
            if not hasattr(method, "_bastion_access"):
                raise RuntimeError(f"{handler.__name__}.{name} has no access decorator (@public, @authenticated, @role)")


# ---- shared behaviour for HTTP and WebSocket handlers ----------------------------------------------
class BaseMixin:
    """Services as typed properties, client address, principal resolution."""

    principal: Principal | None = None
    half_login: Any = None
    # The API-token scope a request needs here: GET/HEAD need read_scope, other methods write_scope.
    read_scope = "read"
    write_scope = "manage"
    application: tornado.web.Application
    request: Any

    @property
    def services(self) -> Services:
        return self.application.settings["services"]

    @property
    def store(self):  # noqa: ANN201 - typed in Services
        return self.services.store

    @property
    def auth(self) -> AuthService:
        return self.services.auth

    @property
    def inventory(self):  # noqa: ANN201
        return self.services.inventory

    @property
    def audit(self):  # noqa: ANN201
        return self.services.audit

    @property
    def config(self):  # noqa: ANN201
        return self.services.config

    @property
    def hub(self):  # noqa: ANN201
        return self.services.hub

    def _from_trusted_proxy(self) -> bool:
        nets = self.services.trusted_proxies
        if not nets:
            return False
        try:
            peer = ipaddress.ip_address(self.request.remote_ip)
        except ValueError:
            return False
        return any(peer in net for net in nets)

    @property
    def client_address(self) -> str:
        """The client's address; X-Forwarded-For is believed only from configured trusted proxies."""
        if self._from_trusted_proxy():
            hops = [h.strip() for h in self.request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
            nets = self.services.trusted_proxies
            for hop in reversed(hops):
                try:
                    ip = ipaddress.ip_address(hop)
                except ValueError:
                    break
                if not any(ip in net for net in nets):
                    return str(ip)
        return self.request.remote_ip or ""

    @property
    def over_tls(self) -> bool:
        if self.request.protocol == "https":
            return True
        return self._from_trusted_proxy() and self.request.headers.get("X-Forwarded-Proto", "").lower() == "https"

    async def load_session(self, session_id: str) -> Any:
        """A session document by id from the path, or NotFound."""
        record = await self.store.get_session(record_id(session_id, "session id"))
        if record is None:
            raise NotFound("session not found")
        return record

    async def load_run(self, run_id: str) -> Any:
        """A run the principal may see (its own; every run for auditors and admins), or NotFound."""
        run = await self.store.get_run(record_id(run_id, "run id"))
        if run is None or (run.user_id != self.principal.user.id and not self.principal.has_role("auditor", "admin")):
            raise NotFound("run not found")
        return run

    @property
    def actor(self) -> str:
        return self.principal.user.username if self.principal else ""

    async def resolve_principal(self) -> None:
        """Set self.principal from a Bearer token or the login cookie (only after every login step)."""
        header = self.request.headers.get("Authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthenticated("Authorization must be 'Bearer <api token>'")
            self.principal = await self.auth.resolve_token(value.strip(), self.client_address)
            return
        raw = self.get_signed_cookie(LOGIN_COOKIE, max_age_days=31)  # type: ignore[attr-defined]
        if not raw:
            return
        login_id = raw.decode("ascii", "replace")
        recent = self.services.recent_logins
        try:
            resolved = await self.auth.resolve_login(login_id)
        except Unavailable:  # the database is away: a login seen recently still counts (live control)
            resolved = recent.get(login_id, max_age=STALE)
            if resolved is None:
                raise
        else:
            if resolved is None:
                recent.forget(login_id)
                return
            recent.remember(login_id, *resolved)
        user, login = resolved
        if login.stage == "full":
            self.principal = Principal(user=user, via="cookie", login=login)
        else:
            self.half_login = login

    def require_access(self, roles: tuple[str, ...], allow_unenrolled: bool = False) -> bool:
        """Raise Unauthenticated/Forbidden unless the principal may call this method."""
        if self.principal is None:
            raise Unauthenticated("log in first" if self.half_login is None else "enter your TOTP code first")
        user = self.principal.user
        if (self.config.auth.mfa_required and not (user.totp_secret or user.passkey_count) and not allow_unenrolled
                and self.principal.via == "cookie"):
            raise Forbidden("TOTP enrolment is required (or a passkey): open your account page and enrol first")
        if roles and not self.principal.has_role(*roles):
            raise Forbidden(f"this needs the {' or '.join(roles)} role")
        scope = self.read_scope if self.request.method in ("GET", "HEAD") else self.write_scope
        if not self.principal.may(scope):
            raise Forbidden(f"this API token lacks the {scope!r} scope")
        return True


class BaseHandler(BaseMixin, tornado.web.RequestHandler):
    """Every HTTP handler: security headers, principal, errors as {"error": ...} or an error page."""

    csp = CSP
    xterm_styles = False  # True on pages running xterm.js: see XTERM_STYLE_SRC
    style_nonce = ""

    def set_default_headers(self) -> None:
        policy = self.csp
        if self.xterm_styles:
            self.style_nonce = secrets.token_urlsafe(18)
            policy = policy.replace("style-src 'self'", XTERM_STYLE_SRC.format(nonce=self.style_nonce))
        self.set_header("Content-Security-Policy", policy)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")
        self.clear_header("Server")

    def check_xsrf_cookie(self) -> None:
        # API tokens are not ambient credentials, so a Bearer request needs no XSRF token.
        if self.request.headers.get("Authorization"):
            return
        try:
            super().check_xsrf_cookie()
        except tornado.web.HTTPError:
            raise Forbidden("missing or wrong XSRF token (send the _xsrf cookie's value in X-XSRFToken)") from None

    async def prepare(self) -> None:
        request_client.set(self.client_address)  # audit events of this request name its client
        if self.request.method == "GET" and not self.request.path.startswith("/api/"):
            self.xsrf_token  # noqa: B018 - pages always carry the _xsrf cookie their forms send back
        await self.resolve_principal()

    def set_login_cookie(self, login_id: str) -> None:
        self.set_signed_cookie(LOGIN_COOKIE, login_id, expires_days=None, httponly=True, samesite="Strict",
                               secure=self._secure_cookies(), path="/")

    def clear_login_cookie(self) -> None:
        self.clear_cookie(LOGIN_COOKIE, path="/")

    def _secure_cookies(self) -> bool:
        mode = self.config.server.cookie_secure
        return mode == "always" or (mode == "auto" and self.over_tls)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, BastionError):
            log.info("%s %s -> %d %s", self.request.method, self.request.path, value.status, value.message)
            return
        super().log_exception(typ, value, tb)

    def wants_json(self) -> bool:
        return self.request.path.startswith("/api/") or "application/json" in self.request.headers.get("Accept", "")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, BastionError):
            status_code, message = exc.status, exc.message
        elif isinstance(exc, tornado.web.HTTPError):
            message = exc.log_message % exc.args if exc.log_message and exc.args else (exc.log_message or exc.reason or "")
            message = message or self._reason
        else:
            message = "internal error; the details are in the server log"
        self.set_status(status_code)
        if not self.wants_json() and status_code == 401 and self.request.method == "GET":
            self.redirect("/login?next=" + quote(self.request.uri or "/", safe=""))
            return
        if self.wants_json():
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps({"error": message}))
        else:
            self.finish(self.render_page("error.html", status=status_code, message=message))

    def render_page(self, template: str, **context: Any) -> str:
        env = self.services.templates
        return env.get_template(template).render(
            principal=self.principal, xsrf_form_html=self.xsrf_form_html, static_url=self.static_url,
            request_path=self.request.path, style_nonce=self.style_nonce, **context)

    def page(self, template: str, **context: Any) -> None:
        self.finish(self.render_page(template, **context))


class APIHandler(BaseHandler):
    """JSON endpoints."""

    NOBODY = "-"  # a user id no record has: a filter on an unknown username matches nothing

    def arg(self, name: str) -> str | None:
        return self.get_query_argument(name, "") or None

    def flag_arg(self, name: str) -> bool | None:
        """?name=1|0|true|false, or None when absent."""
        value = self.arg(name)
        if value is None:
            return None
        if value not in ("1", "true", "0", "false"):
            from bastion.errors import Invalid
            raise Invalid(f"{name} must be 1 or 0")
        return value in ("1", "true")

    async def user_filter(self) -> str | None:
        """?user=<username> as a user id for store filters (None when absent)."""
        name = self.arg("user")
        if name is None:
            return None
        user = await self.store.get_user_by_name(name[:64])
        return user.id if user else self.NOBODY

    def body(self) -> dict[str, Any]:
        if "json" not in self.request.headers.get("Content-Type", "application/json"):
            from bastion.errors import Invalid
            raise Invalid("Content-Type must be application/json")
        return parse_json_object(self.request.body)

    def send(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(value))

    def send_page(self, page: Any, convert: Callable[[Any], Any] | None = None) -> None:
        self.send({"items": [(convert or (lambda r: r.public()))(r) for r in page.items], "total": page.total})
