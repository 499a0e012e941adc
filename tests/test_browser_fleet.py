"""Chromium: cancel a run from its page (the target's process table empties, finished hosts keep their rows),
re-run the failed hosts from the page (a new run that links back), and a 120-host run shown a page at a time."""
from __future__ import annotations

from pathlib import Path

from browser import login
from conftest import BastionApp
from test_fleet import sleepers, start_hanging_run
from test_modules import hosts_sshd, setup, write_module  # noqa: F401 - fixture
from waiting import wait_until


async def test_cancel_and_rerun_from_the_run_page(bastion: BastionApp, hosts_sshd, pages, tmp_path: Path) -> None:  # noqa: F811
    env = await setup(bastion, hosts_sshd, modules=())
    run_id, duration, flag = await start_hanging_run(bastion, env, tmp_path)
    page = await (await pages.context(1400, 900)).new_page()
    await login(page, bastion.base_url, "alice", "user-password-1")
    await page.goto(f"{bastion.base_url}/runs/{run_id}")
    await page.wait_for_selector("#hosts tr[data-host='node1'] .result:has-text('ok')")
    assert await page.text_content("#count") == "2 / 4 hosts"
    assert await page.is_visible("#cancel-run") and not await page.is_visible("#rerun-failed")
    await page.click("#cancel-run")
    await page.wait_for_selector("#status:has-text('cancelled')", timeout=30_000)
    await wait_until(lambda: not sleepers(duration), 15, what="the remote sleeps ending")
    for name, kind in (("node0", "ok"), ("node1", "ok"), ("node2", "cancelled"), ("node3", "cancelled")):
        assert await page.text_content(f"#hosts tr[data-host='{name}'] .result") == kind
    assert "fast" in await page.text_content("#hosts tr[data-host='node0'] .out")
    assert "ok 2 · failed 0 · cancelled 2 · waiting 0" == await page.text_content("#summary")
    assert "took" in await page.text_content("#duration")
    assert not await page.is_visible("#cancel-run")
    await page.screenshot(path=str(tmp_path / "cancelled.png"), full_page=True)

    flag.unlink()
    await page.click("#rerun-failed")
    await page.wait_for_url(lambda url: "/runs/" in url and run_id not in url)
    await page.wait_for_selector("#status:has-text('ok')", timeout=60_000)
    assert await page.locator("#hosts tr[data-host]").count() == 2
    assert "second" in await page.text_content("#hosts tr[data-host='node2'] .out")
    assert await page.get_attribute("#rerun-of", "href") == f"/runs/{run_id}"
    await page.click("#rerun-of")
    await page.wait_for_selector("#status:has-text('cancelled')")


async def test_a_120_host_run_is_paged_and_filtered(bastion: BastionApp, hosts_sshd, pages) -> None:  # noqa: F811
    env = await setup(bastion, hosts_sshd, modules=())
    admin = env["admin"]
    cred = (await admin.post("/api/credentials", {"name": "many", "username": "x", "password": "p"})).json["id"]
    for i in range(116):  # inventory only: this module answers for its hosts without reaching them
        resp = await admin.post("/api/hosts", {"name": f"many{i:03d}", "address": "127.0.0.1", "port": 1,
                                               "app_id": env["cat"], "credential_id": cred})
        assert resp.status == 201, resp
    write_module(env["folder"], "1042", '''    def run(self):
        return {h.name: {"ok": i % 4 != 0, "rc": 0 if i % 4 else 3, "stdout": f"row {h.name}"}
                for i, h in enumerate(self.hosts)}''', name="Synthetic")
    await bastion.services.registry.refresh()
    ids = [h["id"] for h in (await env["user"].get("/api/hosts?limit=500")).json["items"]]
    assert len(ids) == 120
    resp = await env["user"].post("/api/modules/1042/runs", {"host_ids": ids, "params": {}})
    run_id = resp.json["run_id"]
    page = await (await pages.context(1400, 900)).new_page()
    await login(page, bastion.base_url, "alice", "user-password-1")
    await page.goto(f"{bastion.base_url}/runs/{run_id}")
    await page.wait_for_selector("#status:has-text('partial')", timeout=60_000)
    assert await page.text_content("#count") == "120 / 120 hosts"
    assert await page.text_content("#summary") == "ok 90 · failed 30 · cancelled 0 · waiting 0"
    assert await page.locator("#hosts tr[data-host]").count() == 50
    assert await page.text_content("#page-info") == "rows 1–50 of 120"
    assert await page.is_disabled("#page-prev")
    await page.click("#page-next")
    await page.click("#page-next")
    assert await page.text_content("#page-info") == "rows 101–120 of 120"
    assert await page.locator("#hosts tr[data-host]").count() == 20 and await page.is_disabled("#page-next")
    await page.select_option("#host-filter", "failed")
    assert await page.text_content("#page-info") == "rows 1–30 of 30"
    failed = await page.locator("#hosts tr[data-host] .result").all_inner_texts()
    assert failed == ["failed"] * 30
    assert await page.is_visible("#rerun-failed")
