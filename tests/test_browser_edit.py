"""Chromium flows for issue 13's missing pieces: editing (hosts with a connection test, users, rules, credentials),
finding (host search over 136 hosts, searchable pickers), audit reports (date range, CSV, event detail), the
dashboard's live End, the first-run guide, and one-tap End on a phone. The `pages` fixture fails each test on a
console error, a CSP violation or a failed request; screenshots go to the test's tmp dir."""
from __future__ import annotations

import csv
import io
import time

from browser import login, wait_until
from client import TerminalClient
from conftest import ADMIN_PASSWORD, BastionApp, seed_inventory
from scenario import seed_sshd
from test_ui_api import keygen_fingerprint
from bastion.store.records import App, Credential, Event, Grant, Host

OVERFLOW_JS = "() => document.documentElement.scrollWidth - window.innerWidth"


def accept_dialogs(page, text: str | None = None) -> None:
    """Answer confirm() and prompt() (with `text`) as a user who means it."""
    page.on("dialog", lambda d: d.accept(text) if d.type == "prompt" and text is not None else d.accept())


async def test_edit_host_and_test_its_connection(bastion: BastionApp, own_sshd, pages) -> None:
    admin = await bastion.admin()
    ids = await seed_sshd(admin, own_sshd, "edit-me")
    page = await pages.page(1440, 900)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    await page.goto(bastion.base_url + "/admin/inventory")
    row = page.locator("tr[data-host='edit-me']")
    assert "not yet seen" in await row.locator(".host-key").inner_text()

    await row.locator("button[data-test-host]").click()
    result = page.locator("#host-test-result.good")
    await result.wait_for()
    want = keygen_fingerprint(str(own_sshd.host_key_path) + ".pub")
    assert "is reachable" in await result.inner_text() and want in await result.inner_text()
    assert await row.locator(".host-key").inner_text() == want
    await page.screenshot(path=pages.shot("inventory-tested.png"), full_page=True)

    await row.locator("button[data-edit='edit-host']").click()
    dialog = page.locator("#edit-host")
    await dialog.wait_for(state="visible")
    assert await dialog.locator("input[name=port]").input_value() == str(own_sshd.port)
    assert await dialog.locator("select[name=credential_id]").input_value() == ids["credential_id"]
    await dialog.locator("input[name=name]").fill("edited-host")
    await dialog.locator("input[name=tags]").fill("prod, db")
    await dialog.locator("input[name=locale]").fill("en_US.UTF-8")
    await page.screenshot(path=pages.shot("inventory-edit-host.png"))
    async with page.expect_navigation():
        await dialog.locator("button[type=submit]").click()
    await page.locator("tr[data-host='edited-host']").wait_for()
    host = await bastion.services.store.get_host(ids["host_id"])
    assert (host.name, host.tags, host.locale, host.port) == ("edited-host", ["db", "prod"], "en_US.UTF-8", own_sshd.port)
    assert host.host_key_fingerprint == want  # same endpoint: the pinned key stays

    # emptying tags and locale is a change too
    await page.locator("tr[data-host='edited-host'] button[data-edit='edit-host']").click()
    await dialog.locator("input[name=tags]").fill("")
    await dialog.locator("input[name=locale]").fill("")
    async with page.expect_navigation():
        await dialog.locator("button[type=submit]").click()
    await wait_until(lambda: _host_tags(bastion, ids["host_id"], []), 5, "tags emptied")

    # a wrong value is refused in the form's words, the dialog stays open
    pages.expect_status(r"/api/hosts/", 400)
    await page.locator("tr[data-host='edited-host'] button[data-edit='edit-host']").click()
    await dialog.locator("input[name=address]").fill("not an address!")
    await dialog.locator("button[type=submit]").click()
    error = dialog.locator(".form-error")
    await error.wait_for()
    assert (await error.inner_text()).startswith("Address must be an IP address or a host name")


async def _host_tags(app: BastionApp, host_id: str, want: list[str]) -> bool:
    return (await app.services.store.get_host(host_id)).tags == want


