"""Every page renders for the roles that may see it, with the security headers, and refuses the others."""
from __future__ import annotations

import pytest

from conftest import BastionApp, seed_inventory

PAGES = [
    ("/", ("user", "auditor", "admin")),
    ("/account", ("user", "auditor", "admin")),
    ("/modules", ("user", "auditor", "admin")),
    ("/runs", ("user", "auditor", "admin")),
    ("/dashboard", ("auditor", "admin")),
    ("/sessions", ("auditor", "admin")),
    ("/commands", ("auditor", "admin")),
    ("/audit", ("auditor", "admin")),
    ("/admin/inventory", ("admin",)),
    ("/admin/grants", ("admin",)),
    ("/admin/users", ("admin",)),
    ("/admin/rules", ("admin",)),
]


@pytest.mark.parametrize("who", ["user", "auditor", "admin"])
async def test_pages_by_role(bastion: BastionApp, who: str) -> None:
    admin = await bastion.admin()
    await seed_inventory(bastion, admin)
    client = admin if who == "admin" else await bastion.user(f"p-{who}", roles=[who])
    for path, allowed in PAGES:
        resp = await client.request("GET", path, headers={"Accept": "text/html"})
        expected = 200 if who in allowed else 403
        assert resp.status == expected, (who, path, resp.status)
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        if resp.status == 200:
            assert b"</html>" in resp.body and b"Bastion" in resp.body


async def test_dashboard_shows_counts(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    await bastion.client().post("/api/login", {"username": "admin", "password": "wrong-password-x"})
    page = await admin.request("GET", "/dashboard", headers={"Accept": "text/html"})
    assert page.status == 200 and b"live sessions" in page.body and b"failed logins" in page.body
    assert b"wrong-password" not in page.body


async def test_error_page_for_unknown_path(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    resp = await admin.request("GET", "/no/such/page", headers={"Accept": "text/html"})
    assert resp.status == 404
