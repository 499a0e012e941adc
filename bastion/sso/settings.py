"""The SSO providers file ([sso] providers_file, TOML): OpenID providers, LDAP directories and their mappings.

Read once at start-up into frozen dataclasses; a wrong entry stops start-up with one line naming the provider
and the key. Secrets (client secrets, the directory's bind password) may be given inline or read from a
file (`*_file`), and never appear in a repr.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import ConfigError
from ..validation import ROLES

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
CLAIM_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")
ID_TOKEN_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True)
class MappingRule:
    """One rule: a group (or a claim's value) gives roles and grants on categories."""

    group: str = ""  # matches one of the user's groups (case-insensitive; a name or a DN)
    claim: str = ""  # or: this claim (string or list of strings)...
    value: str = ""  # ...holds this value
    roles: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # category (app) names granted

    def matches(self, groups: frozenset[str], claims: dict[str, Any]) -> bool:
        """Whether the rule applies to a user with these (lower-cased) groups and claims."""
        if self.group:
            return self.group.lower() in groups
        got = claims.get(self.claim)
        if isinstance(got, list):
            return self.value in [str(x) for x in got]
        return got is not None and str(got) == self.value


@dataclass(frozen=True)
class OidcProvider:
    """An OpenID Connect provider (authorization code flow with PKCE)."""

    name: str
    label: str
    issuer: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    token_auth_method: str = "client_secret_basic"  # or client_secret_post
    rules: tuple[MappingRule, ...] = ()

    @property
    def key(self) -> str:
        return f"oidc:{self.name}"


@dataclass(frozen=True)
class LdapDirectory:
    """An LDAP / Active Directory server: find the user with the service account, bind as the user, read groups."""

    name: str
    label: str
    url: str  # ldaps://host[:port] or ldap://host[:port] (then start_tls, unless allow_plain on loopback)
    bind_dn: str  # service account for searches and the periodic re-check
    bind_password: str = field(default="", repr=False)
    user_base: str = ""
    user_filter: str = "(uid={username})"  # {username} is escaped before it is placed
    group_base: str = ""
    group_filter: str = "(member={user_dn})"  # {user_dn} is escaped before it is placed
    group_name_attribute: str = "cn"
    enabled_filter: str = ""  # an entry must also match this to count as enabled, e.g. AD's account-disabled bit
    start_tls: bool = True
    ca_file: str = ""  # CA bundle that signed the server's certificate ("" = the system's)
    allow_plain: bool = False  # no TLS at all: only for a server on the loopback address
    rules: tuple[MappingRule, ...] = ()

    @property
    def key(self) -> str:
        return f"ldap:{self.name}"

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or ""

    @property
    def port(self) -> int:
        parsed = urlparse(self.url)
        return parsed.port or (636 if parsed.scheme == "ldaps" else 389)

    @property
    def ldaps(self) -> bool:
        return urlparse(self.url).scheme == "ldaps"


@dataclass(frozen=True)
class SsoProviders:
    """Every configured provider, by name."""

    oidc: tuple[OidcProvider, ...] = ()
    ldap: tuple[LdapDirectory, ...] = ()

    def oidc_named(self, name: str) -> OidcProvider | None:
        """The OpenID provider of this name, if configured."""
        return next((p for p in self.oidc if p.name == name), None)

    def ldap_named(self, name: str) -> LdapDirectory | None:
        """The directory of this name, if configured."""
        return next((d for d in self.ldap if d.name == name), None)

    def by_key(self, key: str) -> OidcProvider | LdapDirectory | None:
        """A provider by its key ("oidc:<name>" or "ldap:<name>")."""
        kind, _, name = key.partition(":")
        return self.oidc_named(name) if kind == "oidc" else self.ldap_named(name) if kind == "ldap" else None

    def mapping_digests(self) -> dict[str, str]:
        """A digest of each provider's mapping rules (a change is audited at start-up)."""
        out = {}
        for provider in (*self.oidc, *self.ldap):
            text = json.dumps([asdict(r) for r in provider.rules], sort_keys=True)
            out[provider.key] = hashlib.sha256(text.encode()).hexdigest()[:16]
        return out


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine (plain HTTP/LDAP is tolerated only there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Entry:
    """Reads one table of the file with messages naming where the problem is."""

    def __init__(self, where: str, table: dict[str, Any], base: Path) -> None:
        self.where, self.table, self.base = where, table, base

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"SSO providers file: {self.where} {key}: {problem}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(key, "is required")
        if not isinstance(value, str):
            raise self.fail(key, "must be a string")
        return value.strip()

    def flag(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def words(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.table.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "must be a list of strings")
        return tuple(v.strip() for v in value if v.strip())

    def secret(self, key: str) -> str:
        """An inline secret, or the first line of the file `<key>_file` names (relative to the providers file)."""
        inline = self.table.get(key)
        path = self.table.get(f"{key}_file")
        if inline is not None and path is not None:
            raise self.fail(key, f"give either {key} or {key}_file, not both")
        if path is not None:
            if not isinstance(path, str):
                raise self.fail(f"{key}_file", "must be a path")
            file = (self.base / path) if not Path(path).is_absolute() else Path(path)
            try:
                return file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise self.fail(f"{key}_file", f"cannot be read ({exc.strerror})") from None
        if inline is None:
            return ""
        if not isinstance(inline, str):
            raise self.fail(key, "must be a string")
        return inline

    def known(self, keys: set[str]) -> None:
        for key in self.table:
            if key not in keys:
                raise self.fail(key, "unknown key")


def _rules(entry: _Entry) -> tuple[MappingRule, ...]:
    raw = entry.table.get("map", [])
    if not isinstance(raw, list):
        raise entry.fail("map", "must be a list of [[...map]] tables")
    rules = []
    for i, table in enumerate(raw, 1):
        if not isinstance(table, dict):
            raise entry.fail("map", "must be a list of [[...map]] tables")
        rule = _Entry(f"{entry.where} map #{i}", table, entry.base)
        rule.known({"group", "claim", "value", "roles", "categories"})
        group, claim = rule.text("group", ""), rule.text("claim", "")
        if bool(group) == bool(claim):
            raise rule.fail("group", "give either group or claim (with value)")
        if claim and not CLAIM_RE.match(claim):
            raise rule.fail("claim", "must be a claim name")
        value = rule.text("value", "")
        if claim and not value:
            raise rule.fail("value", "is required with claim")
        roles = rule.words("roles", ())
        bad = [r for r in roles if r not in ROLES]
        if bad:
            raise rule.fail("roles", f"unknown role {bad[0]!r}; allowed: {', '.join(ROLES)}")
        categories = rule.words("categories", ())
        if not roles and not categories:
            raise rule.fail("roles", "a rule must give roles, categories or both")
        rules.append(MappingRule(group=group, claim=claim, value=value, roles=roles, categories=categories))
    return tuple(rules)


def _name(entry: _Entry, seen: set[str]) -> str:
    name = entry.text("name")
    if not NAME_RE.match(name):
        raise entry.fail("name", "must be 1-32 lowercase letters, digits, '_' or '-'")
    if name in seen:
        raise entry.fail("name", f"{name!r} is used twice")
    seen.add(name)
    return name


def _oidc(entry: _Entry, seen: set[str]) -> OidcProvider:
    entry.known({"name", "label", "issuer", "client_id", "client_secret", "client_secret_file", "scopes",
                 "username_claim", "groups_claim", "token_auth_method", "map"})
    name = _name(entry, seen)
    issuer = entry.text("issuer").rstrip("/")
    parsed = urlparse(issuer)
    if parsed.scheme not in ("https", "http") or not parsed.hostname or parsed.query or parsed.fragment:
        raise entry.fail("issuer", "must be an https:// URL")
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        raise entry.fail("issuer", "must be https:// (plain http is allowed only on the loopback address)")
    scopes = entry.words("scopes", ("openid", "profile", "email"))
    if "openid" not in scopes:
        raise entry.fail("scopes", "must include openid")
    username_claim = entry.text("username_claim", "preferred_username")
    groups_claim = entry.text("groups_claim", "groups")
    for key, value in (("username_claim", username_claim), ("groups_claim", groups_claim)):
        if not CLAIM_RE.match(value):
            raise entry.fail(key, "must be a claim name")
    client_id = entry.text("client_id")
    if not client_id:
        raise entry.fail("client_id", "is required")
    token_auth_method = entry.text("token_auth_method", "client_secret_basic")
    if token_auth_method not in ("client_secret_basic", "client_secret_post"):
        raise entry.fail("token_auth_method", "must be client_secret_basic or client_secret_post")
    return OidcProvider(name=name, label=entry.text("label", name) or name, issuer=issuer, client_id=client_id,
                        client_secret=entry.secret("client_secret"), scopes=scopes, username_claim=username_claim,
                        groups_claim=groups_claim, token_auth_method=token_auth_method, rules=_rules(entry))


def _ldap(entry: _Entry, seen: set[str]) -> LdapDirectory:
    entry.known({"name", "label", "url", "bind_dn", "bind_password", "bind_password_file", "user_base", "user_filter",
                 "group_base", "group_filter", "group_name_attribute", "enabled_filter", "start_tls", "ca_file",
                 "allow_plain", "map"})
    name = _name(entry, seen)
    url = entry.text("url")
    parsed = urlparse(url)
    if parsed.scheme not in ("ldap", "ldaps") or not parsed.hostname or parsed.path not in ("", "/"):
        raise entry.fail("url", "must be ldaps://host[:port] or ldap://host[:port]")
    start_tls = entry.flag("start_tls", parsed.scheme == "ldap")
    allow_plain = entry.flag("allow_plain", False)
    if parsed.scheme == "ldap" and not start_tls:
        if not allow_plain:
            raise entry.fail("start_tls", "ldap:// without StartTLS sends passwords in clear; use ldaps:// or start_tls")
        if not is_loopback(parsed.hostname):
            raise entry.fail("allow_plain", "is allowed only for a directory on the loopback address")
    user_filter = entry.text("user_filter", "(uid={username})")
    if "{username}" not in user_filter:
        raise entry.fail("user_filter", "must contain {username}")
    group_filter = entry.text("group_filter", "(member={user_dn})")
    if "{user_dn}" not in group_filter:
        raise entry.fail("group_filter", "must contain {user_dn}")
    ca_file = entry.text("ca_file", "")
    if ca_file and not Path(ca_file).is_absolute():
        ca_file = str(entry.base / ca_file)
    if ca_file and not Path(ca_file).is_file():
        raise entry.fail("ca_file", "does not exist")
    return LdapDirectory(name=name, label=entry.text("label", name) or name, url=url, bind_dn=entry.text("bind_dn"),
                         bind_password=entry.secret("bind_password"), user_base=entry.text("user_base"),
                         user_filter=user_filter, group_base=entry.text("group_base"), group_filter=group_filter,
                         group_name_attribute=entry.text("group_name_attribute", "cn"),
                         enabled_filter=entry.text("enabled_filter", ""), start_tls=start_tls, ca_file=ca_file,
                         allow_plain=allow_plain, rules=_rules(entry))


def load_providers(path: str) -> SsoProviders:
    """Read and check the providers file ("" = no single sign-on)."""
    if not path:
        return SsoProviders()
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"SSO providers file {file}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"SSO providers file {file}: {exc}") from None
    for key in data:
        if key not in ("oidc", "ldap"):
            raise ConfigError(f"SSO providers file: unknown table [{key}] (use [[oidc]] and [[ldap]])")
    seen: set[str] = set()
    base = file.resolve().parent
    oidc, ldap = [], []
    for kind, build, out in (("oidc", _oidc, oidc), ("ldap", _ldap, ldap)):
        tables = data.get(kind, [])
        if not isinstance(tables, list):
            raise ConfigError(f"SSO providers file: use [[{kind}]] (an array of tables)")
        for i, table in enumerate(tables, 1):
            out.append(build(_Entry(f"[[{kind}]] #{i}", table, base), seen))
    return SsoProviders(oidc=tuple(oidc), ldap=tuple(ldap))
