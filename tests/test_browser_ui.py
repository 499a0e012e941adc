"""Chromium: the UI bugs of issue 13, one test each (the `pages` fixture also fails them on any console error,
CSP violation or failed request)."""
from __future__ import annotations

import time

from browser import login
from conftest import ADMIN_PASSWORD, BastionApp
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
