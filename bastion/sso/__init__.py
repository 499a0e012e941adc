"""Single sign-on: OpenID Connect providers and LDAP directories, users made just in time, and the mapping
from groups (or claims) to roles and category grants, re-evaluated at every sign-in.

`SsoService` is built by the composition root with the providers file read once; handlers call `begin_oidc`,
`finish_oidc` and `directory_login`; the background job calls `recheck_directory_users`.
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable

from .. import validation as v
from ..audit import Audit
from ..auth import AuthService
from ..config import Config
from ..errors import BastionError, Forbidden, Invalid, NotFound, Unauthenticated
from ..hub import SessionHub
from ..store import Grant, Login, SsoState, Store, User
from .ldap import DirectoryRefused, LdapClient
from .oidc import OidcClient
from .settings import LdapDirectory, MappingRule, OidcProvider, SsoProviders, load_providers

log = logging.getLogger(__name__)
STATE_RE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
BROWSER_COOKIE = "bastion_sso"  # random value binding a pending sign-in to the browser that started it
ROLE_ORDER = v.ROLES


@dataclass(frozen=True)
class Mapping:
    """What a user's groups give: roles and category names."""

    roles: tuple[str, ...]
    categories: tuple[str, ...]


def evaluate(rules: Iterable[MappingRule], groups: Iterable[str], claims: dict[str, Any] | None = None) -> Mapping:
    """Every rule that matches adds its roles and categories (groups compared case-insensitively)."""
    lowered = frozenset(g.lower() for g in groups)
    roles: set[str] = set()
    categories: set[str] = set()
    for rule in rules:
        if rule.matches(lowered, claims or {}):
            roles.update(rule.roles)
            categories.update(rule.categories)
    return Mapping(roles=tuple(r for r in ROLE_ORDER if r in roles), categories=tuple(sorted(categories)))


def browser_hash(value: str) -> str:
    """What a pending sign-in keeps of the browser's random cookie value."""
    return hashlib.sha256(value.encode()).hexdigest()


