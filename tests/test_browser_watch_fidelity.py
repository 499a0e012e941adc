"""Chromium: a late watcher's screen is exactly the user's screen, after resizes and inside full-screen programs.

Ground truth is what the user's own xterm.js draws (its buffer rows), compared row by row with the watcher's.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import BastionApp
from test_browser_terminal import login, wait_screen
from test_terminal import granted_host

ROWS_JS = """() => { const t = window.bastionTerm, b = t.buffer.active; const rows = [];
  for (let y = 0; y < t.rows; y++) { const line = b.getLine(b.baseY + y);
    rows.push(line ? line.translateToString(true) : ''); }
  return {cols: t.cols, rows: t.rows, lines: rows, alt: b.type === 'alternate'}; }"""


async def visible(page) -> dict:
    return await page.evaluate(ROWS_JS)


async def same_screen(user, watcher, timeout: float = 15) -> dict:
    """Wait until the watcher shows exactly the user's rows (same size, same text on every row)."""
    mine = theirs = None
    for _ in range(int(timeout / 0.1)):
        mine, theirs = await visible(user), await visible(watcher)
        if mine == theirs:
            return mine
        await asyncio.sleep(0.1)
    diff = [(i, a, b) for i, (a, b) in enumerate(zip(mine["lines"], theirs["lines"])) if a != b]
    raise AssertionError(f"screens differ: user {mine['cols']}x{mine['rows']} alt={mine['alt']}, watcher "
                         f"{theirs['cols']}x{theirs['rows']} alt={theirs['alt']}; rows that differ: {diff[:5]}")


async def open_watch(bastion: BastionApp, ctx, session_id: str):
    page = await ctx.new_page()
    await page.goto(f"{bastion.base_url}/watch/{session_id}")
    await page.wait_for_function("() => window.bastionTerm !== undefined")
    return page


async def test_late_watcher_sees_the_users_screen(bastion: BastionApp, sshd, pages, tmp_path: Path) -> None:
    admin, user, ids = await granted_host(bastion, sshd)
    notes = tmp_path / "notes.txt"
    notes.write_text("".join(f"note line {i} with some words to wrap around\n" for i in range(200)))
    await bastion.services.auth.create_user("audrey", "auditor-password-1", ["auditor"], actor="test")
    user_ctx = await pages.context(1100, 700)  # guarded: console errors, CSP violations, failed requests fail it
    aud_ctx = await pages.context(1400, 900)
    upage = await user_ctx.new_page()
    await login(upage, bastion.base_url, "alice", "user-password-1")
    await upage.goto(f"{bastion.base_url}/terminal/{ids['host_id']}")
    await upage.wait_for_function("() => document.getElementById('session-id').textContent.length > 3")
    session_id = await upage.text_content("#session-id")
    await upage.click("#terminal")
    await upage.keyboard.type("for i in $(seq 1 80); do echo line-$i-$(printf '%0.s=' $(seq 1 $((i % 70)))); done\n")
    await wait_screen(upage, "line-80-")
    # resizes while text is on screen: the user's xterm.js reflows the wrapped lines
    await upage.set_viewport_size({"width": 700, "height": 500})
    await upage.wait_for_function("() => window.bastionTerm.cols < 90")
    await upage.keyboard.type("echo after''-narrow\n")
    await wait_screen(upage, "after-narrow")
    await upage.set_viewport_size({"width": 1000, "height": 650})
    await upage.wait_for_function("() => window.bastionTerm.cols > 100")
    await upage.keyboard.type("echo after''-wide\n")
    await wait_screen(upage, "after-wide")

    auditor = await aud_ctx.new_page()
    await login(auditor, bastion.base_url, "audrey", "auditor-password-1")
    late = await open_watch(bastion, aud_ctx, session_id)
    shown = await same_screen(upage, late)
    assert any("after-wide" in line for line in shown["lines"])
    await late.screenshot(path=str(tmp_path / "late-watcher.png"))

    # inside vim: the watcher already there and a new late watcher both see the user's rows
    await upage.keyboard.type(f"vim -u NONE -N {notes}\n")
    await wait_screen(upage, "note line 0")
    await upage.keyboard.type("40G")
    await same_screen(upage, late)
    vim_late = await open_watch(bastion, aud_ctx, session_id)
    shown = await same_screen(upage, vim_late)
    assert shown["alt"] is True
    await vim_late.screenshot(path=str(tmp_path / "watch-vim.png"))
    await upage.keyboard.press("Escape")
    await upage.keyboard.type(":q!\n")
    await wait_screen(upage, "after-wide")

    # inside top (a long refresh interval keeps its screen still while we compare)
    await upage.keyboard.type("top -d 100\n")  # (procps top draws on the normal screen here)
    await wait_screen(upage, "PID USER")
    await asyncio.sleep(0.5)  # top's first screen is drawn in several writes
    top_late = await open_watch(bastion, aud_ctx, session_id)
    await same_screen(upage, top_late)
    await same_screen(upage, late)
    await top_late.screenshot(path=str(tmp_path / "watch-top.png"))
    await upage.keyboard.type("q")