async def test_rotate_a_credential(bastion: BastionApp, pages) -> None:
    admin = await bastion.admin()
    ids = await seed_inventory(bastion, admin, name="rot", password="old-secret")
    page = await pages.page(1440, 900)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    await page.goto(bastion.base_url + "/admin/inventory")
    await page.locator("button[data-edit='edit-cred']").click()
    dialog = page.locator("#edit-cred")
    assert await dialog.locator("input[name=username]").input_value() == "root"
    await dialog.locator("input[name=password]").fill("new-secret-2")
    async with page.expect_navigation():
        await dialog.locator("button[type=submit]").click()

    async def rotated() -> bool:
        cred = await bastion.services.store.get_credential(ids["credential_id"])
        return bastion.services.inventory.open_secret(cred) == "new-secret-2"
    await wait_until(rotated, 5, "the new secret stored")
    assert "new-secret-2" not in await page.content()


async def test_edit_users(bastion: BastionApp, pages) -> None:
    auth, store = bastion.services.auth, bastion.services.store
    carol = await auth.create_user("carol", "carol-password-1", ["user"], actor="test")
    secret, _ = await auth.begin_totp(carol)
    await auth.confirm_totp(carol, auth.totp_code(secret))
    await auth.create_user("dave", "dave-password-1", ["user"], actor="test")
    page = await pages.page(1440, 900)
    accept_dialogs(page)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    await page.goto(bastion.base_url + "/admin/users")

    row = page.locator("tr[data-user='carol']")
    await row.locator("button[data-edit='edit-user']").click()
    dialog = page.locator("#edit-user")
    assert await dialog.locator("input[value=user]").is_checked()
    await dialog.locator("input[value=auditor]").check()
    await dialog.locator("input[name=password]").fill("carol-new-password")
    await page.screenshot(path=pages.shot("users-edit.png"))
    async with page.expect_navigation():
        await dialog.locator("button[type=submit]").click()
    await page.locator("tr[data-user='carol'] .tag.role-auditor").wait_for()
    await wait_until(lambda: _roles(bastion, "carol", ["auditor", "user"]), 5, "carol's roles saved")
    assert await auth.verify_password("carol-new-password", (await store.get_user(carol.id)).password_hash)

    async with page.expect_navigation():
        await page.locator("tr[data-user='carol'] button:has-text('Reset TOTP')").click()
    await wait_until(lambda: _no_totp(bastion, carol.id), 5, "carol's TOTP reset")
    assert await page.locator("tr[data-user='carol'] button:has-text('Reset TOTP')").count() == 0

    await page.locator("tr[data-user='dave'] button:has-text('Delete')").click()
    await page.locator("tr[data-user='dave']").wait_for(state="detached")
    assert await store.get_user_by_name("dave") is None
    # an admin cannot delete (or demote) themselves: no Delete on their own row
    assert await page.locator("tr[data-user='admin'] button:has-text('Delete')").count() == 0
    deleted = (await store.list_events(action="user.deleted")).items
    assert deleted[0].target == "dave" and deleted[0].address == "127.0.0.1"


async def _roles(app: BastionApp, name: str, want: list[str]) -> bool:
    return (await app.services.store.get_user_by_name(name)).roles == want


async def _no_totp(app: BastionApp, uid: str) -> bool:
    return not (await app.services.store.get_user(uid)).totp_secret


