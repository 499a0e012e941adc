"""OpenID Connect sign-in against a real provider process (oidc-provider-mock), the whole flow in Chromium:
users made just in time, groups mapped to roles and category grants at every sign-in, and what must be refused
(a replayed state, a user whose groups give nothing, an expired ID token, another browser's sign-in)."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sso_servers import OpenIdProvider, start_openid_provider  # noqa: E402
from waiting import wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def providers_file(tmp_path: Path, op: OpenIdProvider, name: str = "corp") -> Path:
    path = tmp_path / "sso.toml"
    (tmp_path / "client-secret").write_text("corp-client-secret-1\n")
    path.write_text(f"""
[[oidc]]
name = "{name}"
label = "Corp ID"
issuer = "{op.issuer}"
client_id = "bastion-test"
client_secret_file = "client-secret"
scopes = ["openid", "profile", "email"]

[[oidc.map]]
group = "ops"
roles = ["user"]
categories = ["web"]

[[oidc.map]]
group = "Bastion-Admins"
roles = ["admin"]
""")
    return path


@pytest.fixture
def op(tmp_path: Path) -> Any:
    provider = start_openid_provider(tmp_path / "op.log")
    try:
        yield provider
    finally:
        provider.stop()


async def loopback_only(context: Any) -> None:
    """Nothing leaves the machine: the provider's pages ask a CDN for a stylesheet; answer it with nothing."""
    async def route(r: Any) -> None:
        host = urlparse(r.request.url).hostname or ""
        if host in ("127.0.0.1", "localhost"):
            await r.continue_()
        else:
            await r.fulfill(status=200, content_type="text/css", body="")
    await context.route("**/*", route)


async def sign_in(page: Any, base: str, sub: str) -> None:
    """Click the provider's button on the login page and authorize `sub` at the provider."""
    await page.goto(base + "/login")
    await page.click("a.sso-button[data-provider=corp]")
    await page.wait_for_selector("input[name=sub]")
    await page.fill("input[name=sub]", sub)
    await page.click("form button[type=submit]:has-text('Authorize')")


async def test_browser_sign_in_creates_user_maps_groups_and_reevaluates(make_bastion, op, pages, tmp_path) -> None:
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, op)))
    admin = await app.admin()
    web = (await admin.post("/api/apps", {"name": "web"})).json["id"]
    op.set_user("alice-sub", {"preferred_username": "alice", "groups": ["ops"]})

    ctx = await pages.context()
    await loopback_only(ctx)
    page = await ctx.new_page()
    callbacks: list[str] = []
    authorize: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if "/sso/oidc/corp/callback" in r.url else None)
    page.on("request", lambda r: authorize.append(r.url) if "/oauth2/authorize?" in r.url else None)
    await sign_in(page, app.base_url, "alice-sub")
    await page.wait_for_url(app.base_url + "/")
    assert (await page.inner_text(".who a")).strip() == "alice"  # the home page sees the login (no second click)

    store = app.services.store
    alice = await store.get_user_by_name("alice")
    assert alice.sso_provider == "oidc:corp" and alice.sso_subject == "alice-sub"
    assert alice.roles == ["user"] and alice.password_hash == ""
    grants = await store.grants_of_user(alice.id)
    assert [(g.app_id, g.source) for g in grants] == [(web, "sso:oidc:corp")]
    # the request to the provider carried PKCE (S256), state and nonce; the state came back to the callback
    sent = parse_qs(urlparse(authorize[0]).query)
    assert sent["code_challenge_method"] == ["S256"] and len(sent["code_challenge"][0]) == 43
    assert len(sent["state"][0]) >= 43 and len(sent["nonce"][0]) >= 43 and sent["response_type"] == ["code"]
    assert parse_qs(urlparse(callbacks[0]).query)["state"] == sent["state"]
    events = (await store.list_events(limit=50)).items
    actions = [e.action for e in events]
    assert "sso.user_created" in actions and "sso.mapping_applied" in actions
    ok = next(e for e in events if e.action == "login.ok" and e.actor == "alice")
    assert ok.detail["via"] == "oidc:corp"

    # groups change at the provider: the next sign-in re-evaluates roles and grants
    op.set_user("alice-sub", {"preferred_username": "alice", "groups": ["bastion-admins"]})
    await page.click("#logout")
    await page.wait_for_url("**/login")
    await sign_in(page, app.base_url, "alice-sub")
    await page.wait_for_url(app.base_url + "/")
    alice = await store.get_user_by_name("alice")
    assert alice.roles == ["admin"]
    assert await store.grants_of_user(alice.id) == []
    applied = [e for e in (await store.list_events(action="sso.mapping_applied")).items if e.target == "alice"]
    assert applied[0].detail["roles"] == ["admin"] and applied[0].detail["revoked"] == ["web"]

    # the same callback URL a second time (a replayed state) is refused
    assert len(callbacks) == 2
    pages.expect_status(r"/sso/oidc/corp/callback", 401)
    await page.goto(callbacks[-1])
    assert "already used or has expired" in await page.inner_text(".form-error")
    failed = (await store.list_events(action="sso.failed")).items
    assert failed and "already used" in failed[0].detail["why"]


