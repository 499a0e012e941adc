"""In Chromium: a user opens a pod terminal from the pod picker and runs commands; an auditor watches it and ends
it; the recording plays with its command list."""
from __future__ import annotations

import asyncio
from pathlib import Path

from browser import login, wait_screen
from conftest import ADMIN_PASSWORD, BastionApp, wait_ended
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


OVERFLOW_JS = "() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"


async def test_admin_adds_tests_edits_and_grants_a_cluster(bastion: BastionApp, kubeapi: KubeAPI, pages,
                                                           tmp_path: Path) -> None:
    """The clusters page: a refused form says why in words, the TLS warning shows while "skip verification" is
    ticked, the connection test says whether the API was reached and whether the token may list pods, an edit
    keeps the write-only token, a grant lets a user see the namespace, and the page fits a phone."""
    await bastion.services.auth.create_user("alice", "user-password-1", ["user"], actor="test")
    pages.expect_status(r"/api/clusters$", 400)  # the first, incomplete form is refused on purpose
    page = await pages.page(1440, 900)
    await login(page, bastion.base_url, "admin", ADMIN_PASSWORD)
    await page.click("#main-nav a:has-text('Clusters')")
    await page.wait_for_url("**/admin/clusters")
    assert "No clusters yet." in await page.inner_text("#cluster-table")

    form = page.locator("#cluster-form")
    await form.locator("input[name=name]").fill("test")
    await form.locator("input[name=api_url]").fill(kubeapi.url)
    await form.locator("input[name=token]").fill(kubeapi.tokens["team-a"])
    await page.click("#cluster-submit")
    await page.wait_for_selector("#cluster-form .form-error:has-text('CA bundle')")
    assert await page.inner_text("#cluster-form .form-error") == (
        "Give the cluster's CA bundle (PEM), or choose explicitly to skip TLS verification")
    assert not await page.is_visible("#insecure-warning")
    await page.check("#cluster-insecure")
    assert "TLS verification is OFF" in await page.inner_text("#insecure-warning")
    await page.uncheck("#cluster-insecure")
    assert not await page.is_visible("#insecure-warning")
    await form.locator("textarea[name=ca_bundle]").fill(kubeapi.ca_pem)
    await page.click("#cluster-submit")
    row = page.locator("#cluster-table tr[data-cluster='test']")
    await row.wait_for()
    text = await row.inner_text()
    assert kubeapi.url in text and "verified" in text and "not verified" not in text
    assert kubeapi.tokens["team-a"] not in await page.content()

    # before any grant the test lists pods in "default", which this token may not do: it says so, and why
    await row.locator("button:has-text('Test connection')").click()
    result = page.locator("tr[data-test-result] .test-result")
    await result.locator("p:has-text('does not work')").wait_for()
    checks = await result.locator("li").all_inner_texts()
    assert checks[0] == f"✓ Reached the API server at {kubeapi.url} (Kubernetes v1.33.0-bastion-test)."
    assert checks[1].startswith("✗ The token may not list pods in default: the cluster does not allow the service "
                                "account to list pods in default")

    grant = page.locator("#pod-grant-form")
    await grant.locator("select[name=user_id]").select_option(label="alice")
    await grant.locator("select[name=cluster_id]").select_option(label="test")
    await grant.locator("input[name=namespace]").fill("team-a")
    await grant.locator("button[type=submit]").click()
    await page.wait_for_selector("#pod-grant-table tr[data-grant='alice/team-a']")
    assert "all" in await page.inner_text("#pod-grant-table tr[data-grant='alice/team-a']")

    # an edit that leaves the token empty keeps it: the renamed cluster still reaches team-a's pods
    await page.click("#cluster-table tr[data-cluster='test'] button:has-text('Edit')")
    await page.wait_for_selector("#cluster-form-title:has-text('Edit cluster test')")
    assert await form.locator("input[name=token]").input_value() == ""
    assert "BEGIN CERTIFICATE" in await form.locator("textarea[name=ca_bundle]").input_value()
    await form.locator("input[name=name]").fill("test-eu")
    await page.click("#cluster-submit")
    row = page.locator("#cluster-table tr[data-cluster='test-eu']")
    await row.wait_for()
    await row.locator("button:has-text('Test connection')").click()
    await result.locator("p:has-text('The connection works.')").wait_for()
    assert await result.locator("li").all_inner_texts() == [
        f"✓ Reached the API server at {kubeapi.url} (Kubernetes v1.33.0-bastion-test).",
        "✓ The token may list pods in team-a (5 pods)."]
    assert "test-eu" in await page.inner_text("#pod-grant-table tr[data-grant='alice/team-a']")
    await page.screenshot(path=str(tmp_path / "clusters-desktop.png"), full_page=True)
    dims = await page.evaluate(OVERFLOW_JS)
    assert dims["scroll"] <= dims["inner"], dims  # the admin's navigation, one link longer, still fits

    alice = await bastion.user("alice")
    mine = (await alice.get("/api/k8s/namespaces")).json["items"]
    assert [(n["cluster"], n["namespace"]) for n in mine] == [("test-eu", "team-a")]

    # on a phone: add a cluster without TLS verification (warned before and after), then delete it
    phone = await pages.page(390, 844)
    await login(phone, bastion.base_url, "admin", ADMIN_PASSWORD)
    await phone.click("#nav-toggle")
    await phone.click("#main-nav a:has-text('Clusters')")
    await phone.wait_for_url("**/admin/clusters")
    pform = phone.locator("#cluster-form")
    await pform.locator("input[name=name]").fill("lab")
    await pform.locator("input[name=api_url]").fill(kubeapi.url)
    await pform.locator("input[name=token]").fill(kubeapi.tokens["admin"])
    await phone.check("#cluster-insecure")
    await phone.wait_for_selector("#insecure-warning:visible")
    await phone.screenshot(path=str(tmp_path / "clusters-phone-form.png"), full_page=True)
    await phone.click("#cluster-submit")
    await phone.wait_for_selector("#cluster-table tr[data-cluster='lab']")
    warning = phone.locator("tr[data-cluster-warning='lab']")
    assert (await warning.inner_text()).startswith("TLS verification is OFF for this cluster")
    assert "not verified" in await phone.inner_text("#cluster-table tr[data-cluster='lab']")
    await phone.locator("#cluster-table tr[data-cluster='lab'] button:has-text('Test connection')").click()
    await phone.wait_for_selector("tr[data-test-result]:visible .test-result p:has-text('The connection works.')")
    await phone.screenshot(path=str(tmp_path / "clusters-phone.png"), full_page=True)
    dims = await phone.evaluate(OVERFLOW_JS)
    assert dims["scroll"] <= dims["inner"], dims
    phone.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await phone.click("#cluster-table tr[data-cluster='lab'] button:has-text('Delete')")
    await phone.wait_for_selector("#cluster-table tr[data-cluster='lab']", state="detached")
    assert [c.name for c in await bastion.services.store.list_clusters()] == ["test-eu"]
