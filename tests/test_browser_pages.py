"""Chromium visits every page as each role, on a desktop (1440×900) and a phone (390×844). A visit fails on a
console error, a CSP violation, a failed request (the `pages` fixture) or a page wider than the viewport; on the
phone the navigation is collapsed behind its menu button. Screenshots of each visit go to the test's tmp dir."""
from __future__ import annotations

import pytest

from browser import login, wait_prompt
from client import TerminalClient
from conftest import ADMIN_PASSWORD, BastionApp
from test_pages import PAGES
from test_terminal import granted_host, wait_ended

SIZES = {"desktop": (1440, 900), "phone": (390, 844)}
PASSWORDS = {"admin": ADMIN_PASSWORD, "auditor": "auditor-password-1", "user": "user-password-1"}
OVERFLOW_JS = "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"


async def seed(bastion: BastionApp, sshd) -> dict[str, str]:
    """A granted host, an ended session with its recording, and a live session (kept open by the caller)."""
    admin, user, ids = await granted_host(bastion, sshd, username="user")
    await bastion.services.auth.create_user("auditor", PASSWORDS["auditor"], ["auditor"], actor="test")
    done = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}", cols=100, rows=30)
    ended_id = (await done.control("session"))["id"]
    await done.send("echo recorded''-line\r")
    await done.expect("recorded-line")
    done.close()
    await wait_ended(bastion, ended_id)
    live = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}", cols=120, rows=30)
    live_id = (await live.control("session"))["id"]
    await live.send("echo live''-line\r")
    await live.expect("live-line")
    event_id = (await bastion.services.store.list_events(action="session.started", limit=1)).items[0].id
    return {"host_id": ids["host_id"], "ended": ended_id, "live": live_id, "client": live, "event": event_id}


def paths_for(role: str, ids: dict[str, str]) -> list[str]:
    paths = [p for p, allowed in PAGES if role in allowed]
    if role == "user":
        paths.append(f"/terminal/{ids['host_id']}")
    else:
        paths += [f"/watch/{ids['live']}", f"/watch/{ids['ended']}", f"/play/{ids['ended']}", f"/audit/{ids['event']}"]
    return paths


async def settle(page, path: str) -> None:
    """Wait until the page's own scripts have drawn what they load."""
    if path.startswith("/terminal/"):
        await wait_prompt(page)
    elif path.startswith("/watch/"):
        await page.wait_for_function("() => !document.getElementById('status').textContent.startsWith('connecting')")
    elif path.startswith("/play/"):
        await page.wait_for_selector("#command-list li:not(:has-text('Loading'))")
        await page.wait_for_selector("#verify:not(:has-text('checking'))")
    elif path == "/sessions":
        await page.wait_for_selector("#ended-table tr[data-session-id]")
    elif path == "/dashboard":
        await page.wait_for_selector("#dash-live tr[data-session-id]")
    await page.wait_for_load_state("networkidle")


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("role", ["admin", "auditor", "user"])
async def test_every_page_every_role(bastion: BastionApp, sshd, pages, role: str, size: str) -> None:
    ids = await seed(bastion, sshd)
    width, height = SIZES[size]
    try:
        page = await pages.page(width, height)
        overflowing = []
        await page.goto(bastion.base_url + "/login")
        await page.screenshot(path=pages.shot(f"{size}-{role}-login.png"), full_page=True)
        dims = await page.evaluate(OVERFLOW_JS)
        if dims["scroll"] > dims["inner"]:
            overflowing.append(("/login", dims))
        await login(page, bastion.base_url, role, PASSWORDS[role])
        for path in paths_for(role, ids):
            resp = await page.goto(bastion.base_url + path)
            assert resp.status == 200, (path, resp.status)
            await settle(page, path)
            name = path.strip("/").replace("/", "_") or "home"
            await page.screenshot(path=pages.shot(f"{size}-{role}-{name[:40]}.png"), full_page=True)
            dims = await page.evaluate(OVERFLOW_JS)
            if dims["scroll"] > dims["inner"]:
                overflowing.append((path, dims))
            if size == "phone" and path.startswith(("/terminal/", "/watch/", "/play/")):
                # on a phone the terminal or player spans the width (less the card's margins on the player page)
                used = await page.evaluate("() => document.querySelector('#terminal, #player').getBoundingClientRect().width")
                assert used >= width - 60, (path, used, width)
            if size == "phone" and await page.locator("header.topbar").count():
                # collapsed: the links are behind the menu button, which opens them
                assert not await page.locator("#main-nav").is_visible(), path
                await page.click("#nav-toggle")
                await page.wait_for_selector("#main-nav a", state="visible")
                if path == "/":
                    await page.screenshot(path=pages.shot(f"{size}-{role}-menu-open.png"))
                dims = await page.evaluate(OVERFLOW_JS)
                if dims["scroll"] > dims["inner"]:
                    overflowing.append((path + " (menu open)", dims))
        assert not overflowing, f"wider than the {width}px viewport: {overflowing}"
    finally:
        ids["client"].close()
