"""Chromium walks the foundation path: admin builds the inventory, a user sees only granted hosts."""
from __future__ import annotations

from pathlib import Path

from conftest import ADMIN_PASSWORD, BastionApp
from browser import login as _login


async def test_admin_builds_inventory_user_sees_granted_hosts(bastion: BastionApp, pages, tmp_path: Path) -> None:
    base = bastion.base_url
    ctx = await pages.context(1280, 900)
    pages.expect_status(r"/api/hosts$", 400)  # the bad address below, on purpose
    pages.expect_status(r"/admin/inventory$", 403)  # a plain user opening an admin page, on purpose
    page = await ctx.new_page()
    page.on("dialog", lambda d: d.accept())

    await _login(page, base, "admin", ADMIN_PASSWORD)
    await page.goto(base + "/admin/users")
    form = page.locator("form[data-api='/api/users']")
    await form.locator("input[name=username]").fill("alice")
    await form.locator("input[name=password]").fill("alice-password-1")
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("tr[data-user=alice]")

    await page.goto(base + "/admin/inventory")
    await page.fill("#app-form input[name=name]", "Payments")
    await page.click("#app-form button[type=submit]")
    await page.wait_for_selector("text=Payments")
    await page.fill("#cred-form input[name=name]", "deploy")
    await page.fill("#cred-form input[name=username]", "deploy")
    await page.fill("#cred-form input[name=password]", "s3cret-pass")
    await page.click("#cred-form button[type=submit]")
    await page.wait_for_selector("#cred-form >> xpath=.. >> text=deploy")
    for name in ("pay-api", "pay-db"):
        await page.fill("#host-form input[name=name]", name)
        await page.fill("#host-form input[name=address]", "127.0.0.1")
        await page.fill("#host-form input[name=tags]", "prod, pay")
        await page.click("#host-form button[type=submit]")
        await page.wait_for_selector(f"tr[data-host='{name}']")
    # a bad value shows a clear message in the form
    await page.fill("#host-form input[name=name]", "broken")
    await page.fill("#host-form input[name=address]", "not an address!")
    await page.click("#host-form button[type=submit]")
    await page.wait_for_selector("#host-form .form-error:has-text('address must be')")

    await page.goto(base + "/admin/grants")
    await page.select_option("#grant-form select[name=user_id]", label="alice")
    await page.select_option("#grant-form select[name=host_id]", label="pay-api")
    await page.click("#grant-form button[type=submit]")
    await page.wait_for_selector("td:has-text('pay-api')")
    await page.screenshot(path=str(tmp_path / "admin-grants.png"), full_page=True)
    await page.click("#logout")
    await page.wait_for_url(base + "/login")

    await _login(page, base, "alice", "alice-password-1")
    await page.wait_for_selector("text=Payments")
    rows = await page.locator("tr[data-host-id] td.strong").all_inner_texts()
    assert rows == ["pay-api"]
    assert await page.locator("text=Inventory").count() == 0  # no admin navigation for a plain user
    await page.screenshot(path=str(tmp_path / "user-hosts.png"), full_page=True)
    assert (tmp_path / "user-hosts.png").stat().st_size > 10_000
    resp = await page.goto(base + "/admin/inventory")
    assert resp.status == 403