async def test_no_mapped_group_means_no_account_and_no_access(make_bastion, op, pages, tmp_path) -> None:
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, op)))
    op.set_user("bob-sub", {"preferred_username": "bob", "groups": ["marketing"]})
    ctx = await pages.context()
    await loopback_only(ctx)
    page = await ctx.new_page()
    pages.expect_status(r"/sso/oidc/corp/callback", 403)
    await sign_in(page, app.base_url, "bob-sub")
    await page.wait_for_selector(".form-error:has-text('give no access')")
    assert await app.services.store.get_user_by_name("bob") is None
    # the browser holds no login
    pages.expect_status(r"/api/me", 401)
    me = await page.evaluate("fetch('/api/me').then(r => r.status)")
    assert me == 401
    failed = (await app.services.store.list_events(action="sso.failed")).items
    assert "give no access" in failed[0].detail["why"]


async def test_expired_id_token_is_refused(make_bastion, pages, tmp_path) -> None:
    # this provider issues ID tokens that expired five minutes before they were issued (beyond the 60 s skew)
    op = start_openid_provider(tmp_path / "op.log", token_max_age=-300)
    try:
        app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, op)))
        op.set_user("carol-sub", {"preferred_username": "carol", "groups": ["ops"]})
        ctx = await pages.context()
        await loopback_only(ctx)
        page = await ctx.new_page()
        pages.expect_status(r"/sso/oidc/corp/callback", 401)
        await sign_in(page, app.base_url, "carol-sub")
        await page.wait_for_selector(".form-error:has-text('expired')")
        assert await app.services.store.get_user_by_name("carol") is None
    finally:
        op.stop()


async def test_callback_from_another_browser_is_refused(make_bastion, op, pages, tmp_path) -> None:
    """A sign-in link started in one browser and finished in another (login CSRF) does not log anyone in."""
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, op)))
    op.set_user("dave-sub", {"preferred_username": "dave", "groups": ["ops"]})
    ctx = await pages.context()
    await loopback_only(ctx)
    page = await ctx.new_page()
    seen: list[str] = []

    async def hold(route: Any) -> None:
        """The provider's answer to "Authorize" redirects to our callback: keep that URL, do not follow it."""
        if route.request.method != "POST":
            await route.continue_()
            return
        response = await route.fetch(max_redirects=0)
        seen.append(response.headers["location"])
        await route.fulfill(status=200, body="held")
    await page.route(re.compile(r"/oauth2/authorize"), hold)
    await sign_in(page, app.base_url, "dave-sub")
    await wait_until(lambda: seen, 15, what="the provider's redirect back")
    other = await pages.context()
    victim = await other.new_page()
    pages.expect_status(r"/sso/oidc/corp/callback", 401)
    await victim.goto(seen[0])
    assert "another browser" in await victim.inner_text(".form-error")
    assert await app.services.store.get_user_by_name("dave") is None


async def test_local_account_is_not_taken_over_and_sso_users_have_no_password(make_bastion, op, pages, tmp_path) -> None:
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, op)))
    await app.services.auth.create_user("erin", "erin-password-1", ["user"], actor="test")
    op.set_user("erin-sub", {"preferred_username": "erin", "groups": ["bastion-admins"]})
    op.set_user("frank-sub", {"preferred_username": "frank", "groups": ["ops"]})
    ctx = await pages.context()
    await loopback_only(ctx)
    page = await ctx.new_page()
    pages.expect_status(r"/sso/oidc/corp/callback", 403)
    await sign_in(page, app.base_url, "erin-sub")
    await page.wait_for_selector(".form-error:has-text('not linked')")
    assert (await app.services.store.get_user_by_name("erin")).roles == ["user"]

    await sign_in(page, app.base_url, "frank-sub")
    await page.wait_for_url(app.base_url + "/")
    await page.goto(app.base_url + "/account")
    assert "no local password" in await page.inner_text("#sso-account")
    pages.expect_status(r"/api/me/password", 400)
    status = await page.evaluate("""async () => {
        const x = document.cookie.match(/_xsrf=([^;]+)/)[1];
        const r = await fetch('/api/me/password', {method: 'POST', headers: {'X-XSRFToken': decodeURIComponent(x),
          'Content-Type': 'application/json'}, body: JSON.stringify({old_password: 'anything', new_password: 'new-password-12'})});
        return [r.status, (await r.json()).error];
    }""")
    assert status[0] == 400 and "single sign-on" in status[1]
    # and no password works for the SSO user at the local login
    assert (await app.client().post("/api/login", {"username": "frank", "password": "x"})).status == 401


async def test_role_requiring_sso_refuses_local_password(make_bastion, op, tmp_path) -> None:
    app = await make_bastion(sso_providers_file=str(providers_file(tmp_path, op)), sso_required_for_roles="auditor")
    await app.services.auth.create_user("gina", "gina-password-1", ["auditor"], actor="test")
    response = await app.client().post("/api/login", {"username": "gina", "password": "gina-password-1"})
    assert response.status == 403 and "single sign-on" in response.json["error"]
    assert (await app.client().login("admin", "admin-password-1")).status == 200  # other roles keep passwords
