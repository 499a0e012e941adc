"""What admins change after creating it: credentials (rotate the secret), categories, command rules, users
(delete), and a host's connection test. Validation in human words; every change audited (the audit event names
the client's address through `request_client`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import validation as v
from .audit import Audit
from .commands import compile_rule
from .errors import BastionError, Invalid, NotFound
from .hostkeys import HostKeyTrust
from .inventory import MAX_KEY, Inventory
from .ssh import HostKeyChanged, Target, connect, fingerprint
from .store import CommandRule, Credential, Store, User

NAME_RULE = "must be 1-64 letters, digits, spaces or .:@()+-_"
RULE_FIELDS = ("name", "kind", "pattern", "action", "scope", "scope_value", "priority", "enabled")


# ---- credentials and categories ---------------------------------------------------------------------------
async def update_credential(inventory: Inventory, cred_id: str, body: dict[str, Any], actor: str) -> Credential:
    """Rename a credential, change its login, or rotate its secret (a password or a private key)."""
    v.only_fields(body, ("name", "username", "password", "private_key"))
    cred = await inventory.store.get_credential(v.record_id(cred_id, "credential id"))
    if cred is None:
        raise NotFound("credential not found")
    changed: list[str] = []
    if "name" in body:
        cred.name = v.text(body, "name", pattern=v.NAME_RE, rule=NAME_RULE)
        changed.append("name")
    if "username" in body:
        cred.username = v.text(body, "username", max_len=64, pattern=v.LOGIN_RE, rule="must be a valid login name")
        changed.append("login")
    password = v.text(body, "password", required=False, max_len=1024)
    key = v.text(body, "private_key", required=False, max_len=MAX_KEY)
    if password and key:
        raise Invalid("give a new password or a new private key, not both")
    if key:
        inventory._check_private_key(key)
    if password or key:
        cred.kind = "private_key" if key else "password"
        cred.sealed_secret = inventory.vault.seal(key or password, f"credential:{cred.id}")
        changed.append("secret")
    if not changed:
        raise Invalid("nothing to change")
    await inventory.store.save(cred)
    await inventory.audit.record("credential.updated", actor=actor, target=cred.name, changed=changed, kind=cred.kind)
    return cred


async def update_app(inventory: Inventory, app_id: str, body: dict[str, Any], actor: str) -> Any:
    """Rename a category or change its description."""
    v.only_fields(body, ("name", "description"))
    app = await inventory._app(app_id)
    if not body:
        raise Invalid("nothing to change")
    if "name" in body:
        app.name = v.text(body, "name", pattern=v.NAME_RE, rule=NAME_RULE)
    if "description" in body:
        app.description = v.text(body, "description", required=False, max_len=500)
    await inventory.store.save(app)
    await inventory.audit.record("app.updated", actor=actor, target=app.name, changed=sorted(body))
    return app


# ---- host connection test ----------------------------------------------------------------------------------
@dataclass
class HostTest:
    """What a connection test found: reachable, logged in, and the host's key against the pinned one."""

    ok: bool
    message: str
    fingerprint: str = ""  # of the key the host offered ("" if it did not get that far)
    pinned_fingerprint: str = ""
    key: str = ""  # first_use (pinned now) | match | changed | unknown

    def public(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message, "fingerprint": self.fingerprint,
                "pinned_fingerprint": self.pinned_fingerprint, "key": self.key}


