"""Bastion-side setup for pod terminals: a cluster in the inventory and a user granted a namespace."""
from __future__ import annotations

from typing import Any

from client import Client, TerminalClient

from .harness import KubeAPI


async def add_cluster(admin: Client, api: KubeAPI, *, role: str = "team-a", name: str = "test", **fields: Any) -> str:
    """Add the test cluster with a role's token and the test CA; return its id."""
    body = {"name": name, "api_url": api.url, "ca_bundle": api.ca_pem, "token": api.tokens[role], **fields}
    resp = await admin.post("/api/clusters", body)
    assert resp.status == 201, resp
    return resp.json["id"]


async def grant_namespace(admin: Client, user_id: str, cluster_id: str, namespace: str = "team-a",
                          selector: str = "") -> str:
    body = {"user_id": user_id, "cluster_id": cluster_id, "namespace": namespace}
    if selector:
        body["selector"] = selector
    resp = await admin.post("/api/pod-grants", body)
    assert resp.status == 201, resp
    return resp.json["id"]


async def pod_user(bastion: Any, api: KubeAPI, *, role: str = "team-a", username: str = "alice",
                   **cluster_fields: Any) -> tuple[Client, Client, str]:
    """(admin, user, cluster id): a cluster and a user granted its team-a namespace."""
    admin = await bastion.admin()
    user = await bastion.user(username)
    cluster_id = await add_cluster(admin, api, role=role, **cluster_fields)
    uid = (await bastion.services.store.get_user_by_name(username)).id
    await grant_namespace(admin, uid, cluster_id)
    return admin, user, cluster_id


async def open_pod(user: Client, cluster_id: str, pod: str, container: str = "", namespace: str = "team-a",
                   cols: int = 80, rows: int = 24) -> TerminalClient:
    params: dict[str, Any] = {"cols": cols, "rows": rows}
    if container:
        params["container"] = container
    return await TerminalClient.open(user, f"/ws/k8s/{cluster_id}/{namespace}/{pod}", **params)
