"""Chromium: an auditor on node B watches and ends a user's session on node A."""
from __future__ import annotations

import asyncio
from pathlib import Path

from client import Client
from conftest import ADMIN_PASSWORD
from browser import login, wait_screen
from test_multinode import Cluster, cluster  # noqa: F401 - fixture


async def test_auditor_on_b_ends_session_on_a(cluster: Cluster, sshd, pages, tmp_path: Path) -> None:  # noqa: F811
    admin = Client(cluster.a.url)
    await admin.login("admin", ADMIN_PASSWORD)
    cat = (await admin.post("/api/apps", {"name": "c"})).json["id"]
    cred = (await admin.post("/api/credentials", {"name": "k", "username": sshd.username, "private_key": sshd.client_key})).json["id"]
    host = (await admin.post("/api/hosts", {"name": "web1", "address": sshd.address, "port": sshd.port, "app_id": cat,
                                            "credential_id": cred})).json["id"]
    users = {u["username"]: u["id"] for u in (await admin.get("/api/users")).json["items"]}
    await admin.post("/api/grants", {"user_id": users["alice"], "host_id": host})

    uctx = await pages.context(1100, 700)
    upage = await uctx.new_page()
    await login(upage, cluster.a.url, "alice", "user-password-1")
    await upage.goto(f"{cluster.a.url}/terminal/{host}")
    await upage.wait_for_function("() => document.getElementById('session-id').textContent.length > 3")
    await upage.click("#terminal")
    await upage.keyboard.type("echo typed''-on-a\n")
    await wait_screen(upage, "typed-on-a")

    actx = await pages.context(1300, 800)
    auditor = await actx.new_page()
    await login(auditor, cluster.b.url, "audrey", "auditor-password-1")
    await auditor.goto(cluster.b.url + "/sessions")
    row = auditor.locator("#live-table tr[data-session-id]")
    await row.wait_for(timeout=10_000)
    assert "node-a" in await row.inner_text()
    href = await auditor.get_attribute("#live-table a:has-text('Watch')", "href")
    watch = await actx.new_page()
    await watch.goto(cluster.b.url + href)
    await watch.wait_for_function("() => window.bastionTerm !== undefined")
    await wait_screen(watch, "typed-on-a")
    await upage.keyboard.type("echo live''-from-a\n")
    await wait_screen(watch, "live-from-a")
    watch.once("dialog", lambda d: asyncio.ensure_future(d.accept("ended from node b")))
    await watch.click("#end-session")
    await upage.wait_for_selector("#banner:has-text('ended from node b')")
    assert "ended by audrey" in await upage.text_content("#banner")
    await watch.wait_for_selector("#banner:has-text('ended from node b')")
    await auditor.bring_to_front()
    ended = auditor.locator("#ended-table tr[data-session-id]")
    await ended.first.wait_for(timeout=10_000)
    text = await ended.first.inner_text()
    assert "kicked" in text and "audrey" in text and "node-a" in text
    await auditor.screenshot(path=str(tmp_path / "sessions-b.png"), full_page=True)
