"""Login rules: admins allow or deny logins by network (CIDR) and time window, for everyone, a role or a user.

Evaluation (at every password login, on the real peer address: X-Forwarded-For only from trusted proxies):
enabled rules in priority order (lower first, then oldest); the first rule whose scope, network and time
window all match decides (allow or deny). No matching rule: the login is allowed, so a bastion without rules
behaves as before; an allow-list is "allow …" rules followed by a "deny everyone" rule.
Fail closed: when the rule table cannot be read, or a stored rule cannot be evaluated, the login is refused.
A time window is read in the rule's own timezone (IANA name, UTC by default); days are 0 = Monday … 6 = Sunday;
a window whose start is after its end runs across midnight and belongs to the day it starts on.
Rules apply to logins (password step); API tokens have their own expiry and scopes.
"""
from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import logging
import re
import time
import zoneinfo
from typing import Any

from . import validation as v
from .audit import Audit
from .errors import BastionError, Forbidden, Invalid, NotFound, Unavailable
from .store import LoginRule, Store, User

log = logging.getLogger(__name__)
ACTIONS = ("allow", "deny")
SCOPES = ("all", "role", "user")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
TZ_RE = re.compile(r"^[A-Za-z0-9_+-]{1,32}(/[A-Za-z0-9_+-]{1,32}){0,2}$")
MAX_NETWORKS = 64
FIELDS = ("name", "action", "scope", "scope_value", "networks", "days", "start", "end", "timezone", "priority", "enabled")


@functools.lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def rule_matches(rule: LoginRule, user: User, address: str, now: float) -> bool:
    """Whether a rule applies to this user, address and moment (raises ValueError on a malformed stored rule)."""
    if rule.scope == "role" and rule.scope_value not in user.roles:
        return False
    if rule.scope == "user" and rule.scope_value != user.id:
        return False
    if rule.scope not in SCOPES:
        raise ValueError(f"unknown scope {rule.scope!r}")
    if rule.networks:
        peer = ipaddress.ip_address(address)
        if peer.version == 6 and peer.ipv4_mapped:  # ::ffff:10.0.0.1 is 10.0.0.1
            peer = peer.ipv4_mapped
        if not any(peer in ipaddress.ip_network(n, strict=False) for n in rule.networks):
            return False
    local = dt.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(rule.timezone or "UTC"))
    minute = local.hour * 60 + local.minute
    day = local.weekday()
    if rule.start or rule.end:
        start, end = _minutes(rule.start), _minutes(rule.end)
        if start < end:
            inside = start <= minute < end
        else:  # across midnight: the part after midnight belongs to the day the window started
            inside = minute >= start or minute < end
            if minute < end:
                day = (day - 1) % 7
        if not inside:
            return False
    return not rule.days or day in rule.days


def decide(rules: list[LoginRule], user: User, address: str, now: float) -> LoginRule | None:
    """The first enabled rule that matches (rules in evaluation order), or None."""
    for rule in rules:
        if rule.enabled and rule_matches(rule, user, address, now):
            return rule
    return None


