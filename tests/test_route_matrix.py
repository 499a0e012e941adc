"""Every API route × role: anonymous → 401, wrong role → 403, allowed role → neither."""
from __future__ import annotations

import re

import pytest

from conftest import BastionApp, seed_inventory
from handlers import all_handlers

ALL = ("user", "auditor", "admin")
ADMIN = ("admin",)
SEC = ("auditor", "admin")

# the admin sees the host (200); a user or auditor without a grant is told it does not exist (404)
HOST_GET = {"admin": 200, "auditor": 404, "user": 404}

# (method, path template, allowed roles, body, status for an allowed role: the exact answer, not just "not 401/403")
MATRIX = [
    ("GET", "/api/me", ALL, None, 200),
    ("POST", "/api/me/password", ALL, {"old_password": "wrong-wrong", "new_password": "x" * 12}, 400),
    ("POST", "/api/me/totp", ALL, None, 200),
    ("POST", "/api/me/totp/confirm", ALL, {"code": "000000"}, 400),
    ("DELETE", "/api/me/totp", ALL, None, 200),
    ("GET", "/api/tokens", ALL, None, 200),
    ("POST", "/api/me/passkeys/options", ALL, None, 200),
    ("GET", "/api/me/passkeys", ALL, None, 200),
    ("POST", "/api/me/passkeys", ALL, {"challenge_id": "x" * 32, "credential": {"response": {}}}, 401),
    ("DELETE", "/api/me/passkeys/{missing}", ALL, None, 404),
    ("POST", "/api/tokens", ALL, {"name": "t"}, 201),
    ("DELETE", "/api/tokens/{missing}", ALL, None, 404),
    ("GET", "/api/users", ADMIN, None, 200),
    ("POST", "/api/users", ADMIN, {"username": "new-user", "password": "x" * 12, "roles": ["user"]}, 201),
    ("GET", "/api/users/{user_id}", ADMIN, None, 200),
    ("PATCH", "/api/users/{user_id}", ADMIN, {"roles": ["user"]}, 200),
    ("GET", "/api/locks", ADMIN, None, 200),
    ("GET", "/api/login-rules", ADMIN, None, 200),
    ("POST", "/api/login-rules", ADMIN, {"name": "lr1", "action": "allow"}, 201),
    ("GET", "/api/login-rules/{missing}", ADMIN, None, 404),
    ("PATCH", "/api/login-rules/{missing}", ADMIN, {"enabled": False}, 404),
    ("DELETE", "/api/login-rules/{missing}", ADMIN, None, 404),
    ("DELETE", "/api/locks/{missing}", ADMIN, None, 400),
    ("GET", "/api/apps", ALL, None, 200),
    ("POST", "/api/apps", ADMIN, {"name": "new-cat"}, 201),
    ("DELETE", "/api/apps/{missing}", ADMIN, None, 404),
    ("GET", "/api/credentials", ADMIN, None, 200),
    ("POST", "/api/credentials", ADMIN, {"name": "c2", "username": "root", "password": "p"}, 201),
    ("DELETE", "/api/credentials/{missing}", ADMIN, None, 404),
    ("GET", "/api/hosts", ALL, None, 200),
    ("POST", "/api/hosts", ADMIN, {"name": "h2"}, 400),
    ("GET", "/api/hosts/{host_id}", ALL, None, HOST_GET),
    ("PATCH", "/api/hosts/{host_id}", ADMIN, {"tags": ["x"]}, 200),
    ("DELETE", "/api/hosts/{missing}", ADMIN, None, 404),
    ("POST", "/api/hosts/{host_id}/accept-key", ADMIN, None, 400),
    ("GET", "/api/grants", ADMIN, None, 200),
    ("POST", "/api/grants", ADMIN, {"user_id": "{user_id}", "app_id": "{app_id}"}, 201),
    ("DELETE", "/api/grants/{missing}", ADMIN, None, 404),
    ("GET", "/api/events", SEC, None, 200),
    ("GET", "/api/sessions", SEC, None, 200),
    ("GET", "/api/sessions/{missing}", SEC, None, 404),
    ("POST", "/api/sessions/{missing}/kill", SEC, {"reason": "test"}, 404),
    ("GET", "/api/sessions/{missing}/recording", SEC, None, 404),
    ("GET", "/api/access-locks", SEC, None, 200),
    ("DELETE", "/api/access-locks/{missing}", ADMIN, None, 404),
    ("GET", "/api/sessions/{missing}/commands", SEC, None, 404),
    ("GET", "/api/sessions/{missing}/verify", SEC, None, 404),
    ("GET", "/api/commands/search", SEC, None, 200),
    ("GET", "/api/command-rules", ADMIN, None, 200),
    ("POST", "/api/command-rules", ADMIN, {"name": "r1", "pattern": "x"}, 201),
    ("DELETE", "/api/command-rules/{missing}", ADMIN, None, 404),
    ("GET", "/api/modules", ALL, None, 200),
    ("POST", "/api/modules/reserve", ADMIN, None, 201),
    ("PATCH", "/api/modules/9999", ADMIN, {"enabled": False}, 404),
    ("POST", "/api/modules/9999/runs", ALL, {"host_ids": ["{host_id}"], "params": {}}, 404),
    ("POST", "/api/commands", ALL, {"envelope": "bst1.server.AAAA"}, 400),
    ("GET", "/api/runs", ALL, None, 200),
    ("GET", "/api/runs/{missing}", ALL, None, 404),
    ("GET", "/api/clusters", ADMIN, None, 200),
    ("POST", "/api/clusters", ADMIN, {"name": "k"}, 400),
    ("GET", "/api/clusters/{missing}", ADMIN, None, 404),
    ("PATCH", "/api/clusters/{missing}", ADMIN, {"name": "k"}, 404),
    ("DELETE", "/api/clusters/{missing}", ADMIN, None, 404),
    ("POST", "/api/clusters/{missing}/test", ADMIN, None, 404),
    ("GET", "/api/pod-grants", ADMIN, None, 200),
    ("POST", "/api/pod-grants", ADMIN, {"user_id": "{user_id}", "cluster_id": "{missing}", "namespace": "a"}, 404),
    ("DELETE", "/api/pod-grants/{missing}", ADMIN, None, 404),
    ("GET", "/api/k8s/namespaces", ALL, None, 200),
    ("GET", "/api/k8s/{missing}/team-a/pods", ALL, None, 404),
    # issue 13: editing, connection test, event detail
    ("PATCH", "/api/apps/{app_id}", ADMIN, {"description": "edited"}, 200),
    ("PATCH", "/api/credentials/{credential_id}", ADMIN, {"password": "rotated-secret"}, 200),
    ("DELETE", "/api/users/{missing}", ADMIN, None, 404),
    ("PATCH", "/api/command-rules/{missing}", ADMIN, {"enabled": False}, 404),
    ("POST", "/api/hosts/{host_id}/test", ADMIN, None, 200),
    ("GET", "/api/events/{missing}", SEC, None, 404),
    ("GET", "/api/stats", SEC, None, 200),
    ("POST", "/api/runs/{missing}/cancel", ALL, {}, 404),
    ("POST", "/api/runs/{missing}/rerun", ALL, {}, 404),
    # four eyes: deciding and reviewing need an approver ([access] approver_roles: auditor, admin by default)
    ("GET", "/api/access-requests", ALL, None, 200),
    ("POST", "/api/access-requests", ALL, {"minutes": 5, "reason": "r"}, 400),
    ("GET", "/api/access-requests/{missing}", ALL, None, 404),
    ("POST", "/api/access-requests/{missing}/decision", SEC, {"decision": "approve"}, 404),
    ("POST", "/api/access-requests/{missing}/cancel", ALL, None, 404),
    ("POST", "/api/access-requests/{missing}/review", SEC, {"comment": "c"}, 404),
    ("GET", "/api/reviews", SEC, None, 200),
    ("POST", "/api/reviews/{missing}", SEC, {"decision": "approve"}, 404),
    ("POST", "/api/sessions/{missing}/pause", SEC, {"reason": "r"}, 404),
    ("POST", "/api/sessions/{missing}/resume", SEC, None, 404),
    ("POST", "/api/sessions/{missing}/invites", ALL, {"username": "m-target"}, 404),
    ("GET", "/api/sessions/{missing}/participants", ALL, None, 404),
    ("DELETE", "/api/sessions/{missing}/participants/someone", ALL, None, 404),

    ("GET", "/api/me/ssh-keys", ALL, None, 200),
    ("POST", "/api/me/ssh-keys", ALL, {"name": "k", "public_key": "not a key"}, 400),
    ("DELETE", "/api/me/ssh-keys/{missing}", ALL, None, 404),
    ("GET", "/api/gateway", ALL, None, 200),
    ("GET", "/api/hosts/{host_id}/files", ALL, None, 404),  # no grant: the host reads as unknown, admin too
    ("GET", "/api/hosts/{host_id}/file", ALL, None, 400),  # no path given: refused before the host is looked up
    ("PUT", "/api/hosts/{host_id}/file", ALL, None, 400),
]
PUBLIC = {("POST", "/api/login"), ("POST", "/api/login/totp"), ("POST", "/api/logout"), ("POST", "/api/login/directory"),
          ("POST", "/api/login/passkey/options"), ("POST", "/api/login/passkey")}


def test_matrix_covers_every_api_route() -> None:
    patterns = [r[0] for r in all_handlers() if r[0].startswith("/api/")]
    covered = {re.sub(r"\{[a-z_]+\}", "x", path) for _, path, _, _, _ in MATRIX} | {p for _, p in PUBLIC}
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
    target = await bastion.services.auth.create_user("m-target", "target-password-1", ["user"], actor="test")
    uid = target.id  # the user the user-admin routes act on (never the caller: nobody may demote themselves)
    values = {**ids, "user_id": uid, "missing": "nonexistent"}
    failures = []
    for method, template, allowed, body, status in MATRIX:
        path = template.format(**values)
        payload = None
        if body is not None:
            payload = {k: (v.format(**values) if isinstance(v, str) else [x.format(**values) for x in v]
                           if isinstance(v, list) else v) for k, v in body.items()}
        resp = await client.request(method, path, payload)
        if who == "anonymous":
            ok = resp.status == 401
        elif who in allowed:
            ok = resp.status == (status[who] if isinstance(status, dict) else status)
        else:
            ok = resp.status == 403
        if not ok:
            failures.append(f"{who} {method} {path} -> {resp.status} {resp.body[:120]!r}")
    assert not failures, "\n".join(failures)
