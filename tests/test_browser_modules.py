"""Chromium: a user picks category → hosts → module 1003, runs it and watches per-host rows fill in;
an admin drops Mid_1010.py and it appears without a restart."""
from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import BastionApp
from browser import login
from test_modules import hosts_sshd, setup, write_module  # noqa: F401 - fixture

OS_NAME = Path("/etc/os-release").read_text().split('PRETTY_NAME="')[1].split('"')[0]


async def test_run_module_in_browser(bastion: BastionApp, hosts_sshd, pages, tmp_path: Path) -> None:  # noqa: F811
    env = await setup(bastion, hosts_sshd)
    ctx = await pages.context(1400, 900)
    page = await ctx.new_page()
    await login(page, bastion.base_url, "alice", "user-password-1")
    await page.goto(bastion.base_url + "/modules")
    await page.select_option("#category-filter", label="fleet")
    await page.click("#select-all")
    assert await page.locator(".host-pick input:checked").count() == 4
    await page.click(".module-pick[data-module-id='1003']")
    await page.wait_for_selector("#run-hint:has-text('System version')")
    await page.click("#run-button")
    await page.wait_for_url("**/runs/*")
    await page.wait_for_selector("#status:has-text('ok')", timeout=60_000)
    rows = page.locator("#hosts tr[data-host]")
    assert await rows.count() == 4
    for i in range(4):
        text = await rows.nth(i).inner_text()
        assert "ok" in text and OS_NAME in text, text
    assert await page.text_content("#count") == "4 / 4 hosts"
    await page.screenshot(path=str(tmp_path / "run.png"), full_page=True)

    admin_ctx = await pages.context(1400, 900)
    admin = await admin_ctx.new_page()
    await login(admin, bastion.base_url, "admin", "admin-password-1")
    await admin.goto(bastion.base_url + "/modules")
    await admin.click("#new-module")
    await admin.wait_for_selector("#template-file:has-text('Mid_1004.py')")  # 1001-1003 are taken
    template = await admin.text_content("#template-text")
    assert "class Modulehandle(bastion.Modulehandle)" in template
    write_module(env["folder"], "1010", '''    async def run(self):
        return await self.ssh(["uptime"])''', name="Uptime (dropped in)")
    for _ in range(50):
        await asyncio.sleep(0.2)
        await admin.reload()
        if await admin.locator(".module-pick[data-module-id='1010']").count():
            break
    assert "Uptime (dropped in)" in await admin.inner_text(".module-pick[data-module-id='1010']")