class SsoService:
    """Sign-ins through the configured providers, with just-in-time users and group mapping."""

    def __init__(self, config: Config, store: Store, audit: Audit, auth: AuthService, hub: SessionHub,
                 providers: SsoProviders | None = None) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self.auth = auth
        self.hub = hub
        self.providers = providers if providers is not None else load_providers(config.sso.providers_file)
        cfg = config.sso
        self._oidc = {p.name: OidcClient(p, timeout=cfg.http_timeout, clock_skew=cfg.clock_skew)
                      for p in self.providers.oidc}
        # LDAP calls block: they get their own small pool, so a slow directory never takes the password-hashing pool
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bastion-ldap")
        self._ldap = {d.name: LdapClient(d, self._pool, cfg.http_timeout) for d in self.providers.ldap}

    async def start(self) -> None:
        """Audit mapping changes since the last start (the mapping lives in the providers file)."""
        for key, digest in self.providers.mapping_digests().items():
            name = f"sso-mapping:{key}"
            current = await self.store.get_setting(name)
            if current is not None and current.value == digest:
                continue
            await self.store.put_setting(name, digest)
            provider = self.providers.by_key(key)
            rules = [{k: val for k, val in vars(r).items() if val} for r in provider.rules] if provider else []
            await self.audit.record("sso.mapping_changed", actor="config", target=key, was=current.value if current else "",
                                    now=digest, rules=rules)

    def close(self) -> None:
        """Stop the directory thread pool (a call still waiting on a directory is abandoned)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def buttons(self) -> list[dict[str, str]]:
        """The login page's provider buttons and directory choices."""
        return ([{"kind": "oidc", "name": p.name, "label": p.label} for p in self.providers.oidc]
                + [{"kind": "ldap", "name": d.name, "label": d.label} for d in self.providers.ldap])

    # ---- OpenID Connect ------------------------------------------------------------------------------------
    def _oidc_client(self, name: str) -> OidcClient:
        client = self._oidc.get(name) if isinstance(name, str) else None
        if client is None:
            raise NotFound("no such sign-in provider")
        return client

    async def begin_oidc(self, name: str, redirect_uri: str, next_url: str, browser_value: str) -> str:
        """Start a sign-in: remember state, nonce and PKCE verifier server-side; the URL to send the browser to."""
        client = self._oidc_client(name)
        request = await client.begin(redirect_uri)
        await self.store.create_sso_state(SsoState(
            id=request.state, provider=name, nonce=request.nonce, code_verifier=request.code_verifier,
            browser_hash=browser_hash(browser_value), next_url=next_url, redirect_uri=redirect_uri,
            expires_at=time.time() + self.config.sso.state_ttl))
        return request.url

    async def finish_oidc(self, name: str, *, state: str, code: str, error: str, browser_value: str,
                          address: str) -> tuple[User, Login, str]:
        """The provider sent the browser back: check state (once, same browser), exchange the code, validate the
        ID token, provision the user. Returns (user, login, where to go next). Every failure is audited."""
        client = self._oidc_client(name)
        provider = client.provider
        try:
            if error:  # an OAuth error code; anything else in it is dropped (it is shown on our page)
                raise Unauthenticated(f"the sign-in provider refused: {re.sub(r'[^a-z_]', '', error)[:40] or 'error'}")
            pending = await self.store.take_sso_state(state) if STATE_RE.match(state or "") else None
            if pending is None or pending.provider != name:
                raise Unauthenticated("this sign-in link was already used or has expired; start again")
            if not browser_value or not secrets.compare_digest(pending.browser_hash, browser_hash(browser_value)):
                raise Unauthenticated("this sign-in was started in another browser; start again")
            if not code or len(code) > 2048:
                raise Unauthenticated("the sign-in provider sent no authorization code")
            claims = await client.exchange(code, pending.redirect_uri, pending.code_verifier, pending.nonce)
            username = _claim_username(claims, provider)
            groups = _claim_groups(claims, provider)
            user = await self._provision(provider, str(claims["sub"]), username, groups, claims, address)
            login = await self.auth.login_verified(user, address, via=provider.key)
        except BastionError as exc:
            await self.audit.record("sso.failed", actor="", target=provider.key, address=address, ok=False,
                                    why=exc.message[:200])
            raise
        return user, login, pending.next_url

    # ---- LDAP -------------------------------------------------------------------------------------------------
    async def directory_login(self, name: str, username: str, password: str, address: str) -> tuple[User, Login]:
        """Bind as the user in the directory, map their groups, and log them in."""
        directory = self.providers.ldap_named(name) if isinstance(name, str) else None
        if directory is None:
            raise NotFound("no such directory")
        if not v.USERNAME_RE.match(username):
            # never sent to the directory: only plain names reach a filter (and are escaped there too)
            await self.audit.record("sso.failed", actor=username[:64], target=directory.key, address=address, ok=False,
                                    why="malformed username")
            raise Unauthenticated("wrong username or password")
        await self.auth.check_lock(username, address)
        try:
            entry = await self._ldap[name].authenticate(username, password)
            user = await self._provision(directory, entry.dn, username, entry.groups, {}, address)
            login = await self.auth.login_verified(user, address, via=directory.key)
        except BastionError as exc:
            if isinstance(exc, DirectoryRefused):
                await self.auth.count_failure(username, address)
            await self.audit.record("sso.failed", actor=username, target=directory.key, address=address, ok=False,
                                    why=exc.message[:200])
            raise
        await self.auth.clear_failures(username, address)
        return user, login

    async def recheck_directory_users(self, user_ids: Iterable[str]) -> int:
        """Disable directory users (among these) the directory no longer lists as enabled; their sessions end."""
        ended = 0
        for user_id in set(user_ids):
            try:
                user = await self.store.get_user(user_id)
                if user is None or user.disabled or not user.sso_provider.startswith("ldap:"):
                    continue
                client = self._ldap.get(user.sso_provider.partition(":")[2])
                if client is None:
                    continue
                entry = await client.lookup(user.username)
                if entry is not None and entry.enabled and entry.dn == user.sso_subject:
                    continue
                why = "removed from the directory" if entry is None else "disabled in the directory"
                user.disabled = True
                await self.store.save(user)
                await self.store.delete_logins_of_user(user.id)
                await self.audit.record("sso.deprovisioned", actor="directory", target=user.username,
                                        provider=user.sso_provider, why=why)
                await self.hub.policy_changed(user.id, by="directory", why=f"the account was {why}")
                ended += 1
            except Exception:
                log.exception("directory re-check failed [user=%s]", user_id)
        return ended

    # ---- users and mapping -------------------------------------------------------------------------------
    async def _provision(self, provider: OidcProvider | LdapDirectory, subject: str, username: str,
                         groups: Iterable[str], claims: dict[str, Any], address: str) -> User:
        """Find or create the user for this provider's subject and apply the mapping; no role means no access."""
        mapping = evaluate(provider.rules, groups, claims)
        user = await self.store.get_user_by_name(username)
        if user is not None and (user.sso_provider != provider.key or user.sso_subject != subject):
            # a local account, or another provider's user, with the same name: never taken over by a sign-in
            raise Forbidden("an account with this username already exists and is not linked to this provider")
        if user is not None and user.disabled:  # an admin (or the directory re-check) disabled it: an admin enables it
            raise Forbidden("this account is disabled")
        if not mapping.roles:
            if user is not None:
                await self._apply(user, provider, Mapping((), ()), actor=provider.key)
            raise Forbidden("your groups give no access to this bastion; ask an administrator")
        if user is None:
            user = User(username=username, password_hash="", roles=list(mapping.roles), sso_provider=provider.key,
                        sso_subject=subject)
            await self.store.create_user(user)
            await self.audit.record("sso.user_created", actor=provider.key, target=username, roles=user.roles,
                                    address=address)
        await self._apply(user, provider, mapping, actor=provider.key)
        return user

    async def _apply(self, user: User, provider: OidcProvider | LdapDirectory, mapping: Mapping, *, actor: str) -> None:
        """Make roles and this provider's grants what the mapping says; audit what changed."""
        source = f"sso:{provider.key}"
        before_roles = list(user.roles)
        user.roles = list(mapping.roles)
        await self.store.save(user)
        apps = {a.name: a.id for a in (await self.store.list_apps(limit=500)).items}
        wanted = {apps[c] for c in mapping.categories if c in apps}
        unknown = [c for c in mapping.categories if c not in apps]
        grants = await self.store.grants_of_user(user.id)
        added, removed = [], []
        for grant in grants:
            if grant.source == source and grant.app_id not in wanted:
                await self.store.delete_grant(grant.id)
                removed.append(grant.app_id)
        have = {g.app_id for g in grants if g.app_id and (g.source != source or g.app_id in wanted)}
        for app_id in sorted(wanted - have):
            await self.store.create_grant(Grant(user_id=user.id, app_id=app_id, source=source))
            added.append(app_id)
        names = {i: n for n, i in apps.items()}
        if before_roles != user.roles or added or removed:
            await self.audit.record("sso.mapping_applied", actor=actor, target=user.username, roles=user.roles,
                                    was=before_roles, granted=[names.get(a, a) for a in added],
                                    revoked=[names.get(a, a) for a in removed], unknown_categories=unknown)
        if removed or set(before_roles) - set(user.roles):
            await self.hub.policy_changed(user.id, by=actor, why="access changed by the user's groups")


def _claim_username(claims: dict[str, Any], provider: OidcProvider) -> str:
    raw = claims.get(provider.username_claim)
    if not isinstance(raw, str) or not raw:
        raise Invalid(f"the sign-in provider sent no {provider.username_claim} claim to name the user")
    username = raw.strip().lower()
    if "@" in username and provider.username_claim == "email":
        username = username.split("@", 1)[0]
    if not v.USERNAME_RE.match(username):
        raise Invalid("the sign-in provider's user name cannot be a Bastion username "
                      "(1-32 lowercase letters, digits, '.', '_' or '-')")
    return username


def _claim_groups(claims: dict[str, Any], provider: OidcProvider) -> list[str]:
    raw = claims.get(provider.groups_claim, [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        return []
    return [str(g)[:256] for g in raw[:1000] if isinstance(g, (str, int))]


__all__ = ["SsoService", "evaluate", "Mapping", "BROWSER_COOKIE", "load_providers", "SsoProviders"]
