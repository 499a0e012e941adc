"""API tokens: expiry (default, maximum), scopes (read, runs, terminal, manage), last-used time, and the
meaning of tokens stored before expiries and scopes existed."""
from __future__ import annotations

import time
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from client import Client, TerminalClient
from conftest import BastionApp, seed_inventory

DAY = 86400


def bearer(app: BastionApp, token: str) -> Client:
    c = app.client()
    c.token = token
    return c


async def new_token(client: Client, **body: Any) -> dict[str, Any]:
    resp = await client.post("/api/tokens", {"name": "script", **body})
    assert resp.status == 201, resp
    return resp.json


async def open_terminal_with_token(app: BastionApp, token: str, host_id: str) -> TerminalClient:
    url = app.base_url.replace("http", "ws", 1) + f"/ws/terminal/{host_id}"
    conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"Bearer {token}"}, request_timeout=30))
    return TerminalClient(conn)


async def test_defaults_expiry_and_listing(bastion: BastionApp) -> None:
    alice = await bastion.user("alice")
    before = time.time()
    token = await new_token(alice)
    assert token["scopes"] == ["read", "runs"] and not token["legacy"]
    assert before + 90 * DAY - 5 <= token["expires_at"] <= time.time() + 90 * DAY
    assert "token_hash" not in token and "sealed_envelope_key" not in token
    short = await new_token(alice, scopes=["read"], ttl_days=1)
    assert short["scopes"] == ["read"] and short["expires_at"] <= time.time() + DAY
    listed = {t["id"]: t for t in (await alice.get("/api/tokens")).json["items"]}
    assert listed[short["id"]]["scopes"] == ["read"] and "token" not in listed[short["id"]]


@pytest.mark.parametrize("body, fragment", [
    ({"scopes": []}, "scopes must be a non-empty list"),
    ({"scopes": "read"}, "scopes must be a non-empty list"),
    ({"scopes": [{"$ne": None}]}, "scopes must be a non-empty list"),
    ({"scopes": ["root"]}, "unknown scope 'root'"),
    ({"ttl_days": 0}, "ttl_days must be a whole number of days between 1 and 365"),
    ({"ttl_days": 366}, "between 1 and 365"),
    ({"ttl_days": "30"}, "ttl_days must be"),
    ({"ttl_days": True}, "ttl_days must be"),
    ({"ttl_days": 1.5}, "ttl_days must be"),
])
async def test_bad_token_requests(bastion: BastionApp, body: dict, fragment: str) -> None:
    alice = await bastion.user("alice")
    resp = await alice.post("/api/tokens", {"name": "x", **body})
    assert resp.status == 400 and fragment in resp.json["error"], resp
    assert (await alice.get("/api/tokens")).json["total"] == 0


async def test_ttl_limits_come_from_config(make_bastion) -> None:
    app = await make_bastion(auth_token_ttl_default=7, auth_token_ttl_max=30)
    alice = await app.user("alice")
    token = await new_token(alice)
    assert token["expires_at"] <= time.time() + 7 * DAY
    resp = await alice.post("/api/tokens", {"name": "long", "ttl_days": 31})
    assert resp.status == 400 and "between 1 and 30" in resp.json["error"]
    assert (await alice.post("/api/tokens", {"name": "long", "ttl_days": 30})).status == 201


async def test_expired_token_is_refused_and_audited(bastion: BastionApp) -> None:
    alice = await bastion.user("alice")
    token = await new_token(alice)
    script = bearer(bastion, token["token"])
    assert (await script.get("/api/me")).status == 200
    record = await bastion.services.store.get_token(token["id"])
    record.expires_at = time.time() - 1
    await bastion.services.store.save(record)
    resp = await script.get("/api/me")
    assert resp.status == 401 and "expired" in resp.json["error"]
    events = (await bastion.services.store.list_events(action="token.refused")).items
    assert events and "expired" in events[0].detail["why"] and events[0].address == "127.0.0.1"


