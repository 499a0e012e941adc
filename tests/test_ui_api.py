"""Issue 13's API additions over HTTP: host connection test (against a real sshd, keys read with ssh-keygen),
credential rotation, user deletion, rule editing, audit event detail, date ranges and CSV exports."""
from __future__ import annotations

import csv
import io
import subprocess
import time

from client import TerminalClient
from conftest import BastionApp, seed_inventory
from scenario import seed_sshd
from bastion.store.records import Event, Host


def keygen_fingerprint(pub_path) -> str:
    """The host key's SHA256 fingerprint as OpenSSH itself prints it (ground truth outside the code)."""
    out = subprocess.run(["ssh-keygen", "-lf", str(pub_path)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


async def events(app: BastionApp, action: str) -> list[Event]:
    return (await app.services.store.list_events(action=action, limit=50)).items


async def test_host_connection_test_reports_reachability_and_key(bastion: BastionApp, own_sshd) -> None:
    admin = await bastion.admin()
    ids = await seed_sshd(admin, own_sshd, "tested1")
    path = f"/api/hosts/{ids['host_id']}/test"
    want = keygen_fingerprint(str(own_sshd.host_key_path) + ".pub")

    first = await admin.post(path)
    assert first.status == 200, first
    assert first.json["ok"] is True and first.json["key"] == "first_use", first.json
    assert first.json["fingerprint"] == want
    host = await bastion.services.store.get_host(ids["host_id"])
    assert host.host_key_fingerprint == want  # pinned, as the first terminal would

    again = (await admin.post(path)).json
    assert again["ok"] and again["key"] == "match" and again["pinned_fingerprint"] == want

    # the host is re-keyed: refused, and the new key waits for an admin
    own_sshd.stop()
    own_sshd.regenerate_host_key()
    own_sshd.start()
    new = keygen_fingerprint(str(own_sshd.host_key_path) + ".pub")
    changed = (await admin.post(path)).json
    assert changed["ok"] is False and changed["key"] == "changed", changed
    assert changed["fingerprint"] == new and changed["pinned_fingerprint"] == want
    assert (await bastion.services.store.get_host(ids["host_id"])).offered_key_fingerprint == new
    assert (await admin.post(f"/api/hosts/{ids['host_id']}/accept-key")).status == 200

    # a wrong secret: reachable, credential refused, said in words
    assert (await admin.patch(f"/api/credentials/{ids['credential_id']}", {"password": "not-the-key"})).status == 200
    refused = (await admin.post(path)).json
    assert refused["ok"] is False and "refused the stored credential" in refused["message"], refused

    # nothing listens: unreachable, no Python repr in the message
    own_sshd.stop()
    down = (await admin.post(path)).json
    assert down["ok"] is False and "cannot connect" in down["message"] and "('" not in down["message"], down

    tested = await events(bastion, "host.tested")
    assert len(tested) == 5 and all(e.address == "127.0.0.1" and e.actor == "admin" for e in tested)
    assert [e.ok for e in tested] == [False, False, False, True, True]  # newest first


async def test_credential_rotation(bastion: BastionApp, own_sshd) -> None:
    admin = await bastion.admin()
    ids = await seed_inventory(bastion, admin, name="rot1", password="old-password")
    url = f"/api/credentials/{ids['credential_id']}"
    both = await admin.patch(url, {"password": "a", "private_key": "b"})
    assert both.status == 400 and both.json["error"] == "give a new password or a new private key, not both"
    assert (await admin.patch(url, {})).json["error"] == "nothing to change"
    bad_key = await admin.patch(url, {"private_key": "not a key"})
    assert bad_key.status == 400 and "not a readable" in bad_key.json["error"]

    resp = await admin.patch(url, {"private_key": own_sshd.client_key, "username": own_sshd.username})
    assert resp.status == 200, resp
    assert resp.json["kind"] == "private_key" and "sealed_secret" not in resp.json
    assert b"PRIVATE KEY" not in resp.body
    cred = await bastion.services.store.get_credential(ids["credential_id"])
    assert bastion.services.inventory.open_secret(cred) == own_sshd.client_key
    # the rotated credential is what the next connection uses
    host = await admin.patch(f"/api/hosts/{ids['host_id']}", {"address": own_sshd.address, "port": own_sshd.port})
    assert host.status == 200
    assert (await admin.post(f"/api/hosts/{ids['host_id']}/test")).json["ok"] is True

    [event] = await events(bastion, "credential.updated")
    assert event.address == "127.0.0.1" and event.detail["changed"] == ["login", "secret"]
    assert "PRIVATE" not in repr(event.detail)


async def test_delete_user_ends_access(bastion: BastionApp, sshd) -> None:
    admin = await bastion.admin()
    ids = await seed_sshd(admin, sshd, "del1")
    bob = await bastion.user("bob")
    bob_id = (await bastion.services.store.get_user_by_name("bob")).id
    assert (await admin.post("/api/grants", {"user_id": bob_id, "host_id": ids["host_id"]})).status == 201
    token = (await bob.post("/api/tokens", {"name": "t"})).json["token"]
    term = await TerminalClient.open(bob, f"/ws/terminal/{ids['host_id']}")
    await term.control("session")

    me = (await admin.get("/api/me")).json["user"]["id"]
    assert (await admin.delete(f"/api/users/{me}")).json["error"] == "you cannot delete yourself"
    assert (await admin.delete(f"/api/users/{bob_id}")).status == 200
    closed = await term.control("closed")
    assert closed["reason"]
    assert await bastion.services.store.get_user(bob_id) is None
    assert (await bastion.services.store.list_grants(user_id=bob_id)).total == 0
    probe = bastion.client()
    assert (await probe.request("GET", "/api/me", headers={"Authorization": f"Bearer {token}"})).status == 401
    assert (await bob.get("/api/me")).status == 401
    [event] = await events(bastion, "user.deleted")
    assert event.target == "bob" and event.address == "127.0.0.1"
    assert (await admin.delete(f"/api/users/{bob_id}")).status == 404


async def test_rule_edit_and_switch(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    rule = (await admin.post("/api/command-rules", {"name": "no-rm", "pattern": r"^rm\s"})).json
    url = f"/api/command-rules/{rule['id']}"
    off = await admin.patch(url, {"enabled": False})
    assert off.status == 200 and off.json["enabled"] is False and off.json["pattern"] == r"^rm\s"
    # the running filter follows at once (the rule cache was told): rm passes now
    user = await bastion.services.store.get_user_by_name("admin")
    assert (await bastion.services.rules.verdict("rm -rf /tmp/x", user, Host(name="h"))).action == "allow"
    edited = await admin.patch(url, {"enabled": True, "pattern": r"^shutdown\b", "action": "warn", "priority": 5})
    assert edited.status == 200 and edited.json["action"] == "warn" and edited.json["priority"] == 5
    bad = await admin.patch(url, {"pattern": "(unclosed"})
    assert bad.status == 400 and "(" not in bad.json["error"].split(":")[0]
    assert (await admin.patch(url, {"scope": "role", "scope_value": "root"})).status == 400
    assert (await admin.patch(url, {"color": "red"})).status == 400
    assert (await bastion.services.rules.verdict("shutdown now", user, Host(name="h"))).action == "warn"
    assert [r["pattern"] for r in (await admin.get("/api/command-rules")).json["items"]] == [r"^shutdown\b"]
    updated = await events(bastion, "rule.updated")
    assert len(updated) == 2 and updated[0].detail["changed"] == ["action", "enabled", "pattern", "priority"]
    assert all(e.address == "127.0.0.1" for e in updated)


async def test_event_detail_date_range_and_csv(bastion: BastionApp) -> None:
    admin = await bastion.admin()
    store = bastion.services.store
    day = 86400
    old = await store.add_event(Event(ts=time.time() - 3 * day, action="login.failed", actor="=HYPERLINK(evil)",
                                      address="10.0.0.9", ok=False, detail={"why": "bad credentials"}))
    recent = (await events(bastion, "login.ok"))[0]

    detail = await admin.get(f"/api/events/{old.id}")
    assert detail.status == 200 and detail.json["actor"] == "=HYPERLINK(evil)"
    page = await admin.request("GET", f"/audit/{old.id}", headers={"Accept": "text/html"})
    assert page.status == 200 and b"bad credentials" in page.body and b"10.0.0.9" in page.body
    assert (await admin.get("/api/events/nonexistent")).status == 404

    stamp = time.strftime("%Y-%m-%d", time.gmtime(old.ts))
    only_old = await admin.request("GET", f"/audit?from={stamp}&to={stamp}", headers={"Accept": "text/html"})
    assert f"/audit/{old.id}".encode() in only_old.body and f"/audit/{recent.id}".encode() not in only_old.body
    today = time.strftime("%Y-%m-%d", time.gmtime())
    only_new = await admin.request("GET", f"/audit?from={today}", headers={"Accept": "text/html"})
    assert f"/audit/{old.id}".encode() not in only_new.body and f"/audit/{recent.id}".encode() in only_new.body

    auditor = await bastion.user("aud", roles=["auditor"])
    resp = await auditor.get("/api/events", params={"format": "csv"})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(resp.body.decode())))
    assert rows[0][:6] == ["time (UTC)", "action", "code", "actor", "target", "client address"]
    mine = [r for r in rows[1:] if r[-1] == old.id]
    assert mine and mine[0][3] == "'=HYPERLINK(evil)"  # a spreadsheet would run it as a formula otherwise
    assert mine[0][6] == "failed" and mine[0][7] == "why: bad credentials"
    assert len(rows) - 1 == (await store.list_events(limit=1)).total - 1  # every event but the export's own
    ranged = await auditor.get("/api/events", params={"format": "csv", "since": str(old.ts + 1)})
    assert old.id not in ranged.body.decode()
    assert (await auditor.get("/api/events", params={"format": "xml"})).status == 400
    user = await bastion.user("plain")
    assert (await user.get("/api/events", params={"format": "csv"})).status == 403
    exported = (await events(bastion, "report.exported"))[-1]  # the first export (newest first)
    assert exported.actor == "aud" and exported.address == "127.0.0.1" and exported.detail["rows"] == len(rows) - 1

    for path, first in (("/api/sessions", "started (UTC)"), ("/api/commands/search", "time (UTC)")):
        out = await auditor.get(path, params={"format": "csv"})
        assert out.status == 200 and out.body.decode().splitlines()[0].startswith(first)


async def test_dashboard_stats(bastion: BastionApp) -> None:
    """Per-day counts, top users and hosts over UTC days, from session and command records."""
    from bastion.store.records import Command, Session

    store = bastion.services.store
    now = time.time()
    today = int(now) // 86400 * 86400
    made = [("ann", "db1", today + 60), ("ann", "db1", today + 120), ("ann", "web1", today - 86400 + 60),
            ("ben", "db1", today - 2 * 86400 + 60), ("cy", "old", today - 30 * 86400)]
    for user, host, t in made:
        await store.create_session(Session(host_name=host, username=user, started_at=t, live=False))
    for t, blocked in ((today + 30, True), (today - 86400 + 30, True), (today + 40, False)):
        await store.add_command(Command(text="rm -rf /", ts=t, blocked=blocked))
    auditor = await bastion.user("aud2", roles=["auditor"])
    resp = await auditor.get("/api/stats", params={"days": "3"})
    assert resp.status == 200, resp
    s = resp.json
    assert s["days"] == [time.strftime("%Y-%m-%d", time.gmtime(today - i * 86400)) for i in (2, 1, 0)]
    assert s["sessions"] == [1, 1, 2] and s["blocked"] == [0, 1, 1]
    assert s["top_users"] == [{"name": "ann", "sessions": 3}, {"name": "ben", "sessions": 1}]
    assert s["top_hosts"][0] == {"name": "db1", "sessions": 3} and s["partial"] is False
    for bad in ("0", "91", "x", "-1"):
        assert (await auditor.get("/api/stats", params={"days": bad})).status == 400