class LoginRules:
    """Admin management of login rules, and the check every password login passes."""

    def __init__(self, store: Store, audit: Audit) -> None:
        self.store = store
        self.audit = audit

    async def check(self, user: User, address: str, now: float | None = None) -> None:
        """Refuse (Forbidden, or Unavailable when the rules cannot be read) unless the rules allow this login."""
        try:
            rule = decide(await self.store.list_login_rules(), user, address, time.time() if now is None else now)
        except (BastionError, ValueError, TypeError, KeyError, zoneinfo.ZoneInfoNotFoundError) as exc:
            # fail closed: a rule table that cannot be read or evaluated lets nobody in
            log.error("login rules cannot be evaluated (%s); refusing the login of %s", type(exc).__name__, user.username)
            await self._refused(user, address, "", "the login rules cannot be read")
            raise Unavailable("logins are refused because the login rules cannot be read; try again shortly") from None
        if rule is not None and rule.action == "deny":
            await self._refused(user, address, rule.name, "denied by a login rule")
            raise Forbidden("logins from this address or at this time are not allowed for your account")

    async def _refused(self, user: User, address: str, rule: str, why: str) -> None:
        try:
            await self.audit.record_limited("login.refused", address, actor=user.username, address=address, rule=rule,
                                            why=why)
        except Exception:  # the refusal stands even when the audit log cannot be written
            log.exception("login refusal could not be audited")

    # ---- administration ------------------------------------------------------------------------
    async def _fields(self, body: dict[str, Any], partial: bool) -> dict[str, Any]:
        v.only_fields(body, FIELDS)
        out: dict[str, Any] = {}
        if not partial or "name" in body:
            out["name"] = v.text(body, "name", pattern=v.NAME_RE, rule="must be 1-64 letters, digits, spaces or .:@()+-_")
        if not partial or "action" in body:
            out["action"] = v.text(body, "action", max_len=10)
            if out["action"] not in ACTIONS:
                raise Invalid("action must be allow or deny")
        if not partial or "scope" in body or "scope_value" in body:
            out["scope"] = v.text(body, "scope", required=False, default="all", max_len=10)
            value = v.text(body, "scope_value", required=False, max_len=64)
            if out["scope"] not in SCOPES:
                raise Invalid("scope must be all, role or user")
            if out["scope"] == "all":
                value = ""
            elif out["scope"] == "role" and value not in v.ROLES:
                raise Invalid(f"scope_value must be a role: {', '.join(v.ROLES)}")
            elif out["scope"] == "user":
                if await self.store.get_user(v.record_id(value, "scope_value")) is None:
                    raise NotFound("user not found")
            out["scope_value"] = value
        if not partial or "networks" in body:
            out["networks"] = self._networks(body.get("networks", []))
        if not partial or "days" in body:
            out["days"] = self._days(body.get("days", []))
        if not partial or "start" in body or "end" in body:
            start = v.text(body, "start", required=False, max_len=5)
            end = v.text(body, "end", required=False, max_len=5)
            if bool(start) != bool(end):
                raise Invalid("give both start and end (HH:MM), or neither for the whole day")
            if start and (not HHMM_RE.match(start) or not HHMM_RE.match(end)):
                raise Invalid("start and end must be times as HH:MM (00:00 to 23:59)")
            if start and start == end:
                raise Invalid("start and end must differ (leave both empty for the whole day)")
            out["start"], out["end"] = start, end
        if not partial or "timezone" in body:
            tz = v.text(body, "timezone", required=False, default="UTC", max_len=100)
            if not TZ_RE.match(tz) or tz not in _zones():
                raise Invalid("timezone must be an IANA time zone name such as UTC or Europe/Paris")
            out["timezone"] = tz
        if not partial or "priority" in body:
            out["priority"] = v.integer(body, "priority", required=False, minimum=0, maximum=100000, default=100)
        if not partial or "enabled" in body:
            out["enabled"] = v.boolean(body, "enabled", default=True)
        return out

    @staticmethod
    def _networks(value: Any) -> list[str]:
        if value is None or value == "":
            return []
        if not isinstance(value, list) or len(value) > MAX_NETWORKS or not all(isinstance(n, str) for n in value):
            raise Invalid(f"networks must be a list of at most {MAX_NETWORKS} addresses or CIDR networks")
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
            except ValueError:
                raise Invalid(f"networks: {item[:50]!r} is not an address or CIDR network such as 10.0.0.0/8") from None
        return sorted(set(out), key=out.index)

    @staticmethod
    def _days(value: Any) -> list[int]:
        if value is None or value == "":
            return []
        if not isinstance(value, list) or len(value) > 7:
            raise Invalid("days must be a list of weekdays (0-6 from Monday, or mon … sun)")
        out = set()
        for item in value:
            if isinstance(item, str) and item.strip().lower()[:3] in DAY_NAMES and len(item.strip()) <= 9:
                out.add(DAY_NAMES.index(item.strip().lower()[:3]))
            elif isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 6:
                out.add(item)
            else:
                raise Invalid("days must be a list of weekdays (0-6 from Monday, or mon … sun)")
        return sorted(out)

    async def create(self, body: dict[str, Any], actor: str) -> LoginRule:
        rule = LoginRule(**await self._fields(body, partial=False))
        await self.store.create_login_rule(rule)
        await self.audit.record("login_rule.created", actor=actor, target=rule.name, **self._summary(rule))
        return rule

    async def get(self, rule_id: str) -> LoginRule:
        rule = await self.store.get_login_rule(v.record_id(rule_id, "login rule id"))
        if rule is None:
            raise NotFound("login rule not found")
        return rule

    async def update(self, rule_id: str, body: dict[str, Any], actor: str) -> LoginRule:
        rule = await self.get(rule_id)
        changes = await self._fields(body, partial=True)
        if not changes:
            raise Invalid("nothing to change")
        for name, value in changes.items():
            setattr(rule, name, value)
        await self.store.save(rule)
        await self.audit.record("login_rule.updated", actor=actor, target=rule.name, fields=sorted(changes),
                                **self._summary(rule))
        return rule

    async def delete(self, rule_id: str, actor: str) -> None:
        rule = await self.store.delete_login_rule(v.record_id(rule_id, "login rule id"))
        await self.audit.record("login_rule.deleted", actor=actor, target=rule.name, **self._summary(rule))

    @staticmethod
    def _summary(rule: LoginRule) -> dict[str, Any]:
        return {"rule_action": rule.action, "scope": rule.scope, "scope_value": rule.scope_value,
                "networks": rule.networks, "days": rule.days, "window": f"{rule.start}-{rule.end}" if rule.start else "",
                "timezone": rule.timezone, "priority": rule.priority, "enabled": rule.enabled}
