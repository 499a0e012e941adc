"""Chromium: the four-eyes flows as people use them. A user asks for access and an auditor approves it on the
access page; a command held by a review rule is approved in one click beside the live screen; the owner invites a
peer whose typing reaches the host; an auditor pauses and resumes the session. The host's file system is the
ground truth for what ran."""
from __future__ import annotations

from pathlib import Path

from browser import login, wait_screen
from conftest import BastionApp
from waiting import wait_until

import scenario


async def test_access_request_review_join_and_pause_in_chromium(bastion: BastionApp, sshd, pages, tmp_path: Path) -> None:
    admin = await bastion.admin()
    ids = await scenario.seed_sshd(admin, sshd, "web1")
    auth = bastion.services.auth
    await auth.create_user("alice", "user-password-1", ["user"], actor="test")
    await auth.create_user("bob", "auditor-password-1", ["auditor"], actor="test")
    await auth.create_user("carol", "user-password-1", ["user"], actor="test")
    rule = await admin.post("/api/command-rules", {"name": "ask-first", "pattern": r"touch\s+\S*held",
                                                   "action": "review"})
    assert rule.status == 201

    # alice asks for access on the access page
    alice = await (await pages.context(1300, 850)).new_page()
    await login(alice, bastion.base_url, "alice", "user-password-1")
    await alice.goto(bastion.base_url + "/access")
    await alice.select_option("#request-form select[name=host_id]", ids["host_id"])
    await alice.fill("#request-form input[name=minutes]", "45")
    await alice.fill("#request-form input[name=reason]", "CHG-7 rotate logs")
    await alice.click("#request-form button[type=submit]")
    await alice.wait_for_selector("#my-requests .request-status:has-text('pending')")

    # bob sees it waiting on his dashboard, and approves it with a comment on his access page
    bob = await (await pages.context(1300, 850)).new_page()
    await login(bob, bastion.base_url, "bob", "auditor-password-1")
    await bob.goto(bastion.base_url + "/dashboard")
    await bob.wait_for_selector("#foureyes-panel li:has-text('alice asks for web1 (45 min): CHG-7 rotate logs')")
    assert await bob.is_hidden("#break-glass-banner")
    await bob.goto(bastion.base_url + "/access")
    row = bob.locator("#pending-requests tr[data-request-id]")
    await row.locator(".decision-comment").fill("ok, CHG-7 is approved")
    await row.locator("button[data-decide=approve]").click()
    await bob.wait_for_selector("#pending-requests td:has-text('Nothing is waiting')")
    await alice.reload()
    await alice.wait_for_selector("#my-requests .request-status:has-text('approved')")

    # alice's terminal works now; bob watches it
    await alice.goto(f"{bastion.base_url}/terminal/{ids['host_id']}")
    await alice.wait_for_function("() => document.getElementById('session-id').textContent.length > 3")
    session_id = await alice.text_content("#session-id")
    await alice.click("#terminal")
    await alice.keyboard.type("echo first''-command\n")
    await wait_screen(alice, "first-command")
    await bob.goto(f"{bastion.base_url}/watch/{session_id}")
    await wait_screen(bob, "first-command")

    # a held command: nothing runs until bob clicks Approve beside the screen
    marker = tmp_path / "browser-held"
    await alice.keyboard.type(f"touch {marker}\n")
    item = bob.locator("li.review-item")
    await item.locator("code.held-command").wait_for()
    assert await item.locator("code.held-command").text_content() == f"touch {marker}"
    assert not marker.exists()
    await item.locator("button:has-text('Approve')").click()
    await wait_until(marker.exists, 15, what="the approved command running on the host")
    await bob.wait_for_selector("li.review-item", state="detached")

    # alice invites carol as a peer; carol types through the link
    await alice.fill("#foureyes form.invite input[name=username]", "carol")
    await alice.select_option("#foureyes form.invite select[name=mode]", "peer")
    await alice.click("#foureyes form.invite button[type=submit]")
    await alice.wait_for_selector("#foureyes .invite-link:has-text('/join/')")
    link = await alice.locator("#foureyes .invite-link").text_content()
    url = link.rsplit(": ", 1)[1]
    assert url.startswith(bastion.base_url + "/join/")
    carol = await (await pages.context(1300, 850)).new_page()
    await login(carol, bastion.base_url, "carol", "user-password-1")
    await carol.goto(url)
    await wait_screen(carol, "first-command")
    await alice.wait_for_selector("#participants:has-text('carol (peer)')")
    by_carol = tmp_path / "typed-by-carol"
    await carol.click("#terminal")
    await carol.keyboard.type(f"touch {by_carol}\n")
    await wait_until(by_carol.exists, 15, what="the peer's command running on the host")

    # bob pauses: alice sees why, and what she types does not reach the host; then he resumes
    bob.once("dialog", lambda dialog: dialog.accept("look at this with me first"))
    await bob.click("#foureyes button.pause")
    await alice.wait_for_selector("#paused-badge:has-text('input paused by bob: look at this with me first')")
    paused = tmp_path / "typed-while-paused"
    await alice.click("#terminal")  # the keyboard was on the invitation form
    await alice.keyboard.type(f"touch {paused}\n")
    await alice.wait_for_selector("#banner:has-text('input is paused by bob')", state="attached")  # shown briefly
    await bob.click("#foureyes button.resume")
    await alice.wait_for_selector("#paused-badge", state="hidden")
    after = tmp_path / "typed-after-resume"
    await alice.keyboard.type(f"touch {after}\n")
    await wait_until(after.exists, 15, what="input reaching the host after the resume")
    assert not paused.exists()
    await alice.screenshot(path=pages.shot("foureyes-owner.png"))
    await bob.screenshot(path=pages.shot("foureyes-watch.png"))

    # the player lists who ran what, and what an approver decided
    await alice.close()
    await bastion.settle()
    await bob.goto(f"{bastion.base_url}/play/{session_id}")
    await bob.wait_for_selector(f"#command-list li:has-text('{by_carol.name}') .by:text-is('carol')")
    await bob.wait_for_selector(f"#command-list li:has-text('{marker.name}'):has-text('[approved by bob]')")
    await bob.wait_for_selector(f"#command-list li:has-text('{after.name}') .by:text-is('alice')")
    await bob.wait_for_selector("#verify:text-is('verified')")  # the attributed recording still verifies
    await bob.wait_for_selector("#player .ap-player")
    await bob.screenshot(path=pages.shot("foureyes-player.png"))
    stored = {c.text: c for c in await bastion.services.store.commands_of_session(session_id)}
    assert stored[f"touch {marker}"].review == "approved by bob"
    assert stored[f"touch {by_carol}"].by == "carol" and stored[f"touch {after}"].by == "alice"


