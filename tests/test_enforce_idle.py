"""Logins expire when idle ([auth] idle_ttl, sliding with each request) as well as absolutely ([auth] session_ttl).
Time is moved by writing the stored login's times, not by waiting."""
from __future__ import annotations

import time

from conftest import BastionApp


async def _login_record(app: BastionApp, username: str):  # noqa: ANN202
    user = await app.services.store.get_user_by_name(username)
    logins = await app.services.store.logins_of_user(user.id)
    assert len(logins) == 1
    return logins[0]


async def test_idle_login_expires_and_is_audited(make_bastion) -> None:
    app: BastionApp = await make_bastion(auth_idle_ttl=600)
    alice = await app.user("alice")
    assert (await alice.get("/api/me")).status == 200
    login = await _login_record(app, "alice")
    login.last_seen_at = time.time() - 601
    await app.services.store.save(login)
    app.services.recent_logins.forget(login.id)  # as if the few seconds the node trusts a recent login had passed
    resp = await alice.get("/api/me")
    assert resp.status == 401
    assert await app.services.store.get_login(login.id) is None
    event = (await app.services.store.list_events(action="login.expired")).items[0]
    assert event.actor == "alice" and event.detail["idle"] >= 600


async def test_activity_slides_the_idle_expiry(make_bastion) -> None:
    app: BastionApp = await make_bastion(auth_idle_ttl=600)
    alice = await app.user("alice")
    login = await _login_record(app, "alice")
    login.last_seen_at = time.time() - 590  # nearly idle: this request counts as activity
    await app.services.store.save(login)
    app.services.recent_logins.forget(login.id)  # as if the few seconds the node trusts a recent login had passed
    assert (await alice.get("/api/me")).status == 200
    touched = await app.services.store.get_login(login.id)
    assert touched.last_seen_at > time.time() - 5
    # 590 s more would have ended the login without that request; with it, it is still valid
    touched.last_seen_at -= 300
    await app.services.store.save(touched)
    app.services.recent_logins.forget(touched.id)
    assert (await alice.get("/api/me")).status == 200


async def test_absolute_expiry_still_holds_for_an_active_login(make_bastion) -> None:
    app: BastionApp = await make_bastion(auth_idle_ttl=600)
    alice = await app.user("alice")
    login = await _login_record(app, "alice")
    login.expires_at = time.time() - 1
    login.last_seen_at = time.time()
    await app.services.store.save(login)
    app.services.recent_logins.forget(login.id)  # as if the few seconds the node trusts a recent login had passed
    assert (await alice.get("/api/me")).status == 401


async def test_idle_ttl_zero_turns_idle_expiry_off(make_bastion) -> None:
    app: BastionApp = await make_bastion(auth_idle_ttl=0)
    alice = await app.user("alice")
    login = await _login_record(app, "alice")
    login.last_seen_at = time.time() - 30 * 86400
    await app.services.store.save(login)
    app.services.recent_logins.forget(login.id)  # as if the few seconds the node trusts a recent login had passed
    assert (await alice.get("/api/me")).status == 200


async def test_pages_redirect_to_login_after_idle(make_bastion) -> None:
    app: BastionApp = await make_bastion(auth_idle_ttl=600)
    alice = await app.user("alice")
    login = await _login_record(app, "alice")
    login.last_seen_at = time.time() - 700
    await app.services.store.save(login)
    app.services.recent_logins.forget(login.id)  # as if the few seconds the node trusts a recent login had passed
    resp = await alice.get("/account", headers={"Accept": "text/html"})
    assert resp.status == 302 and resp.headers["Location"].startswith("/login")
