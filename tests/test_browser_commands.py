"""Chromium: search a command, open the player at that moment; a denied command; hostile escape sequences."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from client import TerminalClient
from conftest import BastionApp
from browser import login, wait_screen
from test_terminal import granted_host, wait_ended
from waiting import wait_until

HOSTILE = (
    "printf '\\033]52;c;aGFja2Vk\\007'; "                       # OSC 52: write the clipboard
    "printf '\\033[21t\\033[20t'; "                              # title / icon label report requests
    "printf '\\033P$q\"p\\033\\\\'; "                             # DECRQSS
    "printf '\\033]8;;javascript:alert(1)\\033\\\\CLICK-ME\\033]8;;\\033\\\\\\n'; "  # OSC 8 javascript: link
    "printf '<b>html-in-output</b>\\n'"
)
CLIPBOARD_SPY = """
  window.__clipboardWrites = [];
  if (navigator.clipboard) {
    navigator.clipboard.writeText = async (t) => { window.__clipboardWrites.push(t); };
    navigator.clipboard.write = async (t) => { window.__clipboardWrites.push(String(t)); };
  }
  window.__alerts = [];
  window.alert = (m) => window.__alerts.push(String(m));
"""


async def _player_past(page, seconds: float) -> bool:
    return await page.evaluate("() => window.bastionPlayer.getCurrentTime()") >= seconds


async def _player_before(page, seconds: float) -> bool:
    return await page.evaluate("() => window.bastionPlayer.getCurrentTime()") < seconds


async def test_search_opens_player_and_denied_command(bastion: BastionApp, sshd, pages, tmp_path: Path) -> None:
    admin, user, ids = await granted_host(bastion, sshd)
    await admin.post("/api/command-rules", {"name": "no-shutdown", "kind": "words", "pattern": "shutdown reboot",
                                            "action": "deny"})
    await bastion.services.auth.create_user("audrey", "auditor-password-1", ["auditor"], actor="test")
    uctx = await pages.context(1100, 700)
    upage = await uctx.new_page()
    await login(upage, bastion.base_url, "alice", "user-password-1")
    await upage.goto(f"{bastion.base_url}/terminal/{ids['host_id']}")
    await upage.wait_for_function("() => document.getElementById('session-id').textContent.length > 3")
    session_id = await upage.text_content("#session-id")
    await wait_screen(upage, "@")  # the shell's prompt (user@host) is up
    await upage.click("#terminal")
    await upage.keyboard.type("echo warming up\n")
    await wait_screen(upage, "warming up")
    await asyncio.sleep(4)  # the hit is well past the 3 s the player starts before it: the seek is visible
    await upage.keyboard.type("echo needle-in-haystack-42\n")
    await wait_screen(upage, "needle-in-haystack-42\n")
    await upage.keyboard.type("shutdown -h now\n")
    await upage.wait_for_selector("#banner:has-text('blocked by policy (no-shutdown)')")
    await upage.keyboard.type("echo done\n")
    await wait_screen(upage, "done\n")
    await upage.close()
    await wait_ended(bastion, session_id)

    actx = await pages.context(1300, 850)
    page = await actx.new_page()
    await login(page, bastion.base_url, "audrey", "auditor-password-1")
    await page.goto(bastion.base_url + "/commands")
    await page.fill("input[name=q]", "needle-in")
    await page.click("#search-form button[type=submit]")
    hit = page.locator("#results tr.hit")
    await hit.first.wait_for()
    assert await hit.count() == 1 and "needle-in-haystack-42" in await hit.first.inner_text()
    opened = time.monotonic()
    await hit.first.locator("a:has-text('Play')").click()
    await page.wait_for_url(f"**/play/{session_id}?t=*")
    await page.wait_for_selector("#command-list li:has-text('needle-in-haystack-42')")
    await page.wait_for_selector("#verify:has-text('verified')")
    await page.wait_for_function("() => window.bastionPlayer !== undefined")
    stored = [c for c in await bastion.services.store.commands_of_session(session_id) if "needle" in c.text][0]
    player_time = "() => window.bastionPlayer.getCurrentTime()"

    assert stored.offset > 4, stored.offset

    async def at_the_hit() -> bool:
        return await page.evaluate(player_time) >= stored.offset - 3.5
    await wait_until(at_the_hit, what="the player at the hit")
    current = await page.evaluate(player_time)
    # It plays from 3 s before the hit at 1x, so it cannot be further than the time since the click
    # (no fixed window: a slow machine only makes this bound looser)
    assert current <= stored.offset - 3 + (time.monotonic() - opened) + 0.5, (current, stored.offset)
    await page.wait_for_selector(".ap-terminal, .ap-term", timeout=10_000)
    await page.screenshot(path=str(tmp_path / "player.png"))
    # let it play past the hit, then a click on an earlier command seeks back before it
    await wait_until(lambda: _player_past(page, stored.offset - 1), 30, what="the player passing the hit")
    await page.click("#command-list li:has-text('warming up')")
    await wait_until(lambda: _player_before(page, stored.offset - 1), what="the player seeking back")
    # the denied command is in the search as blocked
    await page.goto(bastion.base_url + "/commands")
    await page.check("input[name=blocked]")
    await page.click("#search-form button[type=submit]")
    await page.wait_for_selector("#results tr.hit")
    rows = await page.locator("#results tr.hit").all_inner_texts()
    assert len(rows) == 1 and "shutdown -h now" in rows[0] and "blocked" in rows[0]


async def test_hostile_escape_sequences_in_watch_and_playback(bastion: BastionApp, sshd, pages) -> None:
    admin, user, ids = await granted_host(bastion, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await term.control("session")
    ctx = await pages.context(1200, 800)
    await ctx.add_init_script(CLIPBOARD_SPY)
    await ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=bastion.base_url)
    page = await ctx.new_page()
    await login(page, bastion.base_url, "admin", "admin-password-1")
    await page.goto(f"{bastion.base_url}/watch/{term.session_id}")
    await page.wait_for_function("() => window.bastionTerm !== undefined")
    await asyncio.sleep(0.5)
    await term.send(HOSTILE + "\r")
    await term.expect("html-in-output")
    await wait_screen(page, "html-in-output")
    await page.click("#terminal")
    await page.mouse.click(60, 120)
    await asyncio.sleep(0.5)
    assert await page.evaluate("() => window.__clipboardWrites") == []
    assert await page.evaluate("() => window.__alerts") == []
    assert await page.locator("b:has-text('html-in-output')").count() == 0
    assert (await bastion.services.store.list_events(action="monitor.input_refused")).total == 0
    term.close()
    await wait_ended(bastion, term.session_id)
    await page.goto(f"{bastion.base_url}/play/{term.session_id}")
    await page.wait_for_function("() => window.bastionPlayer !== undefined")
    await page.evaluate("() => { window.bastionPlayer.play(); return true; }")
    await asyncio.sleep(4)  # the hit is well past the 3 s the player starts before it: the seek is visible
    assert await page.evaluate("() => window.__clipboardWrites") == []
    assert await page.evaluate("() => window.__alerts") == []
    assert await page.locator("b:has-text('html-in-output')").count() == 0
