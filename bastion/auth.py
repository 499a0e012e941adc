"""Accounts: scrypt passwords (off the loop), logins with an optional TOTP step, lockout, API tokens."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from . import validation as v
from .audit import Audit
from .config import Config
from .errors import Conflict, Forbidden, Invalid, Locked, NotFound, Unauthenticated
from .login_rules import LoginRules
from .store import ApiToken, Failure, Login, Store, User
from .vault import Vault

log = logging.getLogger(__name__)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
TOTP_STEP = 30
TOKEN_PREFIX = "bst_"
IDLE_TOUCH = 60  # seconds between writes of a login's last-seen time (bounded by idle_ttl / 4)
DAY = 86400
# What an API token may do. read: GET requests (and watching); runs: start module runs and command
# envelopes; terminal: open terminal sessions; manage: every other change (admin and account API).
TOKEN_SCOPES = ("read", "runs", "terminal", "manage")
DEFAULT_TOKEN_SCOPES = ("read", "runs")
# Tokens stored before scopes existed keep what they were used for, except terminals (which skip the second
# factor): read, runs and manage. Their expiry is created_at + [auth] token_ttl_max days.
LEGACY_TOKEN_SCOPES = ("read", "runs", "manage")


def token_scopes(token: ApiToken) -> tuple[str, ...]:
    """The scopes a token holds (a token stored before scopes existed: LEGACY_TOKEN_SCOPES)."""
    return tuple(s for s in TOKEN_SCOPES if s in token.scopes) if token.scopes else LEGACY_TOKEN_SCOPES


def token_expires_at(token: ApiToken, config: Config) -> float:
    """When a token stops working (a token stored before expiries existed: created_at + token_ttl_max days)."""
    return token.expires_at or token.created_at + config.auth.token_ttl_max * DAY


def token_view(token: ApiToken, config: Config) -> dict[str, object]:
    """A token as the API and the Account page show it: effective scopes and expiry, never the secret."""
    return {**token.public(), "scopes": list(token_scopes(token)), "expires_at": token_expires_at(token, config),
            "legacy": not token.scopes}


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32, maxmem=64 * 1024 * 1024)


def hash_password_sync(password: str) -> str:
    """scrypt$N$r$p$salt$hash (run in an executor, never on the loop)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password_sync(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=32, maxmem=64 * 1024 * 1024)
        return hmac.compare_digest(got, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


# A fixed hash used when the user does not exist, so timing does not reveal valid usernames.
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


@dataclass
class Principal:
    """Who is making a request, and how they proved it."""

    user: User
    via: str  # "cookie" | "token"
    login: Login | None = None
    scopes: tuple[str, ...] = TOKEN_SCOPES  # a browser login may do all its roles allow; a token only its scopes

    def may(self, scope: str) -> bool:
        """Whether the credential used allows this kind of request (roles are checked separately)."""
        return scope in self.scopes

    @property
    def roles(self) -> list[str]:
        return self.user.roles

    def has_role(self, *roles: str) -> bool:
        return any(r in self.user.roles for r in roles)


class AuthService:
    """Users, logins, TOTP, lockouts and API tokens."""

    def __init__(self, config: Config, store: Store, vault: Vault, audit: Audit, executor: Executor) -> None:
        self.config = config
        self.store = store
        self.vault = vault
        self.audit = audit
        self.executor = executor
        self.login_rules = LoginRules(store, audit)

    # ---- passwords -------------------------------------------------------------------------
    async def hash_password(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self.executor, hash_password_sync, password)

    async def verify_password(self, password: str, stored: str) -> bool:
        return await asyncio.get_running_loop().run_in_executor(self.executor, verify_password_sync, password, stored)

    def check_new_password(self, password: str) -> None:
        minimum = self.config.auth.password_min_length
        if len(password) < minimum:
            raise Invalid(f"password must be at least {minimum} characters")
        if len(password) > 256:
            raise Invalid("password must be at most 256 characters")

    # ---- users -----------------------------------------------------------------------------
    async def create_user(self, username: str, password: str, roles: list[str], *, actor: str = "system") -> User:
        if not v.USERNAME_RE.match(username):
            raise Invalid("username must be 1-32 lowercase letters, digits, '.', '_' or '-'")
        self.check_new_password(password)
        if await self.store.get_user_by_name(username):
            raise Conflict("a user with this username already exists")
        user = User(username=username, password_hash=await self.hash_password(password), roles=roles)
        await self.store.create_user(user)
        await self.audit.record("user.created", actor=actor, target=username, roles=roles)
        return user

    async def set_password(self, user: User, password: str, *, actor: str) -> User:
        if user.sso_provider:
            raise Invalid("this account signs in through single sign-on and cannot have a local password")
        self.check_new_password(password)
        user.password_hash = await self.hash_password(password)
        await self.store.save(user)
        await self.store.delete_logins_of_user(user.id)
        await self.audit.record("user.password", actor=actor, target=user.username)
        return user

    async def update_user(self, user: User, *, roles: list[str] | None = None, disabled: bool | None = None,
                          actor: str) -> User:
        if roles is not None:
            user.roles = roles
        if disabled is not None:
            user.disabled = disabled
        await self.store.save(user)
        if user.disabled:
            await self.store.delete_logins_of_user(user.id)
        await self.audit.record("user.updated", actor=actor, target=user.username, roles=user.roles, disabled=user.disabled)
        return user

    async def ensure_first_admin(self) -> str | None:
        """With no users at all, create `admin` with a random password and return it (else None)."""
        if await self.store.count_users():
            return None
        password = secrets.token_urlsafe(15)
        try:
            await self.create_user("admin", password, ["admin"], actor="system")
        except Conflict:
            return None  # another node got there first
        return password

    # ---- lockout -------------------------------------------------------------------------------
    def _lock_keys(self, username: str, address: str) -> list[str]:
        return [f"user:{username[:64]}", f"ip:{address}"]

    async def _check_locked(self, keys: list[str]) -> None:
        now = time.time()
        for key in keys:
            failure = await self.store.get_failure(key)
            if failure and failure.locked_until > now:
                wait = int(failure.locked_until - now) + 1
                what = "account" if key.startswith("user:") else "address"
                raise Locked(f"this {what} is locked after repeated failed logins; try again in {wait} s")

    async def check_not_locked(self, username: str, address: str) -> None:
        """Raise Locked while the account or the address is locked (logins that skip the password: SSH keys)."""
        await self._check_locked(self._lock_keys(username, address))

    async def _count_failure(self, keys: list[str], address: str) -> None:
        cfg = self.config.auth
        now = time.time()
        for key in keys:
            for _ in range(3):
                failure = await self.store.get_failure(key) or Failure(id=key)
                if now - failure.first_at > cfg.lockout_window:
                    failure.count, failure.first_at = 0, now
                failure.count += 1
                newly_locked = failure.count >= cfg.lockout_threshold and failure.locked_until <= now
                if newly_locked:
                    failure.locked_until = now + cfg.lockout_duration
                try:
                    await self.store.put_failure(failure)
                except Conflict:
                    continue
                if newly_locked:
                    await self.audit.record("login.locked", target=key, address=address, ok=False, failures=failure.count)
                break

    async def clear_lock(self, key: str, *, actor: str) -> None:
        if not isinstance(key, str) or not key.startswith(("user:", "ip:")) or len(key) > 100:
            raise Invalid("lock key must look like user:<name> or ip:<address>")
        if await self.store.get_failure(key) is None:
            raise NotFound("no such lock")
        await self.store.delete_failure(key)
        await self.audit.record("lock.cleared", actor=actor, target=key)

    # ---- logins ---------------------------------------------------------------------------------
    async def login(self, username: str, password: str, address: str) -> tuple[User, Login]:
        """Check a password; returns a new login at stage "totp" or "full". Raises Locked/Unauthenticated."""
        keys = self._lock_keys(username, address)
        await self._check_locked(keys)
        user = await self.store.get_user_by_name(username)
        ok = await self.verify_password(password, user.password_hash if user else _DUMMY_HASH)
        if not user or not ok or user.disabled:
            await self._count_failure(keys, address)
            await self.audit.record("login.failed", actor=username[:64], address=address, ok=False,
                                    why="disabled" if user and ok else "bad credentials")
            raise Unauthenticated("wrong username or password" if not (user and ok) else "this account is disabled")
        if user.sso_provider or set(user.roles) & set(self.config.sso.required_for_roles):
            await self.audit.record("login.failed", actor=user.username, address=address, ok=False, why="sso required")
            raise Forbidden("this account must sign in with single sign-on")
        await self.login_rules.check(user, address)  # after the password, so rules reveal nothing to guessers
        needs_totp = bool(user.totp_secret or user.passkey_count)  # the second step: a TOTP code or a passkey
        login = await self._new_login(user, "totp" if needs_totp else "full", address)
        if not needs_totp:
            await self.store.delete_failure(keys[0])
            await self.audit.record("login.ok", actor=user.username, address=address)
        return user, login

    async def login_verified(self, user: User, address: str, *, via: str) -> Login:
        """A login for a user another service verified (single sign-on): login rules and the TOTP step still apply."""
        await self.login_rules.check(user, address)
        needs_totp = bool(user.totp_secret or user.passkey_count)
        login = await self._new_login(user, "totp" if needs_totp else "full", address)
        if not needs_totp:
            await self.audit.record("login.ok", actor=user.username, address=address, via=via)
        return login

    async def full_login(self, user: User, address: str, *, via: str) -> Login:
        """A full login after a second factor checked elsewhere (a passkey); clears the user's failure count."""
        await self.clear_failures(user.username, address)
        login = await self._new_login(user, "full", address)
        await self.audit.record("login.ok", actor=user.username, address=address, via=via)
        return login

    async def check_lock(self, username: str, address: str) -> None:
        """Raise Locked if this username or address is locked after failures (any login method)."""
        await self._check_locked(self._lock_keys(username, address))

    async def count_failure(self, username: str, address: str) -> None:
        """Count a failed login of any method towards the lockout."""
        await self._count_failure(self._lock_keys(username, address), address)

    async def clear_failures(self, username: str, address: str) -> None:
        """Forget the failed-login count of a username after a successful login of any method."""
        await self.store.delete_failure(self._lock_keys(username, address)[0])

    async def _new_login(self, user: User, stage: str, address: str) -> Login:
        ttl = 300 if stage == "totp" else self.config.auth.session_ttl
        login = Login(id=secrets.token_urlsafe(32), user_id=user.id, stage=stage, expires_at=time.time() + ttl, address=address)
        return await self.store.create_login(login)

    async def login_totp(self, login: Login, code: str, address: str) -> tuple[User, Login]:
        """Second step: a valid, unused TOTP code turns a half login into a new, full one."""
        user = await self.store.get_user(login.user_id)
        if user is None or user.disabled or login.stage != "totp":
            raise Unauthenticated("log in with your password first")
        keys = self._lock_keys(user.username, address)
        await self._check_locked(keys)
        if not user.totp_secret:
            raise Unauthenticated("this account has no authenticator app: use your passkey")
        secret = self.vault.open(user.totp_secret, f"totp:{user.id}")
        step = self._verify_totp(secret, code, user.totp_last_step)
        if step is None:
            await self._count_failure(keys, address)
            await self.audit.record("login.totp_failed", actor=user.username, address=address, ok=False)
            raise Unauthenticated("wrong or already used TOTP code")
        user.totp_last_step = step
        await self.store.save(user)
        await self.store.delete_login(login.id)
        await self.store.delete_failure(keys[0])
        full = await self._new_login(user, "full", address)
        await self.audit.record("login.ok", actor=user.username, address=address, totp=True)
        return user, full

    async def resolve_login(self, login_id: str) -> tuple[User, Login] | None:
        """The user behind a login cookie, if the login has neither expired nor gone idle (sliding expiry)."""
        login = await self.store.get_login(login_id)
        if login is None:
            return None
        now = time.time()
        if login.expires_at < now:
            await self.store.delete_login(login.id)
            return None
        idle_ttl = self.config.auth.idle_ttl
        last_seen = login.last_seen_at or login.created_at
        user = await self.store.get_user(login.user_id)
        if idle_ttl and now - last_seen > idle_ttl:
            await self.store.delete_login(login.id)
            await self.audit.record("login.expired", actor=user.username if user else "", address=login.address,
                                    idle=int(now - last_seen))
            return None
        if user is None or user.disabled:
            return None
        if idle_ttl and now - last_seen > min(IDLE_TOUCH, idle_ttl / 4):
            login.last_seen_at = now
            try:
                await self.store.save(login)
            except Conflict:  # a parallel request of the same login wrote it: either time will do
                pass
        return user, login

    async def logout(self, login: Login, user: User, address: str) -> None:
        await self.store.delete_login(login.id)
        await self.audit.record("logout", actor=user.username, address=address)

    # ---- TOTP -----------------------------------------------------------------------------------
    @staticmethod
    def _totp(secret_b32: str) -> TOTP:
        return TOTP(base64.b32decode(secret_b32), 6, SHA1(), TOTP_STEP, enforce_key_length=False)

    def _verify_totp(self, secret_b32: str, code: str, last_step: int) -> int | None:
        """The time step a code belongs to (±1 step of drift), if valid and newer than last_step."""
        if not isinstance(code, str) or not code.isascii() or not code.isdigit() or len(code) != 6:
            return None
        totp = self._totp(secret_b32)
        now = int(time.time())
        for drift in (0, -1, 1):
            at = now + drift * TOTP_STEP
            step = at // TOTP_STEP
            try:
                totp.verify(code.encode(), at)
            except InvalidToken:
                continue
            return step if step > last_step else None
        return None

    def totp_code(self, secret_b32: str, at: float | None = None) -> str:
        """The current code for a secret (used by tests and the CLI)."""
        return self._totp(secret_b32).generate(int(at or time.time())).decode()

    async def begin_totp(self, user: User) -> tuple[str, str]:
        """Start enrolment: returns (base32 secret, otpauth URI); confirmed by the first code."""
        secret = base64.b32encode(secrets.token_bytes(20)).decode()
        user.totp_pending = self.vault.seal(secret, f"totp-pending:{user.id}")
        await self.store.save(user)
        uri = self._totp(secret).get_provisioning_uri(user.username, "Bastion")
        return secret, uri

    async def confirm_totp(self, user: User, code: str) -> User:
        if not user.totp_pending:
            raise Conflict("start TOTP enrolment first")
        secret = self.vault.open(user.totp_pending, f"totp-pending:{user.id}")
        step = self._verify_totp(secret, code, 0)
        if step is None:
            raise Invalid("wrong TOTP code; check the time on your device")
        user.totp_secret = self.vault.seal(secret, f"totp:{user.id}")
        user.totp_pending = ""
        user.totp_last_step = step
        await self.store.save(user)
        await self.audit.record("totp.enrolled", actor=user.username, target=user.username)
        return user

    async def disable_totp(self, user: User, *, actor: str) -> User:
        user.totp_secret = ""
        user.totp_pending = ""
        await self.store.save(user)
        await self.audit.record("totp.disabled", actor=actor, target=user.username)
        return user

    # ---- API tokens -------------------------------------------------------------------------------
    def check_token_request(self, principal: Principal, scopes: object, ttl_days: object) -> tuple[list[str], int]:
        """Validated scopes and lifetime for a new token; a token may only issue tokens within its own scopes."""
        if scopes is None:
            scopes = list(DEFAULT_TOKEN_SCOPES)
        if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
            raise Invalid(f"scopes must be a non-empty list of: {', '.join(TOKEN_SCOPES)}")
        unknown = [s for s in scopes if s not in TOKEN_SCOPES]
        if unknown:
            raise Invalid(f"unknown scope {unknown[0][:20]!r}; allowed: {', '.join(TOKEN_SCOPES)}")
        beyond = [s for s in scopes if not principal.may(s)]
        if beyond:
            raise Forbidden(f"a token cannot issue a token with a scope it does not hold ({beyond[0]})")
        cfg = self.config.auth
        if ttl_days is None:
            return sorted(set(scopes), key=TOKEN_SCOPES.index), min(cfg.token_ttl_default, cfg.token_ttl_max)
        if isinstance(ttl_days, bool) or not isinstance(ttl_days, int) or not 1 <= ttl_days <= cfg.token_ttl_max:
            raise Invalid(f"ttl_days must be a whole number of days between 1 and {cfg.token_ttl_max}")
        return sorted(set(scopes), key=TOKEN_SCOPES.index), ttl_days

    async def issue_token(self, user: User, name: str, scopes: list[str] | None = None,
                          ttl_days: int | None = None) -> tuple[ApiToken, str]:
        """A new token (shown once) with scopes and an expiry; defaults from [auth] token_ttl_default."""
        secret = secrets.token_urlsafe(32)
        days = min(ttl_days or self.config.auth.token_ttl_default, self.config.auth.token_ttl_max)
        token = ApiToken(user_id=user.id, name=name, token_hash=hashlib.sha256(secret.encode()).hexdigest(),
                         scopes=list(scopes or DEFAULT_TOKEN_SCOPES))
        token.expires_at = token.created_at + days * DAY
        presented = f"{TOKEN_PREFIX}{token.id}_{secret}"
        from .protocol import token_envelope_key
        token.sealed_envelope_key = self.vault.seal(token_envelope_key(presented).hex(), f"envelope-key:{token.id}")
        await self.store.create_token(token)
        await self.audit.record("token.issued", actor=user.username, target=token.id, name=name, scopes=token.scopes,
                                expires_at=token.expires_at)
        return token, presented

    async def revoke_token(self, principal: Principal, token_id: str) -> None:
        token = await self.store.get_token(token_id)
        if token is None or (token.user_id != principal.user.id and not principal.has_role("admin")):
            raise NotFound("token not found")
        await self.store.delete_token(token_id)
        await self.audit.record("token.revoked", actor=principal.user.username, target=token_id)

    async def resolve_token(self, presented: str, address: str = "") -> Principal:
        """The principal behind a Bearer token; raises Unauthenticated with a clear reason (audited, rate-limited)."""
        try:
            user, token = await self._check_token(presented)
        except (Unauthenticated, Forbidden) as exc:
            await self.audit.record_limited("token.refused", address, address=address, why=exc.message)
            raise
        await self._touch_token(token)
        return Principal(user=user, via="token", scopes=token_scopes(token))

    async def _check_token(self, presented: str) -> tuple[User, ApiToken]:
        if not presented.startswith(TOKEN_PREFIX) or presented.count("_") < 2 or len(presented) > 200:
            raise Unauthenticated("malformed API token")
        token_id, _, secret = presented[len(TOKEN_PREFIX):].partition("_")
        token = await self.store.get_token(token_id) if v.ID_RE.match(token_id) else None
        if token is None or not hmac.compare_digest(token.token_hash, hashlib.sha256(secret.encode()).hexdigest()):
            raise Unauthenticated("API token is unknown or revoked")
        if token_expires_at(token, self.config) <= time.time():
            raise Unauthenticated("API token has expired; create a new one on your Account page")
        user = await self.store.get_user(token.user_id)
        if user is None or user.disabled:
            raise Forbidden("the token's user is disabled")
        return user, token

    async def _touch_token(self, token: ApiToken) -> None:
        if time.time() - token.last_used_at > 60:  # at most one write a minute per token
            token.last_used_at = time.time()
            try:
                await self.store.save(token)
            except Conflict:
                pass

