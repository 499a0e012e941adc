"""Accounts over real HTTP: login, cookies, XSRF, lockout, TOTP, API tokens, trusted proxies."""
from __future__ import annotations

import time

import pytest

from conftest import ADMIN_PASSWORD, BastionApp


async def test_login_logout_and_cookie_flags(bastion: BastionApp) -> None:
    c = bastion.client()
    resp = await c.post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 200 and resp.json["user"]["username"] == "admin"
    assert "password_hash" not in resp.json["user"]
    cookie = [h for h in resp.headers.get_list("Set-Cookie") if h.startswith("bastion_login=")][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert (await c.get("/api/me")).json["user"]["roles"] == ["admin"]
    assert (await c.post("/api/logout")).status == 200
    assert (await c.get("/api/me")).status == 401


async def test_session_id_changes_at_login(bastion: BastionApp) -> None:
    c = bastion.client()
    await c.login("admin", ADMIN_PASSWORD)
    first = c.cookies["bastion_login"]
    await c.login("admin", ADMIN_PASSWORD)
    assert c.cookies["bastion_login"] != first
    old = bastion.client()
    old.cookies = {**c.cookies, "bastion_login": first}
    assert (await old.get("/api/me")).status == 401  # the replaced login is gone


async def test_secure_cookie_over_tls_from_trusted_proxy(make_bastion) -> None:
    app = await make_bastion(server_trusted_proxies="127.0.0.1")
    c = app.client()
    await c.get("/login")
    resp = await c.post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD},
                        headers={"X-Forwarded-Proto": "https"})
    cookie = [h for h in resp.headers.get_list("Set-Cookie") if h.startswith("bastion_login=")][0]
    assert "Secure" in cookie


def _login_cookie(resp) -> str:
    return next(h for h in resp.headers.get_list("Set-Cookie") if h.startswith("bastion_login="))


async def test_cookie_secure_always_even_over_plain_http(make_bastion) -> None:
    app = await make_bastion(server_cookie_secure="always")
    resp = await app.client().post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 200, resp
    assert "Secure" in _login_cookie(resp)


async def test_cookie_secure_never_even_over_tls(make_bastion) -> None:
    app = await make_bastion(server_cookie_secure="never", server_trusted_proxies="127.0.0.1")
    resp = await app.client().post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD},
                                   headers={"X-Forwarded-Proto": "https"})
    assert resp.status == 200, resp
    assert "Secure" not in _login_cookie(resp)


async def test_wrong_password_and_unknown_user_look_the_same(bastion: BastionApp) -> None:
    c = bastion.client()
    a = await c.post("/api/login", {"username": "admin", "password": "nope-nope-nope"})
    b = await c.post("/api/login", {"username": "ghost", "password": "nope-nope-nope"})
    assert a.status == b.status == 401 and a.json == b.json == {"error": "wrong username or password"}
    events = await bastion.services.store.list_events(action="login.failed")
    assert events.total == 2
    assert all("nope" not in str(e.detail) for e in events.items)


async def test_xsrf_required_on_state_changes(bastion: BastionApp) -> None:
    c = await bastion.admin()
    c.send_xsrf = False
    resp = await c.post("/api/apps", {"name": "x"})
    assert resp.status == 403 and "XSRF" in resp.json["error"]
    resp = await c.post("/api/apps", {"name": "x"}, headers={"X-XSRFToken": "2|deadbeef|" + "0" * 32 + "|1"})
    assert resp.status == 403
    assert (await bastion.services.store.list_apps()).total == 0


async def test_expired_and_forged_cookies(bastion: BastionApp) -> None:
    c = await bastion.admin()
    # expire every login server-side
    admin_id = (await bastion.services.store.get_user_by_name("admin")).id
    logins = await bastion.services.store.logins_of_user(admin_id)
    assert logins
    for login in logins:
        login.expires_at = time.time() - 1
        await bastion.services.store.save(login)
    resp = await c.get("/api/me")
    assert resp.status == 401 and resp.json == {"error": "log in first"}
    forged = bastion.client()
    forged.cookies["bastion_login"] = "2|1:0|10:1700000000|13:bastion_login|8:Zm9v|" + "0" * 64
    assert (await forged.get("/api/me")).status == 401


async def test_lockout_per_account_visible_to_admin(make_bastion) -> None:
    app = await make_bastion(auth_lockout_threshold="3")
    await app.services.auth.create_user("victim", "victim-password-1", ["user"])
    c = app.client()
    for _ in range(3):
        assert (await c.post("/api/login", {"username": "victim", "password": "wrong-password"})).status == 401
    resp = await c.post("/api/login", {"username": "victim", "password": "victim-password-1"})
    assert resp.status == 429 and "locked" in resp.json["error"]
    await app.services.store.delete_failure("ip:127.0.0.1")  # the address is locked too; let the admin in
    admin = await app.admin()
    users = (await admin.get("/api/users")).json["items"]
    assert [u["locked"] for u in users if u["username"] == "victim"] == [True]
    locks = (await admin.get("/api/locks")).json["items"]
    assert "user:victim" in [lock["key"] for lock in locks]
    locked = await app.services.store.list_events(action="login.locked")
    assert sorted(e.target for e in locked.items) == ["ip:127.0.0.1", "user:victim"]
    assert (await admin.delete("/api/locks/user%3Avictim")).status == 200
    assert (await admin.delete("/api/locks/user%3Avictim")).status == 404
    assert (await c.post("/api/login", {"username": "victim", "password": "victim-password-1"})).status == 200


