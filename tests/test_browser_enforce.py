"""Chromium: an admin adds a login rule on its page, a user creates a scoped, short-lived token on the Account
page; the pages' forms reach the API with the right types, and the refused login shows its message."""
from __future__ import annotations

from pathlib import Path

from conftest import ADMIN_PASSWORD, BastionApp
from test_browser_terminal import login as _login


async def test_login_rule_and_scoped_token_through_the_pages(bastion: BastionApp, browser, tmp_path: Path) -> None:
    base = bastion.base_url
    errors: list[str] = []
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None)
    page.on("dialog", lambda d: d.accept())
    await bastion.services.auth.create_user("ada", "ada-password-1", ["auditor"], actor="test")

    await _login(page, base, "admin", ADMIN_PASSWORD)
    await page.goto(base + "/admin/login-rules")
    form = page.locator("#login-rule-form")
    await form.locator("input[name=name]").fill("no auditors from here")
    await form.locator("select[name=action]").select_option("deny")
    await form.locator("select[name=scope]").select_option("role")
    await form.locator("select[name=scope_value]").select_option("auditor")
    await form.locator("input[name=networks]").fill("127.0.0.0/8, ::1")
    await form.locator("input[name=days]").fill("mon, tue, wed, thu, fri, sat, sun")
    await form.locator("input[name=timezone]").fill("Europe/Paris")
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("td.strong:has-text('no auditors from here')")
    rules = await bastion.services.store.list_login_rules()
    assert len(rules) == 1 and rules[0].networks == ["127.0.0.0/8", "::1/128"] and rules[0].days == list(range(7))
    assert rules[0].scope == "role" and rules[0].scope_value == "auditor" and rules[0].timezone == "Europe/Paris"
    # a bad value is explained in the form
    await form.locator("input[name=name]").fill("broken")
    await form.locator("input[name=networks]").fill("10.0.0.0/40")
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("#login-rule-form .form-error:has-text('is not an address or CIDR network')")
    await page.screenshot(path=str(tmp_path / "login-rules.png"), full_page=True)

    await page.goto(base + "/account")
    token_form = page.locator("form[data-api='/api/tokens']")
    await token_form.locator("input[name=name]").fill("deploy")
    await token_form.locator("input[name=scopes]").fill("read")
    await token_form.locator("input[name=ttl_days]").fill("7")
    await token_form.locator("button[type=submit]").click()
    await page.wait_for_selector(".secret-once:has-text('bst_')")
    tokens = await bastion.services.store.list_tokens((await bastion.services.store.get_user_by_name("admin")).id)
    assert len(tokens) == 1 and tokens[0].scopes == ["read"]
    assert 6.9 * 86400 < tokens[0].expires_at - tokens[0].created_at <= 7 * 86400
    await page.click("#logout")
    await page.wait_for_url(base + "/login")

    # the auditor is refused by the rule, with its message on the login page
    await page.fill("input[name=username]", "ada")
    await page.fill("input[name=password]", "ada-password-1")
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=not allowed for your account")
    assert not errors, errors
