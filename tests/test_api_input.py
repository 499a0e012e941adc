"""Bad input: every case gets a 4xx with a clear {"error": ...} and changes nothing."""
from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import BastionApp, seed_inventory


async def _snapshot(app: BastionApp) -> tuple:
    s = app.services.store
    return ((await s.list_users()).total, (await s.list_apps()).total, (await s.list_credentials()).total,
            (await s.list_hosts()).total, (await s.list_grants()).total)


BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("/api/apps", b"{not json", 400, "malformed JSON"),
    ("/api/apps", b"[1, 2]", 400, "must be a JSON object"),
    ("/api/apps", b"", 400, "must be a JSON object"),
    ("/api/apps", {"name": 5}, 400, "name must be a string"),
    ("/api/apps", {}, 400, "name is required"),
    ("/api/apps", {"name": "x" * 65}, 400, "at most 64"),
    ("/api/apps", {"name": "<script>"}, 400, "name must be"),
    ("/api/apps", {"name": {"$ne": None}}, 400, "name must be a string"),
    ("/api/apps", {"name": "ok", "extra": 1}, 400, "unknown field 'extra'"),
    ("/api/users", {"username": {"$ne": None}, "password": "x" * 12, "roles": ["user"]}, 400, "username must be a string"),
    ("/api/users", {"username": "Bad Name", "password": "x" * 12, "roles": ["user"]}, 400, "username must be"),
    ("/api/users", {"username": "ok", "password": "short", "roles": ["user"]}, 400, "at least 10"),
    ("/api/users", {"username": "ok", "password": "x" * 12, "roles": ["root"]}, 400, "unknown role"),
    ("/api/users", {"username": "ok", "password": "x" * 12, "roles": "admin"}, 400, "roles must be"),
    ("/api/users", {"username": "admin", "password": "x" * 12, "roles": ["user"]}, 409, "already exists"),
    ("/api/credentials", {"name": "c", "username": "root"}, 400, "a password or a private key (one of them, not both)"),
    ("/api/credentials", {"name": "c", "username": "root", "password": "p", "private_key": "k"}, 400, "not both"),
    ("/api/credentials", {"name": "c", "username": "root", "private_key": "not a key"}, 400, "private_key is not"),
    ("/api/credentials", {"name": "c", "username": "ro ot", "password": "p"}, 400, "username must be"),
    ("/api/hosts", {"name": "h", "address": "127.0.0.1", "port": 70000, "app_id": "A", "credential_id": "C"}, 400, "port must be between 1 and 65535"),
    ("/api/hosts", {"name": "h", "address": "127.0.0.1", "port": 0, "app_id": "A", "credential_id": "C"}, 400, "port must be between"),
    ("/api/hosts", {"name": "h", "address": "127.0.0.1", "port": "22", "app_id": "A", "credential_id": "C"}, 400, "port must be an integer"),
    ("/api/hosts", {"name": "h", "address": "127.0.0.1", "port": True, "app_id": "A", "credential_id": "C"}, 400, "port must be an integer"),
    ("/api/hosts", {"name": "h", "address": "bad address!", "port": 22, "app_id": "A", "credential_id": "C"}, 400, "address must be"),
    ("/api/hosts", {"name": "h", "address": "300.1.1.1", "port": 22, "app_id": "A", "credential_id": "C"}, 400, "address must be"),
    ("/api/hosts", {"name": "h", "address": "-x.example", "port": 22, "app_id": "A", "credential_id": "C"}, 400, "address must be"),
    ("/api/hosts", {"name": "h", "address": "127.0.0.1", "port": 22, "app_id": "nope", "credential_id": "C"}, 404, "category 'nope' not found"),
    ("/api/hosts", {"name": "h", "address": "127.0.0.1", "port": 22, "app_id": "A", "credential_id": "nope"}, 404, "credential 'nope' not found"),
    ("/api/hosts", {"name": "h", "address": "127.0.0.1", "port": 22, "app_id": "A", "credential_id": "C", "tags": "x"}, 400, "tags must be"),
    ("/api/hosts", {"name": "web1", "address": "127.0.0.1", "port": 22, "app_id": "A", "credential_id": "C"}, 409, "already exists"),
    ("/api/grants", {"user_id": "nope", "app_id": "A"}, 404, "user 'nope' not found"),
    ("/api/grants", {"user_id": "U"}, 400, "a category or a host (one of them, not both)"),
    ("/api/grants", {"user_id": "U", "app_id": "A", "host_id": "H"}, 400, "not both"),
    ("/api/grants", {"user_id": "U", "host_id": "../../x"}, 400, "host id must be"),
    ("/api/tokens", {"name": ""}, 400, "name must not be empty"),
    ("/api/login", {"username": {"$ne": None}, "password": "x"}, 400, "username must be a string"),
    ("/api/login", {"username": "admin"}, 400, "password is required"),
]


