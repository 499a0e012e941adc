"""The clusters admin page: admins only, XSRF on every change it makes, the token never rendered, and an edit
that leaves the token out keeps it (the browser flow is in test_browser_k8s.py)."""
from __future__ import annotations

import pytest

from conftest import BastionApp
from kubeapi.fixtures import kubeapi  # noqa: F401 (fixture)
from kubeapi.harness import KubeAPI
from kubeapi.scenario import add_cluster, pod_user


@pytest.mark.parametrize("who, status", [("user", 403), ("auditor", 403), ("admin", 200)])
async def test_clusters_page_is_for_admins(bastion: BastionApp, who: str, status: int) -> None:
    client = await bastion.admin() if who == "admin" else await bastion.user(f"c-{who}", roles=[who])
    page = await client.request("GET", "/admin/clusters", headers={"Accept": "text/html"})
    assert page.status == status
    anonymous = await bastion.client().request("GET", "/admin/clusters", headers={"Accept": "text/html"})
    assert anonymous.status == 302 and anonymous.headers["Location"].startswith("/login")


async def test_clusters_page_never_shows_the_token_and_changes_need_xsrf(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    admin, _, cluster_id = await pod_user(bastion, kubeapi)
    insecure_id = await add_cluster(admin, kubeapi, name="lab", ca_bundle="", insecure=True)
    page = (await admin.request("GET", "/admin/clusters", headers={"Accept": "text/html"})).body.decode()
    assert kubeapi.tokens["team-a"] not in page and "sealed" not in page
    assert 'data-cluster="test"' in page and 'data-grant="alice/team-a"' in page
    assert 'data-cluster-warning="lab"' in page and "TLS verification is OFF for this cluster" in page
    assert insecure_id in page

    admin.send_xsrf = False
    for method, path, body in (("POST", "/api/clusters", {"name": "x"}), ("PATCH", f"/api/clusters/{cluster_id}", {"name": "y"}),
                               ("DELETE", f"/api/clusters/{cluster_id}", None), ("POST", f"/api/clusters/{cluster_id}/test", {}),
                               ("POST", "/api/pod-grants", {"namespace": "a"})):
        assert (await admin.request(method, path, body)).status == 403, (method, path)
    admin.send_xsrf = True
    assert sorted(c.name for c in await bastion.services.store.list_clusters()) == ["lab", "test"]


async def test_edit_without_a_token_keeps_it(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    admin, _, cluster_id = await pod_user(bastion, kubeapi)
    before = (await bastion.services.store.get_cluster(cluster_id)).sealed_token
    edited = await admin.patch(f"/api/clusters/{cluster_id}", {"name": "renamed", "api_url": kubeapi.url,
                                                              "ca_bundle": kubeapi.ca_pem, "insecure": False, "app_id": ""})
    assert edited.status == 200 and edited.json["name"] == "renamed" and "token" not in edited.json
    assert (await bastion.services.store.get_cluster(cluster_id)).sealed_token == before
    tested = await admin.post(f"/api/clusters/{cluster_id}/test", {})
    assert tested.json["ok"] is True and tested.json["pods"] == {"team-a": 5}
    # clearing the CA bundle without choosing to skip verification is refused in words
    cleared = await admin.patch(f"/api/clusters/{cluster_id}", {"ca_bundle": ""})
    assert cleared.status == 400
    assert cleared.json["error"] == "give the cluster's CA bundle (PEM), or choose explicitly to skip TLS verification"


async def test_duplicates_are_refused_in_words(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    admin, _, cluster_id = await pod_user(bastion, kubeapi)
    again = await admin.post("/api/clusters", {"name": "test", "api_url": kubeapi.url, "ca_bundle": kubeapi.ca_pem,
                                               "token": "t"})
    assert again.status == 409 and again.json["error"] == "a cluster named test already exists"
    other = await add_cluster(admin, kubeapi, name="other")
    renamed = await admin.patch(f"/api/clusters/{other}", {"name": "test"})
    assert renamed.status == 409 and renamed.json["error"] == "a cluster named test already exists"
    uid = (await bastion.services.store.get_user_by_name("alice")).id
    twice = await admin.post("/api/pod-grants", {"user_id": uid, "cluster_id": cluster_id, "namespace": "team-a"})
    assert twice.status == 409 and twice.json["error"] == "alice already has this grant on test/team-a"
