"""Leaks and gaps: one answer for "not found or not granted", ids type-checked (bad input is never a 500),
refusals audited at a bounded rate."""
from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from bastion import protocol
from bastion.store import Run
from conftest import BastionApp, seed_inventory

ROOT = Path(__file__).resolve().parent.parent


async def _setup(app: BastionApp) -> dict[str, Any]:
    admin = await app.admin()
    ids = await seed_inventory(app, admin)
    other = await seed_inventory(app, admin, name="db1")
    alice = await app.user("alice")
    uid = (await app.services.store.get_user_by_name("alice")).id
    resp = await admin.post("/api/grants", {"user_id": uid, "host_id": ids["host_id"]})
    assert resp.status == 201, resp
    return {"admin": admin, "alice": alice, "granted": ids["host_id"], "ungranted": other["host_id"], "uid": uid}


@pytest.mark.parametrize("path", ["/api/hosts/{}", "/terminal/{}", "/ws/terminal/{}"])
async def test_not_granted_reads_like_unknown(bastion: BastionApp, path: str) -> None:
    env = await _setup(bastion)
    alice = env["alice"]
    ok = await alice.get(path.format(env["granted"]))
    assert ok.status != 404, ok  # the granted host is reachable (the socket answers 400: no upgrade)
    ungranted = await alice.get(path.format(env["ungranted"]))
    unknown = await alice.get(path.format("0123456789abcdef"))
    assert ungranted.status == unknown.status == 404, (ungranted, unknown)
    assert ungranted.body == unknown.body
    assert b"db1" not in ungranted.body and b"granted" not in ungranted.body
    # every refusal is audited with the peer address
    events = (await bastion.services.store.list_events(action="session.refused")).items
    assert len(events) == 2 and {e.address for e in events} == {"127.0.0.1"}
    assert {e.detail["host_id"] for e in events} == {env["ungranted"], "0123456789abcdef"}


async def test_runs_not_found_or_not_granted_same_answer(bastion: BastionApp) -> None:
    env = await _setup(bastion)
    store = bastion.services.store
    mallory = await bastion.user("mallory")
    alices = await store.create_run(Run(module_id="1001", user_id=env["uid"], username="alice"))
    mine = await env["alice"].get(f"/api/runs/{alices.id}")
    assert mine.status == 200
    theirs = await mallory.get(f"/api/runs/{alices.id}")
    unknown = await mallory.get("/api/runs/0123456789abcdef")
    assert theirs.status == unknown.status == 404 and theirs.body == unknown.body
    page_theirs = await mallory.get(f"/runs/{alices.id}")
    page_unknown = await mallory.get("/runs/0123456789abcdef")
    assert page_theirs.status == page_unknown.status == 404 and page_theirs.body == page_unknown.body


async def test_sessions_not_found_same_answer(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    for path in ("/api/sessions/{}", "/api/sessions/{}/recording", "/watch/{}"):
        resp = await admin.get(path.format("0123456789abcdef"))
        assert resp.status == 404 and b"session not found" in resp.body, (path, resp)
    resp = await admin.post("/api/sessions/0123456789abcdef/kill", {"reason": "x"})
    assert resp.status == 404 and resp.json["error"] == "session not found"


BAD_HOST_IDS: list[Any] = [
    [{"$ne": None}], [["a"]], [1], [None], [True], ["../x"], ["a" * 65], [""], "abc", {"$ne": None}, 5, None,
]


@pytest.mark.parametrize("host_ids", BAD_HOST_IDS)
async def test_bad_host_ids_are_400_with_words(bastion: BastionApp, host_ids: Any) -> None:
    env = await _setup(bastion)
    resp = await env["alice"].post("/api/modules/1001/runs", {"host_ids": host_ids, "params": {}})
    assert resp.status == 400, resp
    assert resp.json["error"] == "host_ids must be a list of host id strings"
    assert (await bastion.services.store.list_runs()).total == 0


@pytest.mark.parametrize("hosts", [[{"$ne": None}], [["x"]], [7], ["../../etc"]])
async def test_bad_host_ids_inside_a_sealed_envelope(bastion: BastionApp, hosts: list[Any]) -> None:
    """An envelope is opened before its host list is checked: the check must hold there too."""
    env = await _setup(bastion)
    token = (await env["alice"].post("/api/tokens", {"name": "cli"})).json["token"]
    script = bastion.client()
    script.token = token
    envelope = protocol.seal(protocol.token_envelope_key(token), protocol.token_key_id(token),
                             protocol.new_payload("1001", hosts, {}, "alice"))
    folder = Path(bastion.config.modules.dir)
    folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "modules" / "Mid_1001.py", folder)
    await bastion.services.registry.refresh()
    resp = await script.post("/api/commands", {"envelope": envelope})
    assert resp.status == 400 and resp.json["error"] == "host ids must be id strings", resp