async def test_break_glass_banner_until_reviewed_in_chromium(make_bastion, sshd, pages) -> None:
    app = await make_bastion(access_break_glass_roles="admin")
    admin = await app.admin()
    ids = await scenario.seed_sshd(admin, sshd, "db1")
    await app.services.auth.create_user("bob", "auditor-password-1", ["auditor"], actor="test")
    # the admin breaks the glass on the access page
    page = await (await pages.context(1300, 850)).new_page()
    await login(page, app.base_url, "admin", "admin-password-1")
    await page.goto(app.base_url + "/access")
    await page.select_option("#request-form select[name=host_id]", ids["host_id"])
    await page.fill("#request-form input[name=reason]", "outage, on-call unreachable")
    await page.check("#request-form input[name=break_glass]")
    await page.click("#request-form button[type=submit]")
    await page.wait_for_selector("#my-requests .request-status:has-text('approved (break-glass)')")
    # every auditor's dashboard shouts until someone else reviews it
    bob = await (await pages.context(1300, 850)).new_page()
    await login(bob, app.base_url, "bob", "auditor-password-1")
    await bob.goto(app.base_url + "/dashboard")
    await bob.wait_for_selector("#break-glass-banner:has-text('admin → db1: outage, on-call unreachable')")
    await bob.screenshot(path=pages.shot("break-glass-dashboard.png"))
    await bob.goto(app.base_url + "/access")
    await bob.screenshot(path=pages.shot("break-glass-access.png"))
    await bob.fill("#to-review .review-comment", "matches incident 881")
    await bob.click("#to-review button[data-mark-reviewed]")
    await bob.wait_for_selector("#break-glass-banner", state="detached")
    await bob.goto(app.base_url + "/dashboard")
    await bob.wait_for_selector("#foureyes-panel li:has-text('Nothing is waiting')")
    assert await bob.is_hidden("#break-glass-banner")
    reviewed = (await app.services.store.list_access_requests(review_status="done")).items
    assert [(r.reviewed_by, r.review_comment) for r in reviewed] == [("bob", "matches incident 881")]
