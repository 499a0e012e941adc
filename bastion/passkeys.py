"""Passkeys (WebAuthn, py_webauthn): enrolment and removal, a second factor after the password, and an optional
passwordless login with a discoverable credential. Challenges are kept server-side and used once; an assertion
whose signature counter does not move forward (a cloned authenticator) is refused."""
from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

from webauthn import (generate_authentication_options, generate_registration_options, options_to_json,
                      verify_authentication_response, verify_registration_response)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse, WebAuthnException
from webauthn.helpers.structs import (AuthenticatorSelectionCriteria, PublicKeyCredentialDescriptor,
                                      ResidentKeyRequirement, UserVerificationRequirement)

from . import validation as v
from .audit import Audit
from .auth import AuthService
from .config import Config
from .errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from .store import Login, Passkey, PasskeyChallenge, Store, User

log = logging.getLogger(__name__)
CHALLENGE_TTL = 300  # seconds a ceremony may take
MAX_PASSKEYS = 20


def _handle_ok(handle: object) -> bool:
    return isinstance(handle, str) and 20 <= len(handle) <= 64 and all(c.isalnum() or c in "-_" for c in handle)


class PasskeyService:
    """WebAuthn ceremonies for one relying party (its id and origin come from the request or [sso] public_url)."""

    def __init__(self, config: Config, store: Store, audit: Audit, auth: AuthService) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self.auth = auth

    async def _challenge(self, purpose: str, challenge: bytes, *, user_id: str = "", login_id: str = "") -> str:
        handle = secrets.token_urlsafe(24)
        await self.store.create_passkey_challenge(PasskeyChallenge(
            id=handle, purpose=purpose, user_id=user_id, login_id=login_id, challenge=bytes_to_base64url(challenge),
            expires_at=time.time() + CHALLENGE_TTL))
        return handle

    async def _take(self, handle: object, purpose: str) -> PasskeyChallenge:
        found = await self.store.take_passkey_challenge(handle) if _handle_ok(handle) else None
        if found is None or found.purpose != purpose:
            raise Unauthenticated("this passkey request expired or was already used; try again")
        return found

    # ---- enrolment --------------------------------------------------------------------------------------------
    async def registration_options(self, user: User, rp_id: str) -> dict[str, Any]:
        """Options for navigator.credentials.create(), with a one-time challenge handle."""
        existing = await self.store.passkeys_of_user(user.id)
        if len(existing) >= MAX_PASSKEYS:
            raise Conflict(f"at most {MAX_PASSKEYS} passkeys per account; remove one first")
        options = generate_registration_options(
            rp_id=rp_id, rp_name="Bastion", user_name=user.username, user_id=user.id.encode(),
            exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id)) for p in existing],
            authenticator_selection=AuthenticatorSelectionCriteria(resident_key=ResidentKeyRequirement.PREFERRED,
                                                                   user_verification=UserVerificationRequirement.PREFERRED))
        handle = await self._challenge("register", options.challenge, user_id=user.id)
        return {"challenge_id": handle, "options": json.loads(options_to_json(options))}

    async def register(self, user: User, handle: object, credential: object, name: str, rp_id: str,
                       origin: str) -> Passkey:
        """Check the authenticator's answer and keep the new credential."""
        pending = await self._take(handle, "register")
        if pending.user_id != user.id:
            raise Unauthenticated("this passkey request belongs to another login; try again")
        if not isinstance(credential, dict):
            raise Invalid("credential must be the authenticator's answer")
        try:
            verified = verify_registration_response(credential=credential, expected_challenge=base64url_to_bytes(pending.challenge),
                                                    expected_rp_id=rp_id, expected_origin=origin)
        except (InvalidRegistrationResponse, WebAuthnException, ValueError, KeyError, TypeError) as exc:
            log.info("passkey enrolment refused [user=%s]: %s", user.username, type(exc).__name__)
            raise Invalid("the authenticator's answer could not be verified; try again") from None
        credential_id = bytes_to_base64url(verified.credential_id)
        if await self.store.passkey_by_credential(credential_id) is not None:
            raise Conflict("this passkey is already enrolled")
        passkey = Passkey(user_id=user.id, credential_id=credential_id,
                          public_key=bytes_to_base64url(verified.credential_public_key), sign_count=verified.sign_count,
                          name=name)
        await self.store.create_passkey(passkey)
        await self._count(user)
        await self.audit.record("passkey.enrolled", actor=user.username, target=user.username, name=name,
                                passkey=passkey.id)
        return passkey

    async def _count(self, user: User) -> None:
        """Keep the user's passkey count (read on every request when a second factor is required)."""
        for _ in range(3):
            current = await self.store.get_user(user.id)
            if current is None:
                return
            current.passkey_count = len(await self.store.passkeys_of_user(user.id))
            try:
                await self.store.save(current)
                user.passkey_count, user.version = current.passkey_count, current.version
                return
            except Conflict:
                continue

    async def remove(self, user: User, passkey_id: str, *, actor: str) -> None:
        """Remove one of the user's passkeys (not the last second factor while one is required)."""
        passkey = await self.store.get_passkey(passkey_id)
        if passkey is None or passkey.user_id != user.id:
            raise NotFound("passkey not found")
        if self.config.auth.mfa_required and not user.totp_secret and user.passkey_count <= 1:
            raise Invalid("a second factor is required on this bastion: enrol TOTP or another passkey first")
        await self.store.delete_passkey(passkey.id)
        await self._count(user)
        await self.audit.record("passkey.removed", actor=actor, target=user.username, name=passkey.name,
                                passkey=passkey.id)

    # ---- login -------------------------------------------------------------------------------------------------
    async def login_options(self, rp_id: str, half_login: Login | None) -> dict[str, Any]:
        """Options for navigator.credentials.get(): the user's keys after a password, any discoverable key without."""
        allow: list[PublicKeyCredentialDescriptor] = []
        if half_login is not None:
            keys = await self.store.passkeys_of_user(half_login.user_id)
            if not keys:
                raise Invalid("this account has no passkey; enter the authenticator code")
            allow = [PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id)) for p in keys]
        options = generate_authentication_options(
            rp_id=rp_id, allow_credentials=allow,
            user_verification=UserVerificationRequirement.PREFERRED if half_login else UserVerificationRequirement.REQUIRED)
        handle = await self._challenge("login", options.challenge, user_id=half_login.user_id if half_login else "",
                                       login_id=half_login.id if half_login else "")
        return {"challenge_id": handle, "options": json.loads(options_to_json(options))}

    async def login(self, handle: object, credential: object, rp_id: str, origin: str, half_login: Login | None,
                    address: str) -> tuple[User, Login]:
        """Verify an assertion: as the second factor of `half_login`, or passwordless (user verification required)."""
        pending = await self._take(handle, "login")
        if pending.login_id and (half_login is None or half_login.id != pending.login_id):
            raise Unauthenticated("log in with your password first")
        raw_id = credential.get("rawId") or credential.get("id") if isinstance(credential, dict) else None
        passkey = await self.store.passkey_by_credential(raw_id) if isinstance(raw_id, str) and len(raw_id) < 1400 else None
        user = await self.store.get_user(passkey.user_id) if passkey else None
        if passkey is None or user is None or (pending.user_id and passkey.user_id != pending.user_id):
            await self.audit.record("login.passkey_failed", actor=user.username if user else "", address=address,
                                    ok=False, why="unknown passkey")
            raise Unauthenticated("this passkey is not enrolled for this account")
        await self.auth.check_lock(user.username, address)
        try:
            verified = verify_authentication_response(
                credential=credential, expected_challenge=base64url_to_bytes(pending.challenge), expected_rp_id=rp_id,
                expected_origin=origin, credential_public_key=base64url_to_bytes(passkey.public_key),
                credential_current_sign_count=passkey.sign_count, require_user_verification=not pending.login_id)
        except (InvalidAuthenticationResponse, WebAuthnException, ValueError, KeyError, TypeError) as exc:
            text = str(exc)
            why = "counter went back (cloned authenticator?)" if "sign count" in text else "assertion not verified"
            await self.auth.count_failure(user.username, address)
            await self.audit.record("login.passkey_failed", actor=user.username, address=address, ok=False, why=why,
                                    passkey=passkey.id)
            if "sign count" in text:
                raise Unauthenticated("this passkey's counter went back: it may have been copied; it was refused") from None
            raise Unauthenticated("the passkey's answer could not be verified") from None
        passkey.sign_count, passkey.last_used_at = verified.new_sign_count, time.time()
        try:
            await self.store.save(passkey)
        except Conflict:  # a parallel assertion with the same key: only one may win
            raise Unauthenticated("this passkey was used twice at once; try again") from None
        if user.disabled:
            raise Unauthenticated("this account is disabled")
        if half_login is not None and pending.login_id:
            await self.store.delete_login(half_login.id)
        else:
            if user.sso_provider or set(user.roles) & set(self.config.sso.required_for_roles):
                # roles of these users come from (or must be checked by) single sign-on at each login
                await self.audit.record("login.failed", actor=user.username, address=address, ok=False,
                                        why="sso required")
                raise Forbidden("this account must sign in with single sign-on (a passkey is its second step)")
            await self.auth.login_rules.check(user, address)
        login = await self.auth.full_login(user, address, via="passkey")
        return user, login
