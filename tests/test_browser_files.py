"""Chromium: the terminal page's file panel lists a host directory, uploads (picker and drag and drop) and
downloads, checked by SHA-256 on the host's file system; refused without the grant's permission."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from browser import login
from conftest import BastionApp, wait_ended
from scenario import read_cast, seed_sshd
from waiting import wait_until


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def setup(app: BastionApp, sshd: Any, username: str, *, upload: bool, download: bool) -> dict[str, Any]:
    admin = await app.admin()
    existing = (await admin.get("/api/hosts")).json["items"]
    ids = {"host_id": existing[0]["id"]} if existing else await seed_sshd(admin, sshd, "web1")
    await app.user(username)
    uid = (await app.services.store.get_user_by_name(username)).id
    resp = await admin.post("/api/grants", {"user_id": uid, "host_id": ids["host_id"], "upload": upload,
                                            "download": download})
    assert resp.status == 201, resp
    return ids


async def test_file_panel_lists_uploads_and_downloads(bastion: BastionApp, sshd: Any, pages: Any,
                                                      tmp_path: Path) -> None:
    ids = await setup(bastion, sshd, "alice", upload=True, download=True)
    remote = tmp_path / "remote"
    remote.mkdir()
    there = os.urandom(300_000)
    (remote / "there.bin").write_bytes(there)
    (remote / "sub").mkdir()
    ctx = await pages.context(1300, 800, accept_downloads=True)
    page = await ctx.new_page()
    await login(page, bastion.base_url, "alice", "user-password-1")
    await page.goto(f"{bastion.base_url}/terminal/{ids['host_id']}")
    await page.wait_for_function("() => document.getElementById('session-id').textContent.length > 3")
    session_id = await page.text_content("#session-id")
    await page.click("#files-toggle")
    await page.wait_for_selector("#files-rows tr")
    await page.fill("#files-path", str(remote))
    await page.click("#files-path-form button[type=submit]")
    await page.wait_for_selector("#files-rows tr[data-name='there.bin']")
    names = await page.eval_on_selector_all("#files-rows tr", "rows => rows.map(r => r.dataset.name)")
    assert names == ["sub", "there.bin"]  # directories first
    # download: the bytes saved by Chromium are the host's
    async with page.expect_download() as info:
        await page.click("#files-rows tr[data-name='there.bin'] a.files-download")
    saved = await (await info.value).path()
    assert digest(Path(saved).read_bytes()) == digest(there)
    # upload with the file picker
    local = tmp_path / "picked.bin"
    local.write_bytes(os.urandom(2_500_000))
    await page.set_input_files("#files-input", str(local))
    await wait_until(lambda: (remote / "picked.bin").exists() and digest((remote / "picked.bin").read_bytes())
                     == digest(local.read_bytes()), 20, what="picked.bin on the host")
    # upload by dropping a file on the panel
    dropped = os.urandom(70_000)
    transfer = await page.evaluate_handle("""(b64) => { const dt = new DataTransfer();
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        dt.items.add(new File([bytes], 'dropped.bin')); return dt; }""", base64.b64encode(dropped).decode())
    await page.dispatch_event("#files-drop", "drop", {"dataTransfer": transfer})
    await wait_until(lambda: (remote / "dropped.bin").exists() and digest((remote / "dropped.bin").read_bytes())
                     == digest(dropped), 20, what="dropped.bin on the host")
    await page.wait_for_selector("#files-rows tr[data-name='dropped.bin']")
    await page.screenshot(path=pages.shot("files-panel.png"))
    await page.close()
    record = await wait_ended(bastion, session_id)
    await bastion.settle()
    events = (await (await bastion.admin()).get("/api/events", params={"action": "gateway.transfer"})).json["items"]
    seen = {(e["detail"]["direction"], e["detail"]["path"], e["detail"]["sha256"], e["detail"]["session"])
            for e in events}
    assert ("download", f"{remote}/there.bin", digest(there), session_id) in seen
    assert ("upload", f"{remote}/picked.bin", digest(local.read_bytes()), session_id) in seen
    assert ("upload", f"{remote}/dropped.bin", digest(dropped), session_id) in seen
    _, cast = read_cast(record.recording_path)
    marks = [e[2] for e in cast if e[1] == "m"]
    assert any(m.startswith(f"upload {remote}/dropped.bin") for m in marks), marks
    # the player shows each transfer as a marker on its timeline (its tooltip names the file)
    admin_page = await (await pages.context(1300, 800)).new_page()
    await login(admin_page, bastion.base_url, "admin", "admin-password-1")
    await admin_page.goto(f"{bastion.base_url}/play/{session_id}")
    await admin_page.wait_for_selector(".ap-marker-container")
    tips = await admin_page.eval_on_selector_all(".ap-marker-container .ap-tooltip", "els => els.map(e => e.textContent)")
    assert sum("dropped.bin" in t or "picked.bin" in t or "there.bin" in t for t in tips) == 3, tips


async def test_file_panel_refuses_what_the_grant_does_not_allow(bastion: BastionApp, sshd: Any, pages: Any,
                                                                tmp_path: Path) -> None:
    ids = await setup(bastion, sshd, "bob", upload=False, download=True)
    await setup(bastion, sshd, "carol", upload=False, download=False)
    remote = tmp_path / "remote"
    remote.mkdir()
    page = await pages.page(1300, 800)
    await login(page, bastion.base_url, "bob", "user-password-1")
    await page.goto(f"{bastion.base_url}/terminal/{ids['host_id']}")
    await page.click("#files-toggle")
    await page.fill("#files-path", str(remote))
    await page.click("#files-path-form button[type=submit]")
    await page.wait_for_selector("#files-status:has-text('upload is not permitted')")
    assert await page.is_hidden("#files-drop")
    # the API refuses an upload before a byte reaches the host
    bob = await bastion.user("bob")
    resp = await bob.request("PUT", f"/api/hosts/{ids['host_id']}/file", raw=b"data",
                             params={"path": f"{remote}/nope.txt"}, headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 403 and "upload is not permitted" in resp.json["error"]
    assert not (remote / "nope.txt").exists()
    carol = await bastion.user("carol")
    resp = await carol.get(f"/api/hosts/{ids['host_id']}/files", params={"path": str(remote)})
    assert resp.status == 403
    (remote / "secret.txt").write_text("x")
    resp = await carol.get(f"/api/hosts/{ids['host_id']}/file", params={"path": f"{remote}/secret.txt"})
    assert resp.status == 403
    # a host not granted at all reads as unknown
    dave = await bastion.user("dave")
    resp = await dave.get(f"/api/hosts/{ids['host_id']}/files", params={"path": str(remote)})
    assert resp.status == 404


async def test_account_page_adds_and_removes_ssh_keys(make_bastion: Any, pages: Any, tmp_path: Path) -> None:
    from gateway_client import keygen
    app = await make_bastion(gateway_listen="127.0.0.1:0")
    await app.user("erin")
    public = keygen(tmp_path / "erin_key")
    page = await pages.page(1300, 900)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await login(page, app.base_url, "erin", "user-password-1")
    await page.goto(app.base_url + "/account")
    assert (await page.text_content("#gateway-fingerprint")).strip() == app.services.gateway.fingerprint
    await page.fill("#ssh-keys input[name=name]", "workstation")
    await page.fill("#ssh-keys input[name=public_key]", public)
    await page.click("#ssh-keys button[type=submit]")
    row = page.locator("#ssh-key-rows tr[data-key-id]")
    await row.wait_for()
    [stored] = await app.services.store.ssh_keys_of_user((await app.services.store.get_user_by_name("erin")).id)
    assert "workstation" in await row.text_content() and stored.fingerprint in await row.text_content()
    await row.locator("button:has-text('Remove')").click()
    await page.wait_for_selector("#ssh-key-rows td:has-text('No SSH keys.')")
    assert await app.services.store.ssh_keys_of_user(stored.user_id) == []


async def test_auditor_sees_watches_and_ends_a_gateway_session_in_chromium(make_bastion: Any, sshd: Any,
                                                                           pages: Any, tmp_path: Path) -> None:
    from browser import wait_screen
    from gateway_client import PtySSH
    from test_gateway import gateway_setup
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    await s.app.services.auth.create_user("audrey", "auditor-password-1", ["auditor"], actor="test")
    term = await PtySSH(s.ssh.ssh_args("alice@web1", tty=True)).start()
    try:
        await term.prompt()
        term.send("echo first''-over-ssh\r")
        await term.expect("first-over-ssh")
        ctx = await pages.context(1300, 800)
        auditor = await ctx.new_page()
        await login(auditor, s.app.base_url, "audrey", "auditor-password-1")
        await auditor.goto(s.app.base_url + "/sessions")
        row = auditor.locator("#live-table tr[data-session-id]")
        await row.wait_for(timeout=10_000)
        assert "alice" in await row.inner_text() and await row.locator(".badge.via").inner_text() == "ssh"
        async with ctx.expect_page() as watch_info:
            await auditor.evaluate("() => window.open(document.querySelector('#live-table a').href)")
        watch = await watch_info.value
        await watch.wait_for_function("() => window.bastionTerm !== undefined")
        await wait_screen(watch, "first-over-ssh")
        term.send("echo typed''-while-watched\r")
        await wait_screen(watch, "typed-while-watched")
        auditor.once("dialog", lambda d: asyncio.ensure_future(d.accept("policy 8")))
        await auditor.click("#live-table button:has-text('End')")
        assert await term.wait() != 0
        await term.expect("ended by audrey: policy 8")
        await watch.wait_for_selector("#banner:has-text('policy 8')")
    finally:
        await term.close()
