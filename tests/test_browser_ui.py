"""Chromium: the UI bugs of issue 13, one test each (the `pages` fixture also fails them on any console error,
CSP violation or failed request)."""
from __future__ import annotations

import re
import time

from browser import login
from conftest import ADMIN_PASSWORD, BastionApp, seed_inventory
from bastion.store.records import Session

LONG_HOST = "payments-api-eu-west-1-production-0001"

# one line box per text node: the cell's text was not wrapped
ONE_LINE_JS = """(td) => { const r = document.createRange(); r.selectNodeContents(td); return r.getClientRects().length; }"""


async def ended_session(app: BastionApp, reason: str, host_name: str = LONG_HOST, username: str = "alice") -> Session:
    """A session record that has ended with `reason` (what the terminal service writes when one ends)."""
    record = await app.services.store.create_session(Session(
        host_id="h1", host_name=host_name, user_id="u1", username=username, node="test-node",
        started_at=time.time() - 120, live=True))
    return await app.services.store.end_session(record, reason, bytes_out=2048)


async def test_sessions_page_ended_list_badges_and_host_names(bastion: BastionApp, pages) -> None:
    closed = await ended_session(bastion, "closed")
    failed = await ended_session(bastion, "failed")
    kicked = await ended_session(bastion, "kicked")
    page = await pages.page(1100, 800)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    await page.goto(bastion.base_url + "/sessions")
    await page.wait_for_selector("#live-table td:has-text('No live sessions')")
    # with nothing live, the ended list still loads (it stayed at "Loading…")
    await page.wait_for_selector(f"#ended-table tr[data-session-id='{closed.id}']", timeout=5000)
    badge = lambda sid: page.locator(f"#ended-table tr[data-session-id='{sid}'] .badge")  # noqa: E731
    assert await badge(closed.id).get_attribute("class") == "badge good"
    assert await badge(failed.id).get_attribute("class") == "badge bad"
    assert await badge(kicked.id).get_attribute("class") == "badge bad"
    green = await badge(closed.id).evaluate("(b) => getComputedStyle(b).color")
    assert await badge(failed.id).evaluate("(b) => getComputedStyle(b).color") != green
    for sid in (closed.id, failed.id):
        host = page.locator(f"#ended-table tr[data-session-id='{sid}'] td.host")
        assert await host.inner_text() == LONG_HOST
        assert await host.evaluate(ONE_LINE_JS) == 1, "the host name wrapped"
    await page.screenshot(path=pages.shot("sessions.png"), full_page=True)


async def test_account_totp_qr_enrolment_and_new_token(bastion: BastionApp, pages) -> None:
    await bastion.user("tess")
    page = await pages.page(1200, 900)
    await login(page, bastion.base_url, "tess", "user-password-1")
    await page.goto(bastion.base_url + "/account")
    await page.click("#totp-begin")
    await page.wait_for_selector("#totp-enrol", state="visible")
    # the QR image decodes (an SVG without xmlns has naturalWidth 0) and the start button is gone
    await page.wait_for_function("() => document.getElementById('totp-qr').complete")
    assert await page.evaluate("() => document.getElementById('totp-qr').naturalWidth") > 0
    assert not await page.locator("#totp-begin").is_visible()
    await page.screenshot(path=pages.shot("account-totp.png"), full_page=True)

    # a new token shows in the list at once, next to its one-time secret, dated like every other date
    await page.fill("form[data-api='/api/tokens'] input[name=name]", "deploy script")
    await page.click("form[data-api='/api/tokens'] button[type=submit]")
    await page.wait_for_selector("#token-rows tr[data-token-id] >> text=deploy script")
    assert "Copy this now" in await page.text_content(".secret-once")
    created = await page.locator("#token-rows tr[data-token-id] td").nth(3).inner_text()  # name, id, scopes, created
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created), created
    await page.screenshot(path=pages.shot("account-token.png"), full_page=True)


async def test_modules_category_filter_hides_hosts(bastion: BastionApp, pages) -> None:
    admin = await bastion.admin()
    a = await seed_inventory(bastion, admin, name="alpha1")
    b = await seed_inventory(bastion, admin, name="beta1")
    await bastion.user("mona")
    uid = (await bastion.services.store.get_user_by_name("mona")).id
    for ids in (a, b):
        assert (await admin.post("/api/grants", {"user_id": uid, "app_id": ids["app_id"]})).status == 201
    page = await pages.page(1400, 900)
    await login(page, bastion.base_url, "mona", "user-password-1")
    await page.goto(bastion.base_url + "/modules")
    await page.select_option("#category-filter", a["app_id"])
    assert await page.locator(f".host-pick[data-app-id='{a['app_id']}']").is_visible()
    assert not await page.locator(f".host-pick[data-app-id='{b['app_id']}']").is_visible()
    await page.click("#select-all")
    checked = await page.eval_on_selector_all(".host-pick input:checked", "(els) => els.map((e) => e.value)")
    assert checked == [a["host_id"]]


async def test_watch_page_of_ended_session_offers_no_end(bastion: BastionApp, pages) -> None:
    ended = await ended_session(bastion, "closed")
    page = await pages.page(1200, 800)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    await page.goto(f"{bastion.base_url}/watch/{ended.id}")
    await page.wait_for_selector("#banner:has-text('Session ended')")
    assert await page.locator("#end-session").count() == 0


async def test_form_errors_use_the_forms_words(bastion: BastionApp, pages) -> None:
    page = await pages.page(1280, 900)
    pages.expect_status(r"/api/credentials$", 400)  # the bad key below, on purpose
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    await page.goto(bastion.base_url + "/admin/inventory")
    await page.fill("#cred-form input[name=name]", "deploy")
    await page.fill("#cred-form input[name=username]", "deploy")
    await page.fill("#cred-form textarea[name=private_key]", "not a key")
    await page.click("#cred-form button[type=submit]")
    error = page.locator("#cred-form .form-error")
    await error.wait_for()
    text = await error.inner_text()
    assert text.startswith("Private key is not a readable"), text
    assert "_" not in text, text


async def test_dates_in_one_format_and_the_readers_time_zone(bastion: BastionApp, pages) -> None:
    """Server-rendered and script-drawn dates read alike, in the browser's time zone (here not the server's)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    zone = "Asia/Kolkata"
    ended = await ended_session(bastion, "closed")
    admin_user = await bastion.services.store.get_user_by_name("admin")
    ctx = await pages.context(1440, 900, timezone_id=zone)
    page = await ctx.new_page()
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    local = lambda t: datetime.fromtimestamp(t, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    await page.goto(bastion.base_url + "/admin/users")  # rendered by the server
    assert local(admin_user.created_at) in await page.inner_text(".content")
    await page.goto(bastion.base_url + "/sessions")  # drawn by the script
    row = page.locator(f"#ended-table tr[data-session-id='{ended.id}']")
    await row.wait_for()
    assert local(ended.started_at) in await row.inner_text()
    await page.goto(f"{bastion.base_url}/play/{ended.id}")
    assert local(ended.started_at) in await page.inner_text(".page-head")
