"""Every API route × role: anonymous → 401, wrong role → 403, allowed role → neither."""
from __future__ import annotations

import re

import pytest

from conftest import BastionApp, seed_inventory
from handlers import all_handlers

ALL = ("user", "auditor", "admin")
ADMIN = ("admin",)
SEC = ("auditor", "admin")

# (method, path template, allowed roles, body)
MATRIX = [
    ("GET", "/api/me", ALL, None),
    ("POST", "/api/me/password", ALL, {"old_password": "wrong-wrong", "new_password": "x" * 12}),
    ("POST", "/api/me/totp", ALL, None),
    ("POST", "/api/me/totp/confirm", ALL, {"code": "000000"}),
    ("DELETE", "/api/me/totp", ALL, None),
    ("GET", "/api/tokens", ALL, None),
    ("POST", "/api/tokens", ALL, {"name": "t"}),
    ("DELETE", "/api/tokens/{missing}", ALL, None),
    ("GET", "/api/users", ADMIN, None),
    ("POST", "/api/users", ADMIN, {"username": "new-user", "password": "x" * 12, "roles": ["user"]}),
    ("GET", "/api/users/{user_id}", ADMIN, None),
    ("PATCH", "/api/users/{user_id}", ADMIN, {"roles": ["user"]}),
    ("GET", "/api/locks", ADMIN, None),
    ("GET", "/api/access-locks", SEC, None),
    ("DELETE", "/api/access-locks/{missing}", ADMIN, None),
    ("GET", "/api/login-rules", ADMIN, None),
    ("POST", "/api/login-rules", ADMIN, {"name": "lr1", "action": "allow"}),
    ("GET", "/api/login-rules/{missing}", ADMIN, None),
    ("PATCH", "/api/login-rules/{missing}", ADMIN, {"enabled": False}),
    ("DELETE", "/api/login-rules/{missing}", ADMIN, None),
    ("DELETE", "/api/locks/{missing}", ADMIN, None),
    ("GET", "/api/apps", ALL, None),
    ("POST", "/api/apps", ADMIN, {"name": "new-cat"}),
    ("DELETE", "/api/apps/{missing}", ADMIN, None),
    ("GET", "/api/credentials", ADMIN, None),
    ("POST", "/api/credentials", ADMIN, {"name": "c2", "username": "root", "password": "p"}),
    ("DELETE", "/api/credentials/{missing}", ADMIN, None),
    ("GET", "/api/hosts", ALL, None),
    ("POST", "/api/hosts", ADMIN, {"name": "h2"}),
    ("GET", "/api/hosts/{host_id}", ALL, None),
    ("PATCH", "/api/hosts/{host_id}", ADMIN, {"tags": ["x"]}),
    ("DELETE", "/api/hosts/{missing}", ADMIN, None),
    ("POST", "/api/hosts/{host_id}/accept-key", ADMIN, None),
    ("GET", "/api/grants", ADMIN, None),
    ("POST", "/api/grants", ADMIN, {"user_id": "{user_id}", "app_id": "{app_id}"}),
    ("DELETE", "/api/grants/{missing}", ADMIN, None),
    ("GET", "/api/events", SEC, None),
    ("GET", "/api/sessions", SEC, None),
    ("GET", "/api/sessions/{missing}", SEC, None),
    ("POST", "/api/sessions/{missing}/kill", SEC, {"reason": "test"}),
    ("GET", "/api/sessions/{missing}/recording", SEC, None),
    ("GET", "/api/sessions/{missing}/commands", SEC, None),
    ("GET", "/api/sessions/{missing}/verify", SEC, None),
    ("GET", "/api/commands/search", SEC, None),
    ("GET", "/api/command-rules", ADMIN, None),
    ("POST", "/api/command-rules", ADMIN, {"name": "r1", "pattern": "x"}),
    ("DELETE", "/api/command-rules/{missing}", ADMIN, None),
    ("GET", "/api/modules", ALL, None),
    ("POST", "/api/modules/reserve", ADMIN, None),
    ("PATCH", "/api/modules/9999", ADMIN, {"enabled": False}),
    ("POST", "/api/modules/9999/runs", ALL, {"host_ids": ["{host_id}"], "params": {}}),
    ("POST", "/api/commands", ALL, {"envelope": "bst1.server.AAAA"}),
    ("GET", "/api/runs", ALL, None),
    ("GET", "/api/runs/{missing}", ALL, None),
]
PUBLIC = {("POST", "/api/login"), ("POST", "/api/login/totp"), ("POST", "/api/logout")}


def test_matrix_covers_every_api_route() -> None:
    patterns = [r[0] for r in all_handlers() if r[0].startswith("/api/")]
    covered = {re.sub(r"\{[a-z_]+\}", "x", path) for _, path, _, _ in MATRIX} | {p for _, p in PUBLIC}
    for pattern in patterns:
        rx = re.compile("^" + pattern + "$")
        assert any(rx.match(path) for path in covered), f"route {pattern} is missing from the matrix"


@pytest.mark.parametrize("who", ["anonymous", "user", "auditor", "admin"])
async def test_route_matrix(bastion: BastionApp, who: str) -> None:
    admin = await bastion.admin()
    ids = await seed_inventory(bastion, admin)
    if who == "anonymous":
        client = bastion.client()
    elif who == "admin":
        client = admin
    else:
        client = await bastion.user(f"m-{who}", roles=[who])
    uid = (await bastion.services.store.get_user_by_name("m-user") or await bastion.services.store.get_user_by_name("admin")).id
    values = {**ids, "user_id": uid, "missing": "nonexistent"}
    failures = []
    for method, template, allowed, body in MATRIX:
        path = template.format(**values)
        payload = None
        if body is not None:
            payload = {k: (v.format(**values) if isinstance(v, str) else [x.format(**values) for x in v]
                           if isinstance(v, list) else v) for k, v in body.items()}
        resp = await client.request(method, path, payload)
        if who == "anonymous":
            ok = resp.status == 401
        elif who in allowed:
            ok = resp.status not in (401, 403) and resp.status < 500
        else:
            ok = resp.status == 403
        if not ok:
            failures.append(f"{who} {method} {path} -> {resp.status} {resp.body[:120]!r}")
    assert not failures, "\n".join(failures)