BAD_PATHS: list[tuple[str, str, int]] = [
    ("GET", "/api/hosts/%24ne", 400),
    ("GET", "/api/hosts/" + "a" * 65, 400),
    ("GET", "/api/hosts/a%00b", 400),
    ("GET", "/api/runs/%7B%22%24ne%22%3Anull%7D", 400),
    ("GET", "/api/sessions/%24where", 400),
    ("GET", "/api/sessions?host_id=%24ne", 400),
    ("GET", "/api/sessions?since=abc", 400),
    ("GET", "/api/sessions?limit=-1", 400),
    ("GET", "/api/runs?status=%24ne", 400),
    ("GET", "/api/runs?limit=1e9", 400),
    ("GET", "/api/hosts?app_id=%24ne", 400),
    ("GET", "/api/grants?user_id=..", 400),
    ("DELETE", "/api/grants/%24ne", 400),
    ("DELETE", "/api/tokens/%24ne", 400),
    ("DELETE", "/api/hosts/%24ne", 400),
    ("PATCH", "/api/hosts/%24ne", 400),
    ("GET", "/api/commands/search?blocked=maybe", 400),
    ("GET", "/api/events?since=x", 400),
]


@pytest.mark.parametrize("method, path, status", BAD_PATHS)
async def test_bad_ids_in_paths_and_queries(bastion: BastionApp, method: str, path: str, status: int) -> None:
    admin = await bastion.admin()
    resp = await admin.request(method, path, {"name": "x"} if method == "PATCH" else None)
    assert resp.status == status, resp
    error = resp.json["error"]
    assert "Traceback" not in error and "internal error" not in error and "{'" not in error


MALFORMED_LOGINS: list[Any] = [
    b"{not json", b"[]", {"username": {"$ne": None}, "password": "x"}, {"username": "a"}, {"username": "a", "password": 1},
    {"username": "a", "password": "b", "admin": True},
]


@pytest.mark.parametrize("body", MALFORMED_LOGINS)
async def test_malformed_login_is_audited(bastion: BastionApp, body: Any) -> None:
    c = bastion.client()
    resp = await c.post("/api/login", raw=body, headers={"Content-Type": "application/json"}) if isinstance(body, bytes) \
        else await c.post("/api/login", body)
    assert resp.status == 400, resp
    events = (await bastion.services.store.list_events(action="login.malformed")).items
    assert len(events) == 1 and events[0].address == "127.0.0.1" and not events[0].ok
    assert events[0].detail["why"] == resp.json["error"]


async def test_malformed_logins_audit_is_rate_limited(bastion: BastionApp) -> None:
    c = bastion.client()
    limit = bastion.services.audit.LIMIT_PER_MINUTE
    for _ in range(limit + 15):
        resp = await c.post("/api/login", {"username": {"$ne": None}, "password": "x"})
        assert resp.status == 400
    assert (await bastion.services.store.list_events(action="login.malformed")).total == limit


# Every state-changing API route with a valid body, then each field replaced by a hostile value: never a 500.
BODIES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/users", {"username": "fuzz-user", "password": "x" * 12, "roles": ["user"]}),
    ("PATCH", "/api/users/{uid}", {"roles": ["user"], "disabled": False}),
    ("POST", "/api/apps", {"name": "fuzz-cat", "description": "d"}),
    ("POST", "/api/credentials", {"name": "fuzz-cred", "username": "root", "password": "p"}),
    ("POST", "/api/hosts", {"name": "fuzz-host", "address": "127.0.0.9", "port": 22, "app_id": "{app_id}",
                            "credential_id": "{credential_id}", "tags": ["a"]}),
    ("PATCH", "/api/hosts/{host_id}", {"name": "web1", "port": 2222, "tags": ["b"]}),
    ("POST", "/api/grants", {"user_id": "{uid}", "host_id": "{host_id}"}),
    ("POST", "/api/tokens", {"name": "fuzz", "scopes": ["read"], "ttl_days": 3}),
    ("POST", "/api/command-rules", {"name": "fuzz-rule", "kind": "regex", "pattern": "x", "action": "deny",
                                    "scope": "all", "priority": 5}),
    ("POST", "/api/login-rules", {"name": "fuzz-lr", "action": "allow", "networks": ["10.0.0.0/8"], "days": [1],
                                  "start": "01:00", "end": "02:00", "timezone": "UTC", "priority": 1}),
    ("POST", "/api/modules/1001/runs", {"host_ids": ["{host_id}"], "params": {}}),
    ("POST", "/api/commands", {"envelope": "bst1.server.AAAA"}),
    ("POST", "/api/me/password", {"old_password": "wrong-wrong", "new_password": "x" * 12}),
    ("POST", "/api/me/totp/confirm", {"code": "000000"}),
    ("POST", "/api/sessions/0123456789abcdef/kill", {"reason": "x"}),
]
HOSTILE: list[Any] = [{"$ne": None}, [{"$gt": ""}], None, True, -1, 1e308, "x" * 5000, "\u0000", ["a"] * 100, {}]