async def test_host(inventory: Inventory, trust: HostKeyTrust, host_id: str, actor: str, *, timeout: float) -> HostTest:
    """Connect to a host with its credential, report reachability and its key, then disconnect.

    A first key is pinned (as the first terminal would); a different key is kept for an admin to accept."""
    host = await inventory.get_host(host_id)
    cred = await inventory.store.get_credential(host.credential_id)
    pinned = host.host_key_fingerprint
    if cred is None:
        result = HostTest(False, f"{host.name} has no credential; choose one first", pinned_fingerprint=pinned)
    else:
        target = Target(name=host.name, address=host.address, port=host.port, username=cred.username, kind=cred.kind,
                         secret=inventory.open_secret(cred), pinned_key=host.host_key)
        try:
            done = await connect(target, timeout=timeout)
        except HostKeyChanged as exc:
            offered = getattr(exc, "offered_key", "")
            await trust.mismatch(host, offered, actor)
            result = HostTest(False, exc.message, fingerprint(offered) if offered else "", pinned, "changed")
        except BastionError as exc:  # unreachable, refused credential: the message says which, in words
            result = HostTest(False, exc.message, pinned_fingerprint=pinned, key="unknown")
        else:
            done.conn.close()
            seen = fingerprint(done.offered_key) if done.offered_key else ""
            if done.newly_seen:
                await trust.pin(host, done.offered_key, actor)
                result = HostTest(True, f"{host.name} is reachable and accepted the credential for {cred.username}; "
                                        f"its host key {seen} is pinned from now on", seen, seen, "first_use")
            else:
                result = HostTest(True, f"{host.name} is reachable, accepted the credential for {cred.username} and "
                                        "showed its pinned host key", seen, pinned, "match")
    await inventory.audit.record("host.tested", actor=actor, target=host.name, ok=result.ok,
                                 host=f"{host.address}:{host.port}", result=result.message, key=result.key)
    return result


# ---- users ----------------------------------------------------------------------------------------------------
async def delete_user(store: Store, audit: Audit, user_id: str, *, actor: User) -> User:
    """Delete another user with their grants, tokens and logins; their past sessions stay in the log."""
    user = await store.get_user(v.record_id(user_id, "user id"))
    if user is None:
        raise NotFound("user not found")
    if user.id == actor.id:
        raise Invalid("you cannot delete yourself")
    await store.delete_user(user.id)
    await audit.record("user.deleted", actor=actor.username, target=user.username, roles=user.roles)
    return user


# ---- command rules ------------------------------------------------------------------------------------------
async def _rule_values(store: Store, body: dict[str, Any], rule: CommandRule, partial: bool) -> list[str]:
    """Validate a rule body onto `rule` (every field when not partial); return the names of what changed."""
    v.only_fields(body, RULE_FIELDS)
    if partial and not body:
        raise Invalid("nothing to change")
    given = (lambda name: name in body) if partial else (lambda name: True)
    if given("name"):
        rule.name = v.text(body, "name", pattern=v.NAME_RE, rule=NAME_RULE)
    if given("kind"):
        rule.kind = v.text(body, "kind", required=False, default="regex", max_len=10)
    if given("pattern"):
        rule.pattern = v.text(body, "pattern", max_len=1000)
    if given("action"):
        rule.action = v.text(body, "action", required=False, default="deny", max_len=10)
    if given("scope"):
        rule.scope = v.text(body, "scope", required=False, default="all", max_len=10)
    if given("scope_value"):
        rule.scope_value = v.text(body, "scope_value", required=False, max_len=64)
    if given("priority"):
        rule.priority = v.integer(body, "priority", required=False, minimum=0, maximum=100000, default=100)
    if given("enabled"):
        rule.enabled = v.boolean(body, "enabled", default=True)
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
    elif rule.scope == "app" and await store.get_app(v.record_id(rule.scope_value, "scope_value")) is None:
        raise NotFound("category not found")
    elif rule.scope == "host" and await store.get_host(v.record_id(rule.scope_value, "scope_value")) is None:
        raise NotFound("host not found")
    return sorted(body)


async def create_rule(store: Store, audit: Audit, body: dict[str, Any], actor: str) -> CommandRule:
    """A new command filter rule from a request body."""
    rule = CommandRule()
    await _rule_values(store, body, rule, partial=False)
    await store.create_rule(rule)
    await audit.record("rule.created", actor=actor, target=rule.name, pattern=rule.pattern,
                       rule_action=rule.action, scope=rule.scope)
    return rule


async def update_rule(store: Store, audit: Audit, rule_id: str, body: dict[str, Any], actor: str) -> CommandRule:
    """Change a rule's fields, or switch it on or off."""
    rule = await store.get_rule(v.record_id(rule_id, "rule id"))
    if rule is None:
        raise NotFound("rule not found")
    changed = await _rule_values(store, body, rule, partial=True)
    await store.save(rule)
    await audit.record("rule.updated", actor=actor, target=rule.name, changed=changed, enabled=rule.enabled,
                       pattern=rule.pattern, rule_action=rule.action)
    return rule
