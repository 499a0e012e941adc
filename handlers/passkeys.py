"""Passkeys (WebAuthn): enrolment and removal on the Account page, and the login step (second factor or passwordless)."""
from __future__ import annotations

from urllib.parse import urlparse

from bastion import validation as v
from bastion.errors import Invalid, NotFound
from bastion.passkeys import PasskeyService

from .base import APIHandler, authenticated, enrolling, public


class PasskeyMixin:
    """The passkey service, and the relying party (id and origin) this request speaks for."""

    @property
    def passkeys(self) -> PasskeyService:
        service = self.services.passkeys  # type: ignore[attr-defined]
        if service is None:
            raise NotFound("passkeys are not available")
        return service

    def relying_party(self) -> tuple[str, str]:
        """(RP id, origin): from [sso] public_url when set, else this request's own host."""
        base = self.config.sso.public_url  # type: ignore[attr-defined]
        if base:
            parsed = urlparse(base)
            return parsed.hostname or "", f"{parsed.scheme}://{parsed.netloc}"
        scheme = "https" if self.over_tls else "http"  # type: ignore[attr-defined]
        host = self.request.host  # type: ignore[attr-defined]
        return urlparse(f"//{host}").hostname or "", f"{scheme}://{host}"


def _credential(body: dict) -> dict:
    credential = body.get("credential")
    if not isinstance(credential, dict) or not isinstance(credential.get("response"), dict):
        raise Invalid("credential must be the authenticator's answer")
    return credential


class PasskeyOptionsHandler(PasskeyMixin, APIHandler):
    @enrolling
    async def post(self) -> None:
        rp_id, _ = self.relying_party()
        self.send(await self.passkeys.registration_options(self.principal.user, rp_id))


class PasskeysHandler(PasskeyMixin, APIHandler):
    @enrolling
    async def get(self) -> None:
        keys = await self.store.passkeys_of_user(self.principal.user.id)
        self.send({"items": [k.public() for k in keys], "total": len(keys)})

    @enrolling
    async def post(self) -> None:
        body = self.body()
        v.only_fields(body, ("challenge_id", "name", "credential"))
        name = v.text(body, "name", required=False, pattern=v.NAME_RE,
                      rule="must be 1-64 letters, digits, spaces or .:@()+-_") or "passkey"
        rp_id, origin = self.relying_party()
        passkey = await self.passkeys.register(self.principal.user, body.get("challenge_id"), _credential(body), name,
                                               rp_id, origin)
        self.send(passkey.public(), status=201)


class PasskeyHandler(PasskeyMixin, APIHandler):
    @authenticated
    async def delete(self, passkey_id: str) -> None:
        await self.passkeys.remove(self.principal.user, v.record_id(passkey_id, "passkey id"), actor=self.actor)
        self.send({"ok": True})


class PasskeyLoginOptionsHandler(PasskeyMixin, APIHandler):
    @public
    async def post(self) -> None:
        rp_id, _ = self.relying_party()
        self.send(await self.passkeys.login_options(rp_id, self.half_login))


class PasskeyLoginHandler(PasskeyMixin, APIHandler):
    @public
    async def post(self) -> None:
        body = self.body()
        v.only_fields(body, ("challenge_id", "credential"))
        rp_id, origin = self.relying_party()
        half = self.half_login
        user, login = await self.passkeys.login(body.get("challenge_id"), _credential(body), rp_id, origin, half,
                                                self.client_address)
        if half is not None:
            self.services.recent_logins.forget(half.id)
        if self.principal and self.principal.login:
            await self.store.delete_login(self.principal.login.id)
            self.services.recent_logins.forget(self.principal.login.id)
        self.set_login_cookie(login.id)
        self.send({"user": user.public()})


default_handlers = [
    (r"/api/me/passkeys/options", PasskeyOptionsHandler),
    (r"/api/me/passkeys", PasskeysHandler),
    (r"/api/me/passkeys/([^/]+)", PasskeyHandler),
    (r"/api/login/passkey/options", PasskeyLoginOptionsHandler),
    (r"/api/login/passkey", PasskeyLoginHandler),
]