async def test_edit_and_switch_rules(bastion: BastionApp, pages) -> None:
    admin = await bastion.admin()
    assert (await admin.post("/api/command-rules", {"name": "no-reboot", "pattern": "^reboot"})).status == 201
    page = await pages.page(1440, 900)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    await page.goto(bastion.base_url + "/admin/rules")
    row = page.locator("tr[data-rule='no-reboot']")
    await row.locator("button:has-text('Disable')").click()
    await page.locator("tr[data-rule='no-reboot'] .badge:has-text('off')").wait_for()
    assert (await bastion.services.store.list_rules())[0].enabled is False

    await page.locator("tr[data-rule='no-reboot'] button[data-edit='edit-rule']").click()
    dialog = page.locator("#edit-rule")
    assert await dialog.locator("input[name=pattern]").input_value() == "^reboot"
    assert not await dialog.locator("input[name=enabled]").is_checked()
    await dialog.locator("input[name=pattern]").fill(r"^(reboot|shutdown)\b")
    await dialog.locator("select[name=action]").select_option("warn")
    await dialog.locator("input[name=enabled]").check()
    async with page.expect_navigation():
        await dialog.locator("button[type=submit]").click()
    await page.locator("tr[data-rule='no-reboot'] .badge:has-text('on')").wait_for()
    [rule] = await bastion.services.store.list_rules()
    assert (rule.pattern, rule.action, rule.enabled) == (r"^(reboot|shutdown)\b", "warn", True)


async def many_hosts(app: BastionApp, username: str, count: int = 136) -> list[Host]:
    """`count` hosts in four categories, all granted to `username` (written to the store: the UI is under test)."""
    store = app.services.store
    user = await store.get_user_by_name(username)
    cred = await store.create_credential(Credential(name="fleet", username="root"))
    apps = [await store.create_app(App(name=n)) for n in ("web", "db", "cache", "batch")]
    hosts = []
    for i in range(count):
        app_ = apps[i % 4]
        hosts.append(await store.create_host(Host(name=f"{app_.name}-{i:04d}", address=f"10.0.{i // 250}.{i % 250 + 1}",
                                                  app_id=app_.id, credential_id=cred.id, tags=["even" if i % 2 == 0 else "odd"])))
    for app_ in apps:
        await store.create_grant(Grant(user_id=user.id, app_id=app_.id))
    return hosts


async def test_find_a_host_among_136(bastion: BastionApp, pages) -> None:
    await bastion.user("finn")
    await many_hosts(bastion, "finn")
    for width, height in ((1440, 900), (390, 844)):
        page = await pages.page(width, height)
        await login(page, bastion.base_url, "finn", "user-password-1")
        assert await page.locator("tr[data-host-id]:visible").count() == 136
        await page.fill("#host-search", "db-0041")
        await wait_until(lambda: _visible_rows(page, 1), 5, "one host shown")
        assert await page.locator("tr[data-host-id]:visible td.strong").inner_text() == "db-0041"
        assert await page.inner_text("#host-shown") == "1 of 136 shown"
        assert await page.locator("section[data-filter-group]:visible").count() == 1  # other categories hidden
        await page.fill("#host-search", "odd")  # tags count: the db and batch hosts
        await wait_until(lambda: _visible_rows(page, 68), 5, "odd hosts")
        assert await page.locator("section[data-filter-group]:visible").count() == 2
        await page.fill("#host-search", "batch 013")  # every word: category and name
        await wait_until(lambda: _visible_rows(page, 2), 5, "batch-0131 and batch-0135")
        await page.fill("#host-search", "10.0.0.9")
        await wait_until(lambda: _visible_rows(page, 11), 5, "addresses 10.0.0.9x")
        assert await page.evaluate(OVERFLOW_JS) <= 0
        await page.screenshot(path=pages.shot(f"home-search-{width}.png"), full_page=True)
        await page.fill("#host-search", "")
        await wait_until(lambda: _visible_rows(page, 136), 5, "every host again")


async def _visible_rows(page, n: int) -> bool:
    return await page.locator("tr[data-host-id]:visible").count() == n


