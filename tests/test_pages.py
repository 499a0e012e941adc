"""Every page renders for the roles that may see it, with the security headers, and refuses the others."""
from __future__ import annotations

import re

import pytest

from conftest import BastionApp, seed_inventory
from test_terminal import granted_host

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


async def test_style_exception_only_on_terminal_pages(bastion: BastionApp, sshd) -> None:
    """xterm.js pages admit <style> elements with this response's nonce (fresh each time) and style attributes;
    every other page keeps style-src 'self' alone, and no page admits inline script."""
    admin, user, ids = await granted_host(bastion, sshd)
    nonces = []
    for _ in range(2):
        resp = await user.request("GET", f"/terminal/{ids['host_id']}", headers={"Accept": "text/html"})
        assert resp.status == 200
        csp = resp.headers["Content-Security-Policy"]
        nonce = re.search(r"style-src-elem 'self' 'nonce-([A-Za-z0-9_-]{20,})'", csp).group(1)
        assert f'<meta name="xterm-style-nonce" content="{nonce}">'.encode() in resp.body
        assert "style-src-attr 'unsafe-inline'" in csp and "script-src 'self';" in csp
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    for path, _ in PAGES:
        csp = (await admin.request("GET", path, headers={"Accept": "text/html"})).headers["Content-Security-Policy"]
        assert "style-src 'self';" in csp and "nonce" not in csp and "unsafe-inline" not in csp, (path, csp)


async def test_wording_in_human_words(bastion: BastionApp) -> None:
    """Audit details, counts, rule scopes and connection errors read as words: no Python reprs, no ids."""
    from client import TerminalClient
    from conftest import free_port

    admin = await bastion.admin()
    ids = await seed_inventory(bastion, admin, port=free_port(), name="closed-port")
    assert (await admin.post("/api/users", {"username": "wendy", "password": "wendy-password-1", "roles": ["user"]})).status == 201
    await bastion.client().post("/api/login", {"username": "wendy", "password": "wrong-password-x"})
    rule = await admin.post("/api/command-rules", {"name": "no rm", "pattern": "^rm", "scope": "host", "scope_value": ids["host_id"]})
    assert rule.status == 201, rule

    audit = (await admin.request("GET", "/audit", headers={"Accept": "text/html"})).body.decode()
    assert "roles: user" in audit and "['" not in audit and "=[" not in audit
    dashboard = (await admin.request("GET", "/dashboard", headers={"Accept": "text/html"})).body.decode()
    assert re.search(r'<span class="num">1</span><span class="label">failed login</span>', dashboard), dashboard
    rules = (await admin.request("GET", "/admin/rules", headers={"Accept": "text/html"})).body.decode()
    shown = re.sub(r"<[^>]*>", " ", rules.split("<tbody>")[1].split("</tbody>")[0])  # the text, not attributes
    assert "host: closed-port" in shown and ids["host_id"] not in shown

    uid = (await bastion.services.store.get_user_by_name("wendy")).id
    assert (await admin.post("/api/grants", {"user_id": uid, "host_id": ids["host_id"]})).status == 201
    wendy = bastion.client()
    await wendy.login("wendy", "wendy-password-1")
    term = await TerminalClient.open(wendy, f"/ws/terminal/{ids['host_id']}", cols=80, rows=24)
    reason = (await term.control("closed"))["reason"]
    term.close()
    assert "connection refused" in reason and "(" not in reason and "Connect call" not in reason, reason


async def test_audit_address_is_the_clients(bastion: BastionApp) -> None:
    """The audit log's address is always the client's; admin changes carry it too; a host's address is detail."""
    admin = await bastion.admin()
    await seed_inventory(bastion, admin, address="10.9.8.7", name="far-host")
    assert (await admin.post("/api/users", {"username": "vic", "password": "vic-password-12", "roles": ["user"]})).status == 201
    events: dict = {}
    for e in (await bastion.services.store.list_events(limit=50)).items:  # newest first
        events.setdefault(e.action, e)
    for action in ("host.created", "user.created", "credential.created", "app.created"):
        assert events[action].address == "127.0.0.1", (action, events[action])
    assert events["host.created"].detail["host"] == "10.9.8.7:22"
    page = (await admin.request("GET", "/audit", headers={"Accept": "text/html"})).body.decode()
    assert "<th>Client address</th>" in page and "host: 10.9.8.7:22" in page