@pytest.mark.parametrize("method, template, body", BODIES, ids=[f"{m} {p}" for m, p, _ in BODIES])
async def test_hostile_field_values_are_never_a_500(bastion: BastionApp, method: str, template: str,
                                                    body: dict[str, Any]) -> None:
    admin = await bastion.admin()
    ids = await seed_inventory(bastion, admin)
    uid = (await bastion.services.store.get_user_by_name("admin")).id
    values = {**ids, "uid": uid}

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.format(**values)
        if isinstance(value, list):
            return [fill(x) for x in value]
        return value

    failures = []
    for field in body:
        for bad in HOSTILE:
            payload = {k: fill(v) for k, v in body.items()}
            payload[field] = bad
            resp = await admin.request(method, template.format(**values), payload)
            error = (resp.json or {}).get("error", "") if resp.body.startswith(b"{") else ""
            if resp.status >= 500 or "internal error" in error or "Traceback" in error:
                failures.append(f"{field}={str(bad)[:30]} -> {resp.status} {resp.body[:120]!r}")
    assert not failures, "\n".join(failures)


QUERIES: list[tuple[str, tuple[str, ...]]] = [
    ("/api/sessions", ("live", "user", "host_id", "reason", "since", "until", "limit", "offset")),
    ("/api/events", ("action", "actor", "since", "until", "limit", "offset")),
    ("/api/commands/search", ("q", "user", "host_id", "blocked", "since", "until", "limit", "offset")),
    ("/api/runs", ("user", "module_id", "status", "limit", "offset")),
    ("/api/hosts", ("app_id", "limit", "offset")),
    ("/api/grants", ("user_id", "limit", "offset")),
    ("/api/users", ("limit", "offset")),
    ("/api/apps", ("limit", "offset")),
]
HOSTILE_QUERY = ["$ne", "[]", "{\"$gt\":\"\"}", "1e999", "nan", "-1", "x" * 3000, "\u0000", "1'; --", "..%2F.."]


@pytest.mark.parametrize("path, names", QUERIES, ids=[p for p, _ in QUERIES])
async def test_hostile_query_values_are_never_a_500(bastion: BastionApp, path: str, names: tuple[str, ...]) -> None:
    admin = await bastion.admin()
    failures = []
    for name in names:
        for bad in HOSTILE_QUERY:
            resp = await admin.get(path, params={name: bad})
            if resp.status >= 500:
                failures.append(f"{name}={bad[:30]!r} -> {resp.status} {resp.body[:120]!r}")
    assert not failures, "\n".join(failures)


async def test_refused_origin_is_audited(bastion: BastionApp) -> None:
    from tornado.httpclient import HTTPClientError

    from client import TerminalClient
    env = await _setup(bastion)
    with pytest.raises(HTTPClientError) as refused:
        await TerminalClient.open(env["alice"], f"/ws/terminal/{env['granted']}", origin="http://evil.example")
    assert refused.value.code == 403
    store = bastion.services.store
    deadline = asyncio.get_running_loop().time() + 10
    while not (await store.list_events(action="websocket.refused_origin")).total:
        assert asyncio.get_running_loop().time() < deadline, "no audit event for the refused Origin"
        await asyncio.sleep(0.05)
    event = (await store.list_events(action="websocket.refused_origin")).items[0]
    assert event.actor == "alice" and event.detail["origin"] == "http://evil.example" and event.address == "127.0.0.1"
