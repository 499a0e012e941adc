"""A browser that goes away for a moment (reload, network blip) comes back to the same live session."""
from __future__ import annotations

import pytest
from tornado.httpclient import HTTPClientError

from browser import login, wait_screen
from client import TerminalClient
from conftest import granted_host, wait_ended
from scenario import cast_output, grant, read_cast
from waiting import holds_for, wait_until


async def _detached(app, session_id: str) -> None:
    session = app.services.hub.get(session_id)
    await wait_until(lambda: session is not None and session.detached, 10, what="the session waiting for its user")


async def test_blip_gets_exactly_the_missed_output_and_one_recording(make_bastion, sshd) -> None:
    app = await make_bastion(terminal_reconnect_grace="30")
    _, user, ids = await granted_host(app, sshd)
    path = f"/ws/terminal/{ids['host_id']}"
    first = await TerminalClient.open(user, path)
    await first.control("session")
    sid = first.session_id
    await first.send("echo one''1; sleep 1; echo two''2\r")
    await first.expect("one1")
    first.conn.close()  # the connection drops while the host is still printing
    await _detached(app, sid)
    session = app.services.hub.get(sid)
    await wait_until(lambda: session.pending_bytes > 0, 10, what="output held for the absent browser")

    back = await TerminalClient.open(user, path, session=sid, fresh="0")
    resumed = await back.control("session")
    assert resumed["id"] == sid and resumed["resumed"] is True
    await back.expect("two2")
    assert b"one1" not in back.output  # a terminal that kept its screen gets only what it missed
    notice = await back.control("notice")
    assert "reconnected" in notice["message"]
    await back.send("echo three''3\r")
    await back.expect("three3")
    assert app.services.hub.get(sid) is session and not session.detached
    await session.close("closed")
    record = await wait_ended(app, sid)
    _, events = read_cast(record.recording_path)
    text = cast_output(events)
    assert text.count(b"one1") >= 1 and b"two2" in text and b"three3" in text
    markers = [e[2] for e in events if e[1] == "m"]
    assert "the user's browser disconnected" in markers and "the user's browser reconnected" in markers
    sessions = await app.services.store.list_sessions(user_id=record.user_id)
    assert [s.id for s in sessions.items] == [sid]  # one session, not two


async def test_reload_gets_the_screen_and_others_cannot_take_it(make_bastion, sshd) -> None:
    app = await make_bastion(terminal_reconnect_grace="30")
    admin, user, ids = await granted_host(app, sshd)
    bob = await app.user("bob")
    await grant(admin, (await app.services.store.get_user_by_name("bob")).id, host_id=ids["host_id"])
    path = f"/ws/terminal/{ids['host_id']}"
    first = await TerminalClient.open(user, path)
    await first.control("session")
    sid = first.session_id
    await first.send("echo before''reload\r")
    await first.expect("beforereload")
    first.conn.close()
    await _detached(app, sid)
    for client, params in ((bob, {"session": sid}), (admin, {"session": sid}), (user, {"session": "nope"})):
        with pytest.raises(HTTPClientError) as info:
            await TerminalClient.open(client, path, **params)
        assert info.value.code in (403, 404)
    back = await TerminalClient.open(user, path, session=sid, fresh="1")
    await back.control("session")
    await back.expect("beforereload")  # a reloaded page is drawn again from the session's recent output
    with pytest.raises(HTTPClientError) as info:  # it is attached again: nobody else may resume it
        await TerminalClient.open(user, path, session=sid, fresh="1")
    assert info.value.code == 404
    await app.services.hub.get(sid).close("closed")


async def test_session_ends_when_the_browser_does_not_come_back(make_bastion, sshd) -> None:
    app = await make_bastion(terminal_reconnect_grace="1")
    _, user, ids = await granted_host(app, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await term.control("session")
    sid = term.session_id
    term.conn.close()
    record = await wait_ended(app, sid, timeout=30)
    assert record.end_reason == "closed" and "did not come back within 1 s" in record.reason
    assert app.services.hub.get(sid) is None  # its slot is free again


async def test_held_output_is_bounded_while_the_browser_is_away(make_bastion, sshd) -> None:
    app = await make_bastion(terminal_reconnect_grace="30")
    _, user, ids = await granted_host(app, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await term.control("session")
    sid = term.session_id
    await term.send("stty -echo; echo go''ne; yes flood\r")
    await term.expect("gone")
    term.conn.close()
    await _detached(app, sid)
    session = app.services.hub.get(sid)
    await wait_until(lambda: session.paused, 30, what="the host paused while nobody reads")
    # while paused, what is held stays within the high water mark plus what was in flight when it paused
    await holds_for(lambda: session.paused and session.pending_bytes <= session.high_water + 512 * 1024, 1)
    back = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}", session=sid, fresh="0")
    await back.control("session")
    await back.expect("flood")
    await wait_until(lambda: not session.paused or session.pending_bytes < session.high_water, 30,
                     what="output flowing again")
    await session.close("closed")


async def test_reload_and_network_blip_in_chromium(make_bastion, sshd, pages, tmp_path) -> None:
    app = await make_bastion(terminal_reconnect_grace="30")
    _, _, ids = await granted_host(app, sshd)
    ctx = await pages.context(1100, 700)
    page = await ctx.new_page()
    await login(page, app.base_url, "alice", "user-password-1")
    await page.goto(f"{app.base_url}/terminal/{ids['host_id']}")
    await page.wait_for_function("() => document.getElementById('session-id').textContent.length > 3")
    sid = await page.text_content("#session-id")
    await page.click("#terminal")
    await page.keyboard.type("echo before''-reload\n")
    await wait_screen(page, "before-reload")

    await page.reload()  # the same tab comes back to its session and is drawn again
    await page.wait_for_selector("#banner:has-text('reconnected')")
    assert await page.text_content("#session-id") == sid
    await wait_screen(page, "before-reload")
    await page.click("#terminal")
    await page.keyboard.type("echo after''-reload\n")
    await wait_screen(page, "after-reload")

    await page.evaluate("() => window.bastionSocket.close()")  # the connection drops: the page re-opens it
    await page.wait_for_function("() => window.bastionSocket.readyState === WebSocket.OPEN"
                                 " && document.getElementById('status').textContent === 'connected'")
    await page.keyboard.type("echo after''-blip\n")
    await wait_screen(page, "after-blip")
    await page.screenshot(path=str(tmp_path / "reconnected.png"))
    session = app.services.hub.get(sid)
    assert session is not None and not session.detached
    await session.close("closed")
    record = await wait_ended(app, sid)
    out = cast_output(read_cast(record.recording_path)[1])
    assert b"before-reload" in out and b"after-reload" in out and b"after-blip" in out
