"""Pod terminals: bad input and faults, each with a clear message and nothing lost (the kubectl gate in
test_k8s_kubectl.py shows the test server answers these as a cluster does)."""
from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from client import TerminalClient
from conftest import BastionApp, wait_ended
from kubeapi.fixtures import fresh_kubeapi, kubeapi  # noqa: F401 (fixtures)
from kubeapi.harness import KubeAPI, make_ca, make_kubeapi
from kubeapi.scenario import add_cluster, grant_namespace, open_pod, pod_user
from waiting import wait_until


async def test_picker_lists_granted_pods_with_phase_and_age(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    _, user, cluster_id = await pod_user(bastion, kubeapi)
    mine = (await user.get("/api/k8s/namespaces")).json["items"]
    assert [(n["cluster"], n["namespace"]) for n in mine] == [("test", "team-a")]
    pods = {p["name"]: p for p in (await user.get(f"/api/k8s/{cluster_id}/team-a/pods")).json["items"]}
    assert set(pods) == {"web-0", "tools", "queued", "crashy", "distroless"}
    assert pods["web-0"]["phase"] == "Running" and pods["web-0"]["age"] == "60m"
    assert [c["name"] for c in pods["web-0"]["containers"]] == ["app", "sidecar"]
    assert pods["queued"]["phase"] == "Pending"
    assert pods["crashy"]["containers"][0]["state"] == "waiting: CrashLoopBackOff"
    # the deep link opens by cluster name too
    page = await user.get("/k8s/test/team-a/web-0", params={"container": "sidecar"})
    assert page.status == 200 and b"/ws/k8s/" in page.body and b"container=sidecar" in page.body


async def test_label_selector_grant_limits_pods(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    admin = await bastion.admin()
    user = await bastion.user("bob")
    cluster_id = await add_cluster(admin, kubeapi)
    uid = (await bastion.services.store.get_user_by_name("bob")).id
    await grant_namespace(admin, uid, cluster_id, selector="app=tools")
    pods = [p["name"] for p in (await user.get(f"/api/k8s/{cluster_id}/team-a/pods")).json["items"]]
    assert pods == ["tools"]
    refused = await user.get(f"/k8s/{cluster_id}/team-a/web-0")
    assert refused.status == 404 and refused.json == {"error": "pod not found"}
    bad = await admin.post("/api/pod-grants", {"user_id": uid, "cluster_id": cluster_id, "namespace": "team-a",
                                               "selector": "app in (a,b)"})
    assert bad.status == 400 and "label terms" in bad.json["error"]


async def test_namespace_not_granted_is_refused_without_revealing_it(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    _, user, cluster_id = await pod_user(bastion, kubeapi, role="admin")
    answers = []
    for ns, pod in (("team-b", "db-0"), ("secret-ns", "vault-0"), ("team-a", "no-such-pod"), ("no-such-ns", "x")):
        page = await user.get(f"/k8s/{cluster_id}/{ns}/{pod}")
        listing = await user.get(f"/api/k8s/{cluster_id}/{ns}/pods")
        answers.append((page.status, page.json, listing.status))
    assert answers[0] == answers[1] == answers[3] == (404, {"error": "pod not found"}, 404)
    assert answers[2][:2] == (404, {"error": "pod not found"})
    with pytest.raises(Exception) as refused:
        await open_pod(user, cluster_id, "db-0", namespace="team-b")
    assert "404" in str(refused.value)
    assert not any(e.get("event") == "exec" and e["pod"].startswith("team-b/") for e in kubeapi.log())


async def test_pods_that_do_not_run_are_refused_with_the_reason(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    _, user, cluster_id = await pod_user(bastion, kubeapi)
    pending = await user.get(f"/k8s/{cluster_id}/team-a/queued")
    assert pending.status == 409 and pending.json["error"] == "queued/app cannot be opened: the pod is Pending, not Running"
    crashing = await user.get(f"/k8s/{cluster_id}/team-a/crashy")
    assert crashing.status == 409 and "the container is not running (waiting: CrashLoopBackOff)" in crashing.json["error"]


async def test_container_without_a_shell(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    _, user, cluster_id = await pod_user(bastion, kubeapi)
    term = await open_pod(user, cluster_id, "distroless")
    closed = await term.control("closed")
    assert closed["code"] == "failed" and "the container static has no shell (tried bash and sh)" in closed["reason"]
    record = await wait_ended(bastion, term.session_id)
    assert record.end_reason == "failed"
    tried = [e["command"] for e in kubeapi.log() if e.get("event") == "exec" and e["pod"] == "team-a/distroless"]
    assert tried[-2:] == [["bash"], ["sh"]]


async def test_pod_without_bash_gets_sh(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    _, user, cluster_id = await pod_user(bastion, kubeapi)
    term = await open_pod(user, cluster_id, "tools")
    await term.control("session")
    await term.send("readlink /proc/$$/exe; ls /bin/bash\r")
    await term.expect("/bin/busybox")
    await term.expect("No such file")
    term.close()
    tried = [e["command"] for e in kubeapi.log() if e.get("event") == "exec" and e["pod"] == "team-a/tools"]
    assert tried[-2:] == [["bash"], ["sh"]]


async def test_wrong_token(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    admin = await bastion.admin()
    kubeapi.tokens["bogus"] = "not-the-token"
    cluster_id = await add_cluster(admin, kubeapi, role="bogus", name="wrong")
    tested = await admin.post(f"/api/clusters/{cluster_id}/test", {"namespace": "team-a"})
    # the test ran: its result says the API was reached and the token may not list pods, and why
    assert tested.status == 200
    assert (tested.json["ok"], tested.json["reached"], tested.json["may_list"]) == (False, True, False)
    assert tested.json["checks"][-1] == {
        "ok": False, "text": "The token may not list pods in team-a: the cluster refused the service-account token "
                            "(401 Unauthorized); an admin must give the cluster a valid token."}
    assert "not-the-token" not in tested.body.decode()
    user = await bastion.user("carol")
    await grant_namespace(admin, (await bastion.services.store.get_user_by_name("carol")).id, cluster_id)
    listing = await user.get(f"/api/k8s/{cluster_id}/team-a/pods")
    assert listing.status == 400 and "refused the service-account token" in listing.json["error"]


async def test_token_that_may_list_but_not_exec(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    admin, user, cluster_id = await pod_user(bastion, kubeapi, role="reader")
    tested = await admin.post(f"/api/clusters/{cluster_id}/test")
    assert tested.status == 200 and tested.json["pods"] == {"team-a": 5} and tested.json["ok"] is True
    assert [c["text"] for c in tested.json["checks"]] == [
        f"Reached the API server at {kubeapi.url} (Kubernetes v1.33.0-bastion-test).",
        "The token may list pods in team-a (5 pods)."]
    term = await open_pod(user, cluster_id, "web-0", "app")
    closed = await term.control("closed")
    assert closed["code"] == "failed"
    assert ("the cluster does not allow the service account to exec into pods in team-a (pods \"web-0\" is forbidden: "
            "User \"system:serviceaccount:bastion:reader\" cannot create resource \"pods/exec\"") in closed["reason"]
    record = await wait_ended(bastion, term.session_id)
    assert record.end_reason == "failed" and "pods/exec" in record.reason


async def test_ca_mismatch(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    admin = await bastion.admin()
    _, other_ca = make_ca("some-other-ca")
    cluster_id = await add_cluster(admin, kubeapi, name="mitm",
                                   ca_bundle=other_ca.public_bytes(serialization.Encoding.PEM).decode())
    tested = await admin.post(f"/api/clusters/{cluster_id}/test", {"namespace": "team-a"})
    assert tested.status == 200 and (tested.json["ok"], tested.json["reached"]) == (False, False)
    assert [c["ok"] for c in tested.json["checks"]] == [False]
    assert tested.json["checks"][0]["text"].startswith(
        "Could not reach the API server: the cluster's TLS certificate is not trusted by its CA bundle (")
    refused = await admin.post("/api/clusters", {"name": "nothing", "api_url": kubeapi.url, "token": "x"})
    assert refused.status == 400 and "CA bundle" in refused.json["error"]
    insecure = await admin.post("/api/clusters", {"name": "lax", "api_url": kubeapi.url, "token": kubeapi.tokens["team-a"],
                                                  "insecure": True})
    assert insecure.status == 201 and insecure.json["warning"].startswith("TLS verification is OFF")
    assert "sealed_token" not in insecure.json and "token" not in insecure.json
    lax = await admin.post(f"/api/clusters/{insecure.json['id']}/test", {"namespace": "team-a"})
    assert lax.status == 200 and lax.json["ok"] is True and lax.json["warning"].startswith("TLS verification is OFF")


async def test_pod_deleted_mid_session(bastion: BastionApp, fresh_kubeapi: KubeAPI) -> None:
    _, user, cluster_id = await pod_user(bastion, fresh_kubeapi)
    term = await open_pod(user, cluster_id, "web-0", "app")
    await term.control("session")
    await term.send("echo before-delete\r")
    await term.expect("before-delete")
    assert await fresh_kubeapi.delete_pod("team-a", "web-0") == 200
    closed = await term.control("closed")
    assert closed["code"] == "host_lost" and "the pod was deleted" in closed["reason"]
    record = await wait_ended(bastion, term.session_id)
    assert (record.end_reason, record.reason) == ("host_lost", "the pod was deleted")
    assert record.recording_size > 0 and b"before-delete" in Path(record.recording_path).read_bytes()


async def test_api_server_restart(bastion: BastionApp, fresh_kubeapi: KubeAPI) -> None:
    _, user, cluster_id = await pod_user(bastion, fresh_kubeapi)
    term = await open_pod(user, cluster_id, "web-0", "app")
    await term.control("session")
    await term.send("echo first-life\r")
    await term.expect("first-life")
    await fresh_kubeapi.arestart()
    closed = await term.control("closed")
    assert closed["code"] == "host_lost"
    record = await wait_ended(bastion, term.session_id)
    assert record.end_reason == "host_lost" and record.reason
    again = await open_pod(user, cluster_id, "web-0", "app")
    await again.control("session")
    await again.send("echo second-life\r")
    await again.expect("second-life")
    again.close()


async def test_cluster_that_refuses_websocket_exec(bastion: BastionApp, tmp_path: Path) -> None:
    api = make_kubeapi(tmp_path / "noupgrade", websocket_exec=False)
    await api.astart()
    try:
        _, user, cluster_id = await pod_user(bastion, api)
        term = await open_pod(user, cluster_id, "web-0", "app")
        closed = await term.control("closed")
        assert closed["code"] == "failed"
        assert "refused WebSocket exec: Upgrade request required; Bastion needs WebSocket exec" in closed["reason"]
    finally:
        await api.astop()


async def test_v4_only_cluster(bastion: BastionApp, tmp_path: Path) -> None:
    api = make_kubeapi(tmp_path / "v4", protocols=["v4.channel.k8s.io"])
    await api.astart()
    try:
        _, user, cluster_id = await pod_user(bastion, api)
        term = await open_pod(user, cluster_id, "web-0", "app")
        await term.control("session")
        await term.send("echo on-v4; exit 0\r")
        await term.expect("on-v4")
        closed = await term.control("closed")
        assert closed["code"] == "exit" and "exit status 0" in closed["reason"]
        assert [e["protocol"] for e in api.log() if e.get("event") == "exec"][-1] == "v4.channel.k8s.io"
    finally:
        await api.astop()


async def test_auditor_watches_and_ends_a_pod_session(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    admin, user, cluster_id = await pod_user(bastion, kubeapi)
    term = await open_pod(user, cluster_id, "web-0", "sidecar")
    await term.control("session")
    await term.send("echo watched-$((1+1))\r")
    await term.expect("watched-2")
    watch = await TerminalClient.open(admin, f"/ws/monitor/{term.session_id}")
    await watch.expect("watched-2")
    await term.send("echo live-$((2+2))\r")
    await watch.expect("live-4")
    listed = (await admin.get("/api/sessions", params={"live": 1})).json["items"]
    mine = [s for s in listed if s["id"] == term.session_id][0]
    assert (mine["cluster"], mine["namespace"], mine["pod"], mine["container"]) == ("test", "team-a", "web-0", "sidecar")
    assert (await admin.post(f"/api/sessions/{term.session_id}/kill", {"reason": "audit stop"})).status == 200
    closed = await term.control("closed")
    assert closed["code"] == "kicked" and "audit stop" in closed["reason"]
    record = await wait_ended(bastion, term.session_id)
    assert record.end_reason == "kicked" and record.ended_by == "admin"


async def test_withdrawn_grant_ends_the_session(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    admin, user, cluster_id = await pod_user(bastion, kubeapi)
    term = await open_pod(user, cluster_id, "web-0", "app")
    await term.control("session")
    grant_id = (await admin.get("/api/pod-grants")).json["items"][0]["id"]
    assert (await admin.delete(f"/api/pod-grants/{grant_id}")).status == 200
    closed = await term.control("closed")
    assert closed["code"] == "revoked"
    assert (await user.get(f"/k8s/{cluster_id}/team-a/web-0")).status == 404


async def test_deleting_a_cluster_ends_its_live_sessions(bastion: BastionApp, kubeapi: KubeAPI) -> None:
    admin, user, cluster_id = await pod_user(bastion, kubeapi)
    other_id = await add_cluster(admin, kubeapi, name="other")
    await grant_namespace(admin, (await bastion.services.store.get_user_by_name("alice")).id, other_id)
    doomed = await open_pod(user, cluster_id, "web-0", "app")
    await doomed.control("session")
    kept = await open_pod(user, other_id, "web-0", "sidecar")
    await kept.control("session")
    await doomed.send("echo before''-delete\r")
    await doomed.expect("before-delete")
    assert (await admin.delete(f"/api/clusters/{cluster_id}")).status == 200
    closed = await doomed.control("closed")
    assert closed["code"] == "revoked" and "the cluster was deleted" in closed["reason"]
    record = await wait_ended(bastion, doomed.session_id)
    # ended by the delete itself (the periodic re-check would say "policy"), with the recording kept
    assert (record.end_reason, record.reason, record.ended_by) == ("revoked", "the cluster was deleted", "admin")
    assert b"before-delete" in Path(record.recording_path).read_bytes()
    # the other cluster's session goes on, and the deleted cluster's grants went with it
    await kept.send("echo still''-here\r")
    await kept.expect("still-here")
    assert [g["cluster_id"] for g in (await admin.get("/api/pod-grants")).json["items"]] == [other_id]
    assert (await user.get(f"/k8s/{cluster_id}/team-a/web-0")).status == 404
    kept.close()


async def test_cluster_that_swallows_websocket_exec(make_bastion, tmp_path: Path) -> None:
    """A proxy that takes the exec upgrade and never answers: the terminal fails within the connect timeout
    (it never hangs), says why, and the session ends."""
    bastion = await make_bastion(terminal_connect_timeout="2")
    api = make_kubeapi(tmp_path / "stall", exec_stall=True)
    await api.astart()
    try:
        _, user, cluster_id = await pod_user(bastion, api)
        term = await open_pod(user, cluster_id, "web-0", "app")
        closed = await term.control("closed", timeout=10)
        assert closed["code"] == "failed"
        assert f"the cluster API at {api.url} did not open the terminal within 2 seconds" in closed["reason"]
        record = await wait_ended(bastion, term.session_id)
        assert record.end_reason == "failed"
        assert [e["event"] for e in api.log() if e.get("event", "").startswith("exec")] == ["exec_stalled"]
    finally:
        await api.astop()


async def test_test_server_harness_never_blocks_the_loop(tmp_path: Path) -> None:
    """Inside a test the harness's blocking calls are refused, and a server that cannot start fails at once."""
    api = make_kubeapi(tmp_path / "broken", pods=[{"namespace": "no-name-nor-containers"}])
    with pytest.raises(RuntimeError, match="await KubeAPI.astart"):
        api.start()
    with pytest.raises(RuntimeError, match="did not start"):
        await api.astart()
    assert api.proc is not None and api.proc.poll() is not None
