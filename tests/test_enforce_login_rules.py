"""Login rules: allow/deny by network and time window, for everyone, a role or a user; first match wins,
evaluated on the real peer address (X-Forwarded-For only from trusted proxies), fail closed, audited."""
from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import pytest

from bastion.login_rules import rule_matches
from bastion.store import LoginRule, User
from conftest import ADMIN_PASSWORD, BastionApp

PASSWORD = "user-password-1"


def at(text: str, tz: str = "UTC") -> float:
    """Epoch seconds of a local time 'YYYY-MM-DD HH:MM' in tz."""
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=zoneinfo.ZoneInfo(tz)).timestamp()


ALICE = User(id="alice-id", username="alice", roles=["user"])
# 2026-11-30 is a Monday
MATCHES: list[tuple[dict[str, Any], str, float, bool]] = [
    ({}, "10.1.2.3", at("2026-11-30 12:00"), True),
    ({"networks": ["10.0.0.0/8"]}, "10.1.2.3", at("2026-11-30 12:00"), True),
    ({"networks": ["10.0.0.0/8"]}, "11.1.2.3", at("2026-11-30 12:00"), False),
    ({"networks": ["10.0.0.0/8"]}, "::ffff:10.1.2.3", at("2026-11-30 12:00"), True),
    ({"networks": ["2001:db8::/32"]}, "2001:db8::1", at("2026-11-30 12:00"), True),
    ({"networks": ["192.168.0.0/16", "10.0.0.0/8"]}, "10.0.0.1", at("2026-11-30 12:00"), True),
    ({"days": [0]}, "10.0.0.1", at("2026-11-30 12:00"), True),
    ({"days": [1, 2]}, "10.0.0.1", at("2026-11-30 12:00"), False),
    ({"start": "08:00", "end": "18:00"}, "10.0.0.1", at("2026-11-30 17:59"), True),
    ({"start": "08:00", "end": "18:00"}, "10.0.0.1", at("2026-11-30 18:00"), False),
    ({"start": "08:00", "end": "18:00"}, "10.0.0.1", at("2026-11-30 07:59"), False),
    # the window is read in the rule's timezone: 08:00-18:00 in Tokyo is 23:00-09:00 UTC
    ({"start": "08:00", "end": "18:00", "timezone": "Asia/Tokyo"}, "10.0.0.1", at("2026-11-30 02:00"), True),
    ({"start": "08:00", "end": "18:00", "timezone": "Asia/Tokyo"}, "10.0.0.1", at("2026-11-30 12:00"), False),
    # across midnight: Monday 22:00 - 06:00 covers Tuesday 03:00 (it belongs to Monday), not Monday 03:00
    ({"start": "22:00", "end": "06:00", "days": [0]}, "10.0.0.1", at("2026-12-01 03:00"), True),
    ({"start": "22:00", "end": "06:00", "days": [0]}, "10.0.0.1", at("2026-11-30 03:00"), False),
    ({"start": "22:00", "end": "06:00", "days": [0]}, "10.0.0.1", at("2026-11-30 23:00"), True),
    ({"scope": "role", "scope_value": "auditor"}, "10.0.0.1", at("2026-11-30 12:00"), False),
    ({"scope": "role", "scope_value": "user"}, "10.0.0.1", at("2026-11-30 12:00"), True),
    ({"scope": "user", "scope_value": "alice-id"}, "10.0.0.1", at("2026-11-30 12:00"), True),
    ({"scope": "user", "scope_value": "bob-id"}, "10.0.0.1", at("2026-11-30 12:00"), False),
]


@pytest.mark.parametrize("fields, address, now, expected", MATCHES)
def test_rule_matching(fields: dict[str, Any], address: str, now: float, expected: bool) -> None:
    assert rule_matches(LoginRule(name="r", **fields), ALICE, address, now) is expected


async def _login(app: BastionApp, username: str, headers: dict[str, str] | None = None) -> Any:
    c = app.client()
    return await c.post("/api/login", {"username": username, "password": PASSWORD if username != "admin" else ADMIN_PASSWORD},
                        headers=headers)