async def test_lockout_per_address_and_trusted_proxies(make_bastion) -> None:
    app = await make_bastion(auth_lockout_threshold="3", server_trusted_proxies="127.0.0.1")
    c = app.client()
    for i in range(3):  # three different accounts from one client address behind the proxy
        await c.post("/api/login", {"username": f"nobody{i}", "password": "wrong-password"},
                     headers={"X-Forwarded-For": "203.0.113.9"})
    resp = await c.post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD},
                        headers={"X-Forwarded-For": "203.0.113.9"})
    assert resp.status == 429 and "address" in resp.json["error"]
    ok = await c.post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD},
                      headers={"X-Forwarded-For": "198.51.100.7"})
    assert ok.status == 200


async def test_forwarded_for_ignored_from_untrusted_peer(make_bastion) -> None:
    app = await make_bastion(auth_lockout_threshold="2")
    c = app.client()
    for i in range(2):
        await c.post("/api/login", {"username": f"x{i}", "password": "wrong-password"}, headers={"X-Forwarded-For": f"198.51.100.{i}"})
    events = await app.services.store.list_events(action="login.failed")
    assert {e.address for e in events.items} == {"127.0.0.1"}
    resp = await c.post("/api/login", {"username": "admin", "password": ADMIN_PASSWORD}, headers={"X-Forwarded-For": "198.51.100.99"})
    assert resp.status == 429


async def test_totp_enrolment_and_two_step_login(bastion: BastionApp) -> None:
    auth = bastion.services.auth
    c = await bastion.user("tina")
    begin = await c.post("/api/me/totp")
    assert begin.status == 200 and begin.json["uri"].startswith("otpauth://totp/")
    assert begin.json["qr"].startswith("data:image/svg+xml;base64,")
    secret = begin.json["secret"]
    assert (await c.post("/api/me/totp/confirm", {"code": "000000"})).status == 400
    code = auth.totp_code(secret)
    assert (await c.post("/api/me/totp/confirm", {"code": code})).status == 200
    # the code used at enrolment is spent: wait for the next step to log in
    u = await bastion.services.store.get_user_by_name("tina")
    assert u.totp_secret and secret not in u.totp_secret

    c2 = bastion.client()
    first = await c2.post("/api/login", {"username": "tina", "password": "user-password-1"})
    assert first.json == {"totp_required": True}
    half = c2.cookies["bastion_login"]
    assert (await c2.get("/api/me")).status == 401  # a half login reaches nothing
    assert (await c2.get("/api/hosts")).status == 401
    assert (await c2.post("/api/login/totp", {"code": "12345x"})).status == 401
    next_code = auth.totp_code(secret, time.time() + 30)
    ok = await c2.post("/api/login/totp", {"code": next_code})
    assert ok.status == 200, ok
    assert c2.cookies["bastion_login"] != half  # the id changes again after the TOTP step
    assert (await c2.get("/api/me")).status == 200
    # the same code is accepted once only
    c3 = bastion.client()
    await c3.post("/api/login", {"username": "tina", "password": "user-password-1"})
    again = await c3.post("/api/login/totp", {"code": next_code})
    assert again.status == 401 and "already used" in again.json["error"]


async def test_require_totp_blocks_until_enrolled(make_bastion) -> None:
    app = await make_bastion(auth_require_totp="true")
    c = await app.user("uma")
    resp = await c.get("/api/hosts")
    assert resp.status == 403 and "TOTP enrolment is required" in resp.json["error"]
    assert (await c.get("/api/me")).status == 200
    secret = (await c.post("/api/me/totp")).json["secret"]
    assert (await c.post("/api/me/totp/confirm", {"code": app.services.auth.totp_code(secret)})).status == 200
    assert (await c.get("/api/hosts")).status == 200


async def test_api_tokens_issue_use_revoke(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    resp = await admin.post("/api/tokens", {"name": "ci", "scopes": ["read", "manage"]})
    assert resp.status == 201 and resp.json["token"].startswith("bst_")
    token, token_id = resp.json["token"], resp.json["id"]
    listed = (await admin.get("/api/tokens")).json["items"]
    assert [t["id"] for t in listed] == [token_id] and "token_hash" not in listed[0] and "token" not in listed[0]
    script = bastion.client()
    script.token = token
    assert (await script.post("/api/apps", {"name": "via-token"})).status == 201  # no XSRF needed for Bearer
    assert (await admin.delete(f"/api/tokens/{token_id}")).status == 200
    resp = await script.get("/api/apps")
    assert resp.status == 401 and "revoked" in resp.json["error"]
    script.token = "bst_nonsense"
    assert (await script.get("/api/apps")).status == 401
    stored = await bastion.services.store.get_token(token_id)
    assert stored is None
    assert (await bastion.services.store.list_events(action="token.revoked")).total == 1


async def test_disabled_user_cannot_log_in_and_loses_logins(bastion: BastionApp) -> None:
    c = await bastion.user("vic")
    admin = await bastion.admin()
    uid = (await bastion.services.store.get_user_by_name("vic")).id
    assert (await admin.patch(f"/api/users/{uid}", {"disabled": True})).status == 200
    assert (await c.get("/api/me")).status == 401
    resp = await bastion.client().post("/api/login", {"username": "vic", "password": "user-password-1"})
    assert resp.status == 401 and "disabled" in resp.json["error"]


@pytest.mark.parametrize("path", ["/", "/admin/users", "/audit", "/account"])
async def test_pages_redirect_to_login(bastion: BastionApp, path: str) -> None:
    resp = await bastion.client().request("GET", path, headers={"Accept": "text/html"})
    assert resp.status == 302 and resp.headers["Location"].startswith("/login?next=")


async def test_login_page_next_is_local_only(bastion: BastionApp) -> None:
    c = await bastion.admin()
    resp = await c.request("GET", "/login?next=//evil.example/x", headers={"Accept": "text/html"})
    assert resp.status == 302 and resp.headers["Location"] == "/"
