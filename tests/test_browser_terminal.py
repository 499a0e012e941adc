"""Chromium: a user's terminal from the host list; an auditor watches and ends it from the sessions page."""
from __future__ import annotations

import asyncio
from pathlib import Path

from browser import login, wait_screen
from conftest import BastionApp
from test_terminal import cast_output, granted_host, read_cast, wait_ended

async def test_user_terminal_in_browser(bastion: BastionApp, sshd, pages, tmp_path: Path) -> None:
    await granted_host(bastion, sshd)
    ctx = await pages.context(1200, 800)
    page = await ctx.new_page()
    await login(page, bastion.base_url, "alice", "user-password-1")
    async with ctx.expect_page() as new_page:
        await page.click("text=Open terminal")
    term = await new_page.value
    await term.wait_for_function("() => document.getElementById('session-id').textContent.length > 3")
    session_id = await term.text_content("#session-id")
    await term.click("#terminal")
    await term.keyboard.type("echo hel''lo\n")
    await wait_screen(term, "hello")
    size_before = await term.evaluate("[window.bastionTerm.cols, window.bastionTerm.rows]")
    await term.set_viewport_size({"width": 800, "height": 500})
    await term.wait_for_function(f"() => window.bastionTerm.cols < {size_before[0]}")
    await asyncio.sleep(0.3)
    cols, rows = await term.evaluate("[window.bastionTerm.cols, window.bastionTerm.rows]")
    await term.keyboard.type("stty size\n")
    await wait_screen(term, f"{rows} {cols}")
    await term.screenshot(path=str(tmp_path / "terminal.png"))
    await term.close()
    record = await wait_ended(bastion, session_id)
    assert record.end_reason == "closed"
    header, events = read_cast(record.recording_path)
    out = cast_output(events)
    assert b"hello" in out and f"{rows} {cols}".encode() in out
    assert any(e[1] == "r" and e[2] == f"{cols}x{rows}" for e in events)


async def test_auditor_watches_and_ends_session(bastion: BastionApp, sshd, pages, tmp_path: Path) -> None:
    await granted_host(bastion, sshd)
    await bastion.services.auth.create_user("audrey", "auditor-password-1", ["auditor"], actor="test")
    user_ctx = await pages.context(1100, 700)
    aud_ctx = await pages.context(1300, 800)
    auditor = await aud_ctx.new_page()
    await login(auditor, bastion.base_url, "audrey", "auditor-password-1")
    await auditor.goto(bastion.base_url + "/sessions")
    await auditor.wait_for_selector("#live-table td:has-text('No live sessions')")

    upage = await user_ctx.new_page()
    await login(upage, bastion.base_url, "alice", "user-password-1")
    host_id = await upage.get_attribute("tr[data-host-id]", "data-host-id")
    await upage.goto(f"{bastion.base_url}/terminal/{host_id}")
    await upage.wait_for_function("() => document.getElementById('session-id').textContent.length > 3")
    await upage.click("#terminal")
    await upage.keyboard.type("echo first''-command\n")
    await wait_screen(upage, "first-command")

    row = auditor.locator("#live-table tr[data-session-id]")
    await row.wait_for(timeout=10_000)  # appears without a manual refresh
    assert "alice" in await row.inner_text()
    async with aud_ctx.expect_page() as watch_info:
        await auditor.evaluate("() => window.open(document.querySelector('#live-table a').href)")
    watch = await watch_info.value
    await watch.wait_for_load_state()
    await watch.wait_for_function("() => window.bastionTerm !== undefined")
    await wait_screen(watch, "first-command")  # snapshot of the screen before joining
    await upage.keyboard.type("echo typed''-while-watched\n")
    await wait_screen(watch, "typed-while-watched")
    await watch.screenshot(path=str(tmp_path / "watch.png"))

    auditor.once("dialog", lambda d: asyncio.ensure_future(d.accept("security policy 7")))
    await auditor.click("#live-table button:has-text('End')")
    await upage.wait_for_selector("#banner:has-text('security policy 7')")
    banner = await upage.text_content("#banner")
    assert "ended by audrey" in banner
    await watch.wait_for_selector("#banner:has-text('security policy 7')")
    assert not await watch.locator("#end-session").is_visible()  # nothing left to end
    ended_row = auditor.locator("#ended-table tr[data-session-id]")
    await ended_row.first.wait_for(timeout=10_000)
    text = await ended_row.first.inner_text()
    assert "kicked" in text and "audrey" in text
    await auditor.screenshot(path=str(tmp_path / "sessions.png"), full_page=True)
