"""Passkeys in Chromium with the DevTools virtual authenticator (CDP `WebAuthn` domain): enrol on the Account page,
log in with the passkey as the second factor and without a password, remove it, and a cloned credential whose
counter goes backwards is refused. The pages are reached as http://localhost (WebAuthn refuses IP addresses)."""
from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.timeout(120)
PASSWORD = "pk-user-password-1"


async def authenticator(ctx: Any, page: Any) -> tuple[Any, str]:
    """A virtual platform authenticator (resident keys, user verification) attached to `page`."""
    cdp = await ctx.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    made = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    return cdp, made["authenticatorId"]


async def password_step(page: Any, base: str, username: str) -> None:
    await page.goto(base + "/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#totp-step:not([hidden])")


async def enrol(page: Any, base: str, name: str) -> None:
    await page.goto(base + "/account")
    await page.fill("#passkey-enrol input[name=name]", name)
    await page.click("#passkey-enrol button[type=submit]")
    await page.wait_for_selector(f"#passkeys td:text-is('{name}')")


async def test_enrol_login_remove_and_cloned_counter(make_bastion, pages) -> None:
    app = await make_bastion()
    await app.services.auth.create_user("pat", PASSWORD, ["user"], actor="test")
    base = app.base_url.replace("127.0.0.1", "localhost")
    store = app.services.store

    ctx = await pages.context()
    page = await ctx.new_page()
    cdp, auth_id = await authenticator(ctx, page)
    await page.goto(base + "/login")
    await page.fill("input[name=username]", "pat")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(base + "/")

    # enrol: the authenticator now holds one credential, the store one passkey
    await enrol(page, base, "laptop")
    pat = await store.get_user_by_name("pat")
    keys = await store.passkeys_of_user(pat.id)
    assert [k.name for k in keys] == ["laptop"] and pat.passkey_count == 1
    held = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": auth_id}))["credentials"]
    assert len(held) == 1
    assert (await store.list_events(action="passkey.enrolled")).items[0].target == "pat"

    # second factor: the password is not enough any more; the passkey finishes the login
    await page.click("#logout")
    await page.wait_for_url("**/login")
    await password_step(page, base, "pat")
    await page.click("#passkey-2fa")
    await page.wait_for_url(base + "/")
    assert (await page.inner_text(".who a")).strip() == "pat"
    first_count = (await store.passkeys_of_user(pat.id))[0].sign_count
    assert first_count >= 1
    ok = (await store.list_events(action="login.ok")).items[0]
    assert ok.actor == "pat" and ok.detail["via"] == "passkey"

    # passwordless: the discoverable credential names the user
    await page.click("#logout")
    await page.wait_for_url("**/login")
    await page.click("#passkey-login")
    await page.wait_for_url(base + "/")
    assert (await page.inner_text(".who a")).strip() == "pat"

    # a copy of the credential in another browser, with its counter back at 0: refused
    used = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": auth_id}))["credentials"][0]
    assert used["signCount"] >= 2
    other = await pages.context()
    thief = await other.new_page()
    cdp2, auth2 = await authenticator(other, thief)
    await cdp2.send("WebAuthn.addCredential", {"authenticatorId": auth2, "credential": {**used, "signCount": 0}})
    pages.expect_status(r"/api/login/passkey$", 401)
    await thief.goto(base + "/login")
    await thief.click("#passkey-login")
    await thief.wait_for_selector(".form-error:has-text('counter went back')")
    failed = (await store.list_events(action="login.passkey_failed")).items[0]
    assert failed.actor == "pat" and "counter" in failed.detail["why"]
    pages.expect_status(r"/api/me$", 401)
    assert await thief.evaluate("fetch('/api/me').then(r => r.status)") == 401

    # remove on the Account page: the password alone logs in again
    await page.goto(base + "/account")
    await page.click("[data-passkey-remove]")
    await page.wait_for_selector("#passkeys table", state="detached")
    pat = await store.get_user_by_name("pat")
    assert await store.passkeys_of_user(pat.id) == [] and pat.passkey_count == 0
    assert (await store.list_events(action="passkey.removed")).items[0].target == "pat"
    await page.click("#logout")
    await page.wait_for_url("**/login")
    await page.fill("input[name=username]", "pat")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(base + "/")


async def test_passkey_satisfies_require_mfa_and_the_last_factor_stays(make_bastion, pages) -> None:
    app = await make_bastion(auth_require_mfa="true")
    await app.services.auth.create_user("quinn", PASSWORD, ["user"], actor="test")
    base = app.base_url.replace("127.0.0.1", "localhost")
    ctx = await pages.context()
    page = await ctx.new_page()
    await authenticator(ctx, page)
    await page.goto(base + "/login?next=/account")
    await page.fill("input[name=username]", "quinn")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(base + "/account")
    pages.expect_status(r"/api/hosts$", 403)
    assert await page.evaluate("fetch('/api/hosts').then(r => r.status)") == 403  # not enrolled yet
    await enrol(page, base, "key")
    assert await page.evaluate("fetch('/api/hosts').then(r => r.status)") == 200
    # the only second factor cannot be removed while one is required
    pages.expect_status(r"/api/me/passkeys/", 400)
    await page.click("[data-passkey-remove]")
    await page.wait_for_selector(".toast.error:has-text('second factor is required')")
    quinn = await app.services.store.get_user_by_name("quinn")
    assert quinn.passkey_count == 1