async def _rule(admin: Any, **body: Any) -> dict[str, Any]:
    resp = await admin.post("/api/login-rules", {"action": "deny", **body})
    assert resp.status == 201, resp
    return resp.json


async def test_crud_is_admin_only_xsrf_checked_and_audited(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    alice = await bastion.user("alice")
    assert (await alice.post("/api/login-rules", {"name": "x", "action": "deny"})).status == 403
    assert (await alice.get("/api/login-rules")).status == 403
    no_xsrf = await bastion.admin()
    no_xsrf.send_xsrf = False
    resp = await no_xsrf.post("/api/login-rules", {"name": "x", "action": "deny"})
    assert resp.status == 403 and "XSRF" in resp.json["error"]
    rule = await _rule(admin, name="office", action="allow", networks=["10.0.0.0/8", "10.1.0.0/16"],
                       days=["mon", "Tuesday", 4], start="08:00", end="18:00", timezone="Europe/Paris", priority=5)
    assert rule["networks"] == ["10.0.0.0/8", "10.1.0.0/16"] and rule["days"] == [0, 1, 4]
    resp = await admin.patch(f"/api/login-rules/{rule['id']}", {"enabled": False})
    assert resp.status == 200 and resp.json["enabled"] is False
    page = await admin.get("/admin/login-rules", headers={"Accept": "text/html"})
    assert page.status == 200 and b"office" in page.body and b"Europe/Paris" in page.body
    assert (await admin.delete(f"/api/login-rules/{rule['id']}")).status == 200
    assert (await admin.get("/api/login-rules")).json["total"] == 0
    actions = [e.action for e in (await bastion.services.store.list_events(actor="admin")).items]
    assert {"login_rule.created", "login_rule.updated", "login_rule.deleted"} <= set(actions)


BAD_RULES: list[tuple[dict[str, Any], int, str]] = [
    ({"action": "maybe"}, 400, "action must be allow or deny"),
    ({"networks": "10.0.0.0/8"}, 400, "networks must be a list"),
    ({"networks": ["10.0.0.0/33"]}, 400, "is not an address or CIDR network"),
    ({"networks": [{"$ne": None}]}, 400, "networks must be a list"),
    ({"days": [7]}, 400, "days must be a list of weekdays"),
    ({"days": ["someday"]}, 400, "days must be a list of weekdays"),
    ({"days": [True]}, 400, "days must be a list of weekdays"),
    ({"start": "08:00"}, 400, "give both start and end"),
    ({"start": "8:00", "end": "18:00"}, 400, "HH:MM"),
    ({"start": "24:00", "end": "18:00"}, 400, "HH:MM"),
    ({"start": "08:00", "end": "08:00"}, 400, "must differ"),
    ({"timezone": "Mars/Olympus"}, 400, "IANA time zone"),
    ({"timezone": "../../etc/passwd"}, 400, "IANA time zone"),
    ({"scope": "group"}, 400, "scope must be all, role or user"),
    ({"scope": "role", "scope_value": "root"}, 400, "scope_value must be a role"),
    ({"scope": "user", "scope_value": "0123456789abcdef"}, 404, "user not found"),
    ({"scope": "user", "scope_value": {"$ne": None}}, 400, "scope_value must be a string"),
    ({"priority": -1}, 400, "priority must be between"),
    ({"enabled": "yes"}, 400, "enabled must be true or false"),
    ({"extra": 1}, 400, "unknown field 'extra'"),
]


@pytest.mark.parametrize("body, status, fragment", BAD_RULES)
async def test_bad_rules_are_refused(bastion: BastionApp, body: dict[str, Any], status: int, fragment: str) -> None:
    admin = await bastion.admin()
    resp = await admin.post("/api/login-rules", {"name": "bad", "action": "deny", **body})
    assert resp.status == status and fragment in resp.json["error"], resp
    assert (await bastion.services.store.list_login_rules()) == []


async def test_first_match_wins_and_refusals_are_audited(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    await bastion.user("alice")
    allow = await _rule(admin, name="local", action="allow", networks=["127.0.0.1/32"], priority=10)
    await _rule(admin, name="nobody", priority=20)
    assert (await _login(bastion, "alice")).status == 200
    assert (await admin.patch(f"/api/login-rules/{allow['id']}", {"priority": 30})).status == 200
    resp = await _login(bastion, "alice")
    assert resp.status == 403 and "not allowed for your account" in resp.json["error"]
    event = (await bastion.services.store.list_events(action="login.refused")).items[0]
    assert event.actor == "alice" and event.detail["rule"] == "nobody" and event.address == "127.0.0.1"
    # a wrong password is a plain failure: the rules say nothing to someone who does not know it
    c = bastion.client()
    resp = await c.post("/api/login", {"username": "alice", "password": "wrong-password"})
    assert resp.status == 401


async def test_role_and_user_scopes(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    await bastion.user("alice")
    await bastion.user("ada", roles=["auditor"])
    await _rule(admin, name="no-auditors", scope="role", scope_value="auditor")
    assert (await _login(bastion, "ada")).status == 403
    assert (await _login(bastion, "alice")).status == 200
    alice_id = (await bastion.services.store.get_user_by_name("alice")).id
    await _rule(admin, name="no-alice", scope="user", scope_value=alice_id)
    assert (await _login(bastion, "alice")).status == 403
    assert (await _login(bastion, "admin")).status == 200


async def test_time_window_now(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    await bastion.user("alice")
    now = dt.datetime.now(zoneinfo.ZoneInfo("Asia/Tokyo"))
    later = await _rule(admin, name="later", start=(now + dt.timedelta(hours=1)).strftime("%H:%M"),
                        end=(now + dt.timedelta(hours=2)).strftime("%H:%M"), timezone="Asia/Tokyo")
    assert (await _login(bastion, "alice")).status == 200  # the window has not begun
    resp = await admin.patch(f"/api/login-rules/{later['id']}", {
        "start": (now - dt.timedelta(hours=1)).strftime("%H:%M"), "end": (now + dt.timedelta(hours=1)).strftime("%H:%M")})
    assert resp.status == 200, resp
    assert (await _login(bastion, "alice")).status == 403


async def test_real_peer_address_and_trusted_proxies(make_bastion) -> None:
    # without trusted proxies, X-Forwarded-For is not believed: the peer is 127.0.0.1
    plain = await make_bastion()
    admin = await plain.admin()
    await plain.user("alice")
    await _rule(admin, name="doc-net", networks=["203.0.113.0/24"])
    assert (await _login(plain, "alice", {"X-Forwarded-For": "203.0.113.7"})).status == 200
    await _rule(admin, name="loopback", networks=["127.0.0.0/8"], scope="role", scope_value="user")
    assert (await _login(plain, "alice", {"X-Forwarded-For": "198.51.100.1"})).status == 403


async def test_forwarded_address_from_a_trusted_proxy(make_bastion) -> None:
    proxied = await make_bastion(server_trusted_proxies="127.0.0.1")
    admin = await proxied.admin()
    await proxied.user("alice")
    await _rule(admin, name="doc-net", networks=["203.0.113.0/24"])
    resp = await _login(proxied, "alice", {"X-Forwarded-For": "203.0.113.7"})
    assert resp.status == 403
    assert (await _login(proxied, "alice", {"X-Forwarded-For": "198.51.100.1"})).status == 200
    event = (await proxied.services.store.list_events(action="login.refused")).items[0]
    assert event.address == "203.0.113.7"


async def test_fail_closed_when_a_rule_cannot_be_evaluated(bastion: BastionApp) -> None:
    """A stored rule that cannot be read (written by a broken tool or another version) refuses every login."""
    admin = await bastion.admin()
    await bastion.user("alice")
    await bastion.services.store.create_login_rule(LoginRule(name="broken", action="allow", networks=["not-a-network"]))
    resp = await _login(bastion, "alice")
    assert resp.status == 503 and "login rules cannot be read" in resp.json["error"]
    assert (await _login(bastion, "admin")).status == 503
    event = (await bastion.services.store.list_events(action="login.refused")).items[0]
    assert event.detail["why"] == "the login rules cannot be read"
    broken = (await bastion.services.store.list_login_rules())[0]
    assert (await admin.delete(f"/api/login-rules/{broken.id}")).status == 200  # a live admin session can repair it
    assert (await _login(bastion, "alice")).status == 200
