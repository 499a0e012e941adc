"""Command rules scoped to a category, a host or a role, enforced on live terminals.

Ground truth is the host's file system: a denied `touch` leaves no file, an allowed one does.
"""
from __future__ import annotations

from pathlib import Path

from client import TerminalClient
from conftest import BastionApp, granted_host
from scenario import grant, open_terminal, seed_sshd
from waiting import wait_until


async def run_touch(term: TerminalClient, path: Path, n: int) -> bool:
    """Type `touch PATH` at the prompt; return whether the bastion refused it (the file is checked by the caller)."""
    notices = len([c for c in term.controls if c["type"] == "notice" and c.get("level") == "error"])
    await term.send(f"touch {path}\r")
    # bash handles lines in order: once the next command has answered, the touch has run (or never reached it)
    await term.send(f"echo do''ne-{n}\r")
    await term.expect(f"done-{n}")
    return len([c for c in term.controls if c["type"] == "notice" and c.get("level") == "error"]) > notices


async def test_category_host_and_role_scopes(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, alice, web1 = await granted_host(bastion, sshd, "alice", "web1")
    web2 = await seed_sshd(admin, sshd, "web2")  # another category
    bob = await bastion.user("bob", roles=["user", "auditor"])
    users = {name: (await bastion.services.store.get_user_by_name(name)).id for name in ("alice", "bob")}
    await grant(admin, users["alice"], host_id=web2["host_id"])
    await grant(admin, users["bob"], host_id=web1["host_id"])
    for body in ({"name": "cat-web1-only", "pattern": r"touch\s+\S*cat-marker", "scope": "app", "scope_value": web1["app_id"]},
                 {"name": "web2-only", "pattern": r"touch\s+\S*host-marker", "scope": "host", "scope_value": web2["host_id"]},
                 {"name": "auditors-only", "pattern": r"touch\s+\S*role-marker", "scope": "role", "scope_value": "auditor"}):
        resp = await admin.post("/api/command-rules", {**body, "kind": "regex", "action": "deny"})
        assert resp.status == 201, resp

    a1 = await open_terminal(alice, web1["host_id"])
    a2 = await open_terminal(alice, web2["host_id"])
    b1 = await open_terminal(bob, web1["host_id"])
    cases = [  # (terminal, file, denied?)
        (a1, tmp_path / "cat-marker-a1", True),     # web1 is in the category
        (a2, tmp_path / "cat-marker-a2", False),    # web2 is not
        (a1, tmp_path / "host-marker-a1", False),   # the host rule names web2 only
        (a2, tmp_path / "host-marker-a2", True),
        (a1, tmp_path / "role-marker-a1", False),   # alice is not an auditor
        (b1, tmp_path / "role-marker-b1", True),    # bob is
    ]
    for n, (term, path, denied) in enumerate(cases):
        refused = await run_touch(term, path, n)
        assert refused is denied, (path.name, refused)
        if denied:
            assert not path.exists(), f"{path.name} was created although the rule denies it"
        else:
            await wait_until(path.exists, what=f"{path.name} created on the host")
    await bastion.settle()  # commands reach the store through the journal, after the decision
    blocked = (await admin.get("/api/commands/search", params={"blocked": "1"})).json["items"]
    assert sorted(h["text"] for h in blocked) == sorted(f"touch {p}" for _, p, d in cases if d)
    for term in (a1, a2, b1):
        term.close()