@pytest.mark.parametrize("path, body, status, fragment", BAD_BODIES)
async def test_bad_bodies(bastion: BastionApp, path: str, body: Any, status: int, fragment: str) -> None:
    admin = await bastion.admin()
    ids = await seed_inventory(bastion, admin)
    uid = (await bastion.services.store.get_user_by_name("admin")).id
    if isinstance(body, dict):
        text = json.dumps(body).replace('"A"', json.dumps(ids["app_id"])).replace('"C"', json.dumps(ids["credential_id"]))
        text = text.replace('"U"', json.dumps(uid)).replace('"H"', json.dumps(ids["host_id"]))
        raw = text.encode()
    else:
        raw = body
    before = await _snapshot(bastion)
    resp = await admin.request("POST", path, raw=raw, headers={"Content-Type": "application/json"})
    assert resp.status == status, resp
    assert fragment in resp.json["error"], resp.json
    assert await _snapshot(bastion) == before


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/hosts/nonexistent"), ("PATCH", "/api/hosts/nonexistent"), ("DELETE", "/api/hosts/nonexistent"),
    ("DELETE", "/api/apps/nonexistent"), ("DELETE", "/api/credentials/nonexistent"), ("DELETE", "/api/grants/nonexistent"),
    ("GET", "/api/users/nonexistent"), ("DELETE", "/api/tokens/nonexistent"), ("POST", "/api/hosts/nonexistent/accept-key"),
])
async def test_unknown_ids_are_404(bastion: BastionApp, method: str, path: str) -> None:
    admin = await bastion.admin()
    resp = await admin.request(method, path, {"port": 22} if method == "PATCH" else None)
    assert resp.status == 404 and resp.json["error"]


async def test_oversized_body_and_bad_paging(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    resp = await admin.request("POST", "/api/apps", raw=b'{"name": "' + b"x" * 300_000 + b'"}',
                               headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "larger than" in resp.json["error"]
    for q, name in (("limit=0", "limit"), ("limit=abc", "limit"), ("limit=100000", "limit"), ("offset=-1", "offset")):
        r = await admin.get("/api/apps?" + q)
        assert r.status == 400, (q, r)
        assert name in r.json["error"], (q, r.json)
    r = await admin.get("/api/events?action=nope")
    assert r.status == 400 and "unknown action" in r.json["error"]
    r = await admin.get("/api/events?since=yesterday")
    assert r.status == 400


async def test_patch_host_and_html_names_render_as_text(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    ids = await seed_inventory(bastion, admin)
    resp = await admin.patch(f"/api/hosts/{ids['host_id']}", {"port": 2222, "tags": ["prod"]})
    assert resp.status == 200 and resp.json["port"] == 2222 and resp.json["tags"] == ["prod"]
    assert (await admin.patch(f"/api/hosts/{ids['host_id']}", {})).status == 400
    desc = "<img src=x onerror=alert(1)>"
    assert (await admin.post("/api/apps", {"name": "html-test", "description": desc})).status == 201
    page = await admin.request("GET", "/admin/inventory", headers={"Accept": "text/html"})
    assert desc.encode() not in page.body and b"&lt;img src=x onerror=alert(1)&gt;" in page.body


async def test_secrets_never_returned(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    await seed_inventory(bastion, admin, password="hunter2-secret")
    for path in ("/api/credentials", "/api/hosts"):
        assert b"hunter2" not in (await admin.get(path)).body
    page = await admin.request("GET", "/admin/inventory", headers={"Accept": "text/html"})
    assert b"hunter2" not in page.body
    cred = (await bastion.services.store.list_credentials()).items[0]
    assert "hunter2" not in cred.sealed_secret
    events = await bastion.services.store.list_events(limit=500)
    assert all("hunter2" not in json.dumps(e.to_doc()) for e in events.items)
