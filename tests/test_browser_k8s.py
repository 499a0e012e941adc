"""In Chromium: a user opens a pod terminal from the pod picker and runs commands; an auditor watches it and ends
it; the recording plays with its command list."""
from __future__ import annotations

import asyncio
from pathlib import Path

from browser import login, wait_screen
from conftest import BastionApp, wait_ended
from kubeapi.fixtures import kubeapi  # noqa: F401 (fixture)
from kubeapi.harness import KubeAPI
from kubeapi.scenario import pod_user


async def test_pod_terminal_from_the_picker_watched_ended_and_played(bastion: BastionApp, kubeapi: KubeAPI, pages,
                                                                     tmp_path: Path) -> None:
    await pod_user(bastion, kubeapi)
    await bastion.services.auth.create_user("audrey", "auditor-password-1", ["auditor"], actor="test")
    user_ctx = await pages.context(1100, 700)
    aud_ctx = await pages.context(1300, 800)

    upage = await user_ctx.new_page()
    await login(upage, bastion.base_url, "alice", "user-password-1")
    await upage.goto(bastion.base_url + "/k8s")
    await upage.wait_for_selector("#k8s-pods tr[data-pod='web-0']")
    # pods that do not run are listed with the reason and cannot be opened
    pending = await upage.inner_text("#k8s-pods tr[data-pod='queued']")
    assert "Pending" in pending and "cannot open" in pending
    crashy = await upage.inner_text("#k8s-pods tr[data-pod='crashy']")
    assert "CrashLoopBackOff" in crashy and not await upage.locator("#k8s-pods tr[data-pod='crashy'] a").count()
    await upage.fill("#k8s-search", "sidecar")
    await upage.wait_for_selector("#k8s-status:has-text('1 of 5 pods')")
    await upage.screenshot(path=str(tmp_path / "picker.png"), full_page=True)
    await upage.click("#k8s-pods tr[data-pod='web-0'] a:has-text('Open app')")
    await upage.wait_for_url("**/k8s/*/team-a/web-0?container=app")
    await upage.wait_for_function("() => document.getElementById('session-id').textContent.length > 3")
    session_id = await upage.text_content("#session-id")
    assert "test / team-a / app" in await upage.text_content("#pod-where")
    await upage.click("#terminal")
    await upage.keyboard.type("hostname; echo pod''-says-$((20+22))\n")
    await wait_screen(upage, "pod-says-42")
    await wait_screen(upage, "web-0")

    auditor = await aud_ctx.new_page()
    await login(auditor, bastion.base_url, "audrey", "auditor-password-1")
    await auditor.goto(bastion.base_url + "/sessions")
    row = auditor.locator("#live-table tr[data-session-id]")
    await row.wait_for(timeout=10_000)
    assert "test/team-a/web-0/app" in await row.inner_text()
    watch = await aud_ctx.new_page()
    await watch.goto(f"{bastion.base_url}/watch/{session_id}")
    await watch.wait_for_function("() => window.bastionTerm !== undefined")
    await wait_screen(watch, "pod-says-42")
    await upage.keyboard.type("echo typed''-while-watched\n")
    await wait_screen(watch, "typed-while-watched")
    await watch.screenshot(path=str(tmp_path / "watch-pod.png"))

    auditor.once("dialog", lambda d: asyncio.ensure_future(d.accept("pod audit 9")))
    await auditor.click("#live-table button:has-text('End')")
    await upage.wait_for_selector("#banner:has-text('pod audit 9')")
    assert "ended by audrey" in await upage.text_content("#banner")
    await watch.wait_for_selector("#banner:has-text('pod audit 9')")
    record = await wait_ended(bastion, session_id)
    assert record.end_reason == "kicked" and record.ended_by == "audrey"
    await bastion.settle()

    await auditor.goto(f"{bastion.base_url}/play/{session_id}")
    await auditor.wait_for_selector("#command-list li:has-text(\"echo typed''-while-watched\")")
    assert await auditor.locator("#command-list li:has-text(\"hostname; echo pod''-says-$((20+22))\")").count() == 1
    await auditor.screenshot(path=str(tmp_path / "play-pod.png"), full_page=True)