async def test_read_scope_is_get_only(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    token = await new_token(admin, scopes=["read"])
    script = bearer(bastion, token["token"])
    assert (await script.get("/api/hosts")).status == 200
    assert (await script.get("/api/users")).status == 200
    for method, path, body in [("POST", "/api/apps", {"name": "x"}), ("POST", "/api/tokens", {"name": "y"}),
                               ("DELETE", f"/api/tokens/{token['id']}", None),
                               ("POST", "/api/modules/1001/runs", {"host_ids": ["abc"], "params": {}}),
                               ("POST", "/api/commands", {"envelope": "bst1.x.y"})]:
        resp = await script.request(method, path, body)
        assert resp.status == 403 and "lacks the" in resp.json["error"], (path, resp)
    assert (await bastion.services.store.list_apps()).total == 0
    assert (await bastion.services.store.get_token(token["id"])) is not None


async def test_runs_scope_starts_runs_but_not_admin_changes(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    token = await new_token(admin, scopes=["runs"])
    script = bearer(bastion, token["token"])
    resp = await script.post("/api/modules/1001/runs", {"host_ids": ["0123456789abcdef"], "params": {}})
    assert resp.status == 404, resp  # past the scope check: the module does not exist
    resp = await script.get("/api/hosts")
    assert resp.status == 403 and "'read' scope" in resp.json["error"]
    resp = await script.post("/api/apps", {"name": "x"})
    assert resp.status == 403 and "'manage' scope" in resp.json["error"]


async def test_token_cannot_issue_wider_token(bastion: BastionApp) -> None:
    alice = await bastion.user("alice")
    token = await new_token(alice, scopes=["read", "manage"])
    script = bearer(bastion, token["token"])
    resp = await script.post("/api/tokens", {"name": "wider", "scopes": ["read", "terminal"]})
    assert resp.status == 403 and "does not hold (terminal)" in resp.json["error"]
    assert (await script.post("/api/tokens", {"name": "same", "scopes": ["read"]})).status == 201


async def test_terminal_scope_decides_terminals(bastion: BastionApp, sshd) -> None:
    """A real sshd: a token without `terminal` is refused before the upgrade; with it, a shell answers."""
    admin = await bastion.admin()
    ids = await seed_inventory(bastion, admin, address=sshd.address, port=sshd.port, username=sshd.username,
                               private_key=sshd.client_key)
    alice = await bastion.user("alice")
    uid = (await bastion.services.store.get_user_by_name("alice")).id
    assert (await admin.post("/api/grants", {"user_id": uid, "host_id": ids["host_id"]})).status == 201
    plain = await new_token(alice, scopes=["read", "runs", "manage"])
    with pytest.raises(HTTPClientError) as refused:
        await open_terminal_with_token(bastion, plain["token"], ids["host_id"])
    assert refused.value.code == 403
    assert (await bastion.services.store.list_sessions()).total == 0
    full = await new_token(alice, scopes=["terminal"])
    term = await open_terminal_with_token(bastion, full["token"], ids["host_id"])
    try:
        await term.control("session")
        await term.send("echo scope-$((40+2))\r")
        await term.expect("scope-42")
    finally:
        term.close()


async def test_legacy_tokens_keep_a_sane_meaning(bastion: BastionApp, sshd) -> None:
    """A token stored before expiries and scopes: read, runs and manage, no terminal, expiry at created + max."""
    admin = await bastion.admin()
    ids = await seed_inventory(bastion, admin, address=sshd.address, port=sshd.port, username=sshd.username,
                               private_key=sshd.client_key)
    token = await new_token(admin, scopes=["read", "runs", "terminal", "manage"])
    store = bastion.services.store
    record = await store.get_token(token["id"])
    record.scopes, record.expires_at = [], 0.0  # what an old document reads as
    await store.save(record)
    listed = (await admin.get("/api/tokens")).json["items"][0]
    assert listed["legacy"] and listed["scopes"] == ["read", "runs", "manage"]
    assert abs(listed["expires_at"] - (record.created_at + 365 * DAY)) < 1
    script = bearer(bastion, token["token"])
    assert (await script.get("/api/hosts")).status == 200
    assert (await script.post("/api/apps", {"name": "legacy-made"})).status == 201
    with pytest.raises(HTTPClientError) as refused:
        await open_terminal_with_token(bastion, token["token"], ids["host_id"])
    assert refused.value.code == 403
    record = await store.get_token(token["id"])
    record.created_at = time.time() - 366 * DAY
    await store.save(record)
    resp = await script.get("/api/hosts")
    assert resp.status == 401 and "expired" in resp.json["error"]


async def test_last_used_shown_in_api_and_account_page(bastion: BastionApp) -> None:
    alice = await bastion.user("alice")
    token = await new_token(alice)
    page = await alice.get("/account", headers={"Accept": "text/html"})
    assert page.status == 200 and b'<td class="token-last-used">never</td>' in page.body
    before = time.time()
    assert (await bearer(bastion, token["token"]).get("/api/me")).status == 200
    listed = (await alice.get("/api/tokens")).json["items"][0]
    assert before - 1 <= listed["last_used_at"] <= time.time()
    page = await alice.get("/account", headers={"Accept": "text/html"})
    assert b'<td class="token-last-used">never</td>' not in page.body
    assert b'<td class="token-last-used">' in page.body and b"read, runs" in page.body