async def test_searchable_host_pickers_and_inventory_search(bastion: BastionApp, pages) -> None:
    await bastion.user("gina")
    hosts = await many_hosts(bastion, "admin")
    page = await pages.page(1440, 900)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)

    await page.goto(bastion.base_url + "/admin/grants")
    await page.select_option("#grant-form select[name=user_id]", label="gina")
    await page.fill("#grant-host-find", "cache-0042")
    assert await page.input_value("#grant-host") == next(h.id for h in hosts if h.name == "cache-0042")
    assert await page.locator("#grant-host option:not([hidden])").count() == 2  # "—" and the match
    await page.click("#grant-form button[type=submit]")
    await page.locator("td:has-text('cache-0042')").wait_for()
    gina = await bastion.services.store.get_user_by_name("gina")
    assert [g.host_id for g in await bastion.services.store.grants_of_user(gina.id)] == \
        [next(h.id for h in hosts if h.name == "cache-0042")]

    # the modules page: search adds up (a host the search hides stays ticked)
    await page.goto(bastion.base_url + "/modules")
    await page.fill("#host-find", "web-0004")
    await page.locator(".host-pick:visible").first.locator("input").check()
    await page.fill("#host-find", "db-0005")
    await page.locator(".host-pick:visible").first.locator("input").check()
    await page.fill("#host-find", "")
    assert await page.inner_text("#hosts-picked") == "2 hosts selected"
    assert await page.locator(".host-pick:visible").count() == 136

    # the inventory pages 100 hosts at a time; its search goes through every host
    await page.goto(bastion.base_url + "/admin/inventory")
    assert await page.locator("tr[data-host]").count() == 100
    assert "1–100 of 136" in await page.inner_text(".pager")
    await page.click(".pager a:has-text('Older')")
    assert await page.locator("tr[data-host]").count() == 36
    await page.fill("#host-search-form input[name=q]", "cache-01")
    await page.click("#host-search-form button[type=submit]")
    await page.wait_for_url("**q=cache-01**")
    names = await page.eval_on_selector_all("tr[data-host] td.strong", "(els) => els.map((e) => e.textContent)")
    assert names == sorted(h.name for h in hosts if h.name.startswith("cache-01")) and len(names) == 9


async def test_audit_range_detail_and_csv(bastion: BastionApp, pages, tmp_path) -> None:
    store = bastion.services.store
    old = await store.add_event(Event(ts=time.time() - 5 * 86400, action="login.failed", actor="mallory",
                                      address="203.0.113.7", ok=False, detail={"why": "bad credentials"}))
    await bastion.user("aud", roles=["auditor"])
    page = await pages.page(1440, 900, accept_downloads=True)
    await login(page, bastion.base_url, "aud", "user-password-1")
    await page.goto(bastion.base_url + "/audit")
    day = time.strftime("%Y-%m-%d", time.gmtime(old.ts))
    await page.fill("#audit-filters input[name=from]", day)
    await page.fill("#audit-filters input[name=to]", day)
    await page.click("#audit-filters button[type=submit]")
    await page.wait_for_url(f"**from={day}**")
    assert await page.locator("table.list tbody tr").count() == 1

    async with page.expect_download() as info:
        await page.click("#audit-csv")
    download = await info.value
    path = tmp_path / "audit.csv"
    await download.save_as(path)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert [r[3] for r in rows[1:]] == ["mallory"] and rows[1][5] == "203.0.113.7"

    await page.click("a:has-text('Details')")
    await page.wait_for_url(f"**/audit/{old.id}")
    detail = await page.inner_text("#event-detail")
    assert "mallory" in detail and "203.0.113.7" in detail and "bad credentials" in detail and "failed" in detail
    await page.screenshot(path=pages.shot("audit-event.png"), full_page=True)


async def test_first_run_guide(bastion: BastionApp, pages) -> None:
    page = await pages.page(1440, 900)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    steps = page.locator("#setup-steps li")
    assert await steps.count() == 4
    assert "Ask an administrator" not in await page.inner_text("main")
    assert await page.locator("#setup-steps li.done").count() == 0
    admin = await bastion.admin()
    await seed_inventory(bastion, admin)  # a category, a credential and a host: three steps done
    await page.reload()
    assert await page.locator("#setup-steps li.done").count() == 3
    await page.screenshot(path=pages.shot("first-run.png"), full_page=True)
    await page.click("#setup-steps a:has-text('Grant')")
    await page.wait_for_url("**/admin/grants")


async def test_end_a_live_session_with_one_tap_on_a_phone(bastion: BastionApp, sshd, pages) -> None:
    """390×844 with touch: the live row's End is in view without scrolling the table; a tap (and the reason
    prompt's OK) ends the session. The dashboard's live rows end the same way and refresh by themselves."""
    from test_terminal import granted_host, wait_ended

    admin, user, ids = await granted_host(bastion, sshd, username="payments-operator-long",
                                          name="payments-api-eu-west-1-production-0001")
    await bastion.user("sec", roles=["auditor"])
    page = await pages.page(390, 844, has_touch=True, is_mobile=True)
    accept_dialogs(page, "phone says stop")
    await login(page, bastion.base_url, "sec", "user-password-1")

    await page.goto(bastion.base_url + "/dashboard")
    assert await page.locator("#dash-live td:has-text('No live sessions')").count() == 1
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    first = (await term.control("session"))["id"]
    end = page.locator(f"#dash-live tr[data-session-id='{first}'] button:has-text('End')")
    await end.wait_for(timeout=10000)  # appeared without a reload
    box = await end.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    await end.tap()
    assert (await wait_ended(bastion, first)).reason == "phone says stop"
    term.close()

    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    second = (await term.control("session"))["id"]
    await page.goto(bastion.base_url + "/sessions")
    end = page.locator(f"#live-table tr[data-session-id='{second}'] button:has-text('End')")
    await end.wait_for()
    box = await end.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844, box
    assert box["height"] >= 30, box  # a finger-sized target
    # the button is what a finger at its centre hits (not covered by the scrolled cells)
    hit = await page.evaluate("([x, y]) => document.elementFromPoint(x, y).textContent",
                              [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
    assert hit == "End"
    assert await page.evaluate(OVERFLOW_JS) <= 0
    await page.screenshot(path=pages.shot("phone-sessions-end.png"), full_page=True)
    await end.tap()
    record = await wait_ended(bastion, second)
    assert (record.end_reason, record.ended_by, record.reason) == ("kicked", "sec", "phone says stop")
    assert "phone says stop" in (await term.control("closed"))["reason"]
    term.close()


async def test_edit_dialogs_fit_a_phone(bastion: BastionApp, pages) -> None:
    """At 390×844 every edit dialog opens inside the viewport and the page does not widen."""
    admin = await bastion.admin()
    await seed_inventory(bastion, admin, name="phone-host")
    assert (await admin.post("/api/command-rules", {"name": "r", "pattern": "x"})).status == 201
    await bastion.user("pat")
    page = await pages.page(390, 844, has_touch=True, is_mobile=True)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    for path, dialog in (("/admin/inventory", "edit-app"), ("/admin/inventory", "edit-cred"),
                         ("/admin/inventory", "edit-host"), ("/admin/users", "edit-user"), ("/admin/rules", "edit-rule")):
        await page.goto(bastion.base_url + path)
        await page.locator(f"button[data-edit='{dialog}']").first.tap()
        box = await page.locator(f"#{dialog}").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["height"] <= 844, (dialog, box)
        assert await page.evaluate(OVERFLOW_JS) <= 0, dialog
        await page.screenshot(path=pages.shot(f"phone-{dialog}.png"))
        await page.locator(f"#{dialog} button[data-close]").tap()
        assert not await page.locator(f"#{dialog}").is_visible()


async def test_player_highlights_the_current_command(bastion: BastionApp, sshd, pages) -> None:
    """The command list marks the command the playback has reached, forwards and backwards."""
    import asyncio

    from test_terminal import granted_host, wait_ended

    admin, user, ids = await granted_host(bastion, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}", cols=100, rows=30)
    session_id = (await term.control("session"))["id"]
    for n, word in enumerate(("first", "second", "third")):
        if n:
            await asyncio.sleep(1.2)  # spacing in the recording (not synchronisation): distinct command times
        await term.send(f"echo {word}''-cmd\r")
        await term.expect(f"{word}-cmd")
    await asyncio.sleep(1.2)  # the recording goes on past the last command, so a seek just after it lands there
    term.close()
    await wait_ended(bastion, session_id)
    await bastion.settle()
    commands = {c.text: c for c in await bastion.services.store.commands_of_session(session_id)}
    assert len(commands) == 3, commands

    page = await pages.page(1440, 900)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    await page.goto(f"{bastion.base_url}/play/{session_id}")
    await page.wait_for_selector("#command-list li[data-offset]")
    await page.wait_for_function("() => window.bastionPlayer !== undefined")
    current = page.locator("#command-list li.current")
    for text in ("echo second''-cmd", "echo third''-cmd", "echo first''-cmd"):
        at = commands[text].offset + 0.3
        await page.evaluate("async (t) => { await window.bastionPlayer.pause(); await window.bastionPlayer.seek(t); }", at)
        await wait_until(lambda: _current_is(current, text), 10, f"{text} highlighted")
        assert await current.count() == 1
        assert await current.get_attribute("aria-current") == "true"
    await page.screenshot(path=pages.shot("player-current.png"), full_page=True)


async def _current_is(current, text: str) -> bool:
    return await current.count() == 1 and text in await current.inner_text()


async def test_dashboard_charts_are_drawn(bastion: BastionApp, pages) -> None:
    """Chart.js draws the sessions-per-day bars: the canvas holds the accent colour (read from its pixels)."""
    from bastion.store.records import Session

    for i in range(6):
        await bastion.services.store.create_session(Session(host_name=f"h{i % 2}", username=f"u{i % 3}", live=False,
                                                            started_at=time.time() - i * 3600))
    for width, height in ((1440, 900), (390, 844)):
        page = await pages.page(width, height)
        await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
        await page.goto(bastion.base_url + "/dashboard")
        await page.wait_for_selector("#charts[data-drawn='1']")
        accent = await page.evaluate("""() => { const c = document.getElementById('chart-sessions');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
          for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - 0x24) < 12 && Math.abs(d[i + 1] - 0x56) < 12 && Math.abs(d[i + 2] - 0xd6) < 12 && d[i + 3] > 200) n++;
          return n; }""")
        assert accent > 50, accent
        assert await page.evaluate(OVERFLOW_JS) <= 0
        await page.screenshot(path=pages.shot(f"dashboard-{width}.png"), full_page=True)


async def test_host_pickers_on_sessions_commands_and_rules(bastion: BastionApp, pages) -> None:
    """Typing in a page's host finder picks the matching host of its select (sessions, commands, rules)."""
    hosts = await many_hosts(bastion, "admin", count=40)
    target = next(h for h in hosts if h.name == "cache-0022")
    page = await pages.page(1440, 900)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    for path, find, select in (("/sessions", "#sessions-host-find", "#sessions-host"),
                               ("/commands", "#commands-host-find", "#commands-host"),
                               ("/admin/rules", "#rule-target-find", "#rule-target")):
        await page.goto(bastion.base_url + path)
        await page.fill(find, "cache-0022")
        assert await page.input_value(select) == target.id, path
        assert await page.locator(f"{select} option:not([hidden])").count() == 2, path  # the empty choice and it
        await page.fill(find, "")
        assert await page.locator(f"{select} option[hidden]").count() == 0, path
    # the rule form takes the picked host
    await page.fill("#rule-form input[name=name]", "cache-only")
    await page.fill("#rule-form input[name=pattern]", "^halt")
    await page.select_option("#rule-form select[name=scope]", "host")
    await page.fill("#rule-target-find", "cache-0022")
    async with page.expect_navigation():
        await page.click("#rule-form button[type=submit]")
    [rule] = await bastion.services.store.list_rules()
    assert (rule.scope, rule.scope_value) == ("host", target.id)
    assert "host: cache-0022" in await page.inner_text("tr[data-rule='cache-only']")
