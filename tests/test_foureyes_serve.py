"""A real `bastion serve` process whose access clock a test moves through configuration ([access] clock_file):
approved access ends by itself when the clock passes its end, and the session that depended on it ends."""
from __future__ import annotations

from pathlib import Path

import pytest

from client import Client, TerminalClient
from procs import bastion_env, init_bastion, serve_bastion, stop_process
from waiting import wait_until

import scenario

ADMIN = "admin-password-serve-1"


@pytest.fixture
def served(tmp_path: Path):
    clock = tmp_path / "clock-offset"
    env = bastion_env(tmp_path, BASTION_ACCESS_CLOCK_FILE=str(clock), BASTION_LOG_LEVEL="WARNING")
    init_bastion(env, ADMIN)
    proc = serve_bastion(env, log=tmp_path / "serve.log")
    try:
        yield f"http://127.0.0.1:{env['BASTION_SERVER_PORT']}", clock
    finally:
        stop_process(proc)


async def test_clock_file_moves_the_end_of_temporary_access(served, sshd) -> None:
    url, clock = served
    admin = Client(url)
    await admin.login("admin", ADMIN)
    ids = await scenario.seed_sshd(admin, sshd, "web1")
    for name, roles in (("alice", ["user"]), ("bob", ["auditor"])):
        made = await admin.post("/api/users", {"username": name, "password": "user-password-1", "roles": roles})
        assert made.status == 201, made
    alice, bob = Client(url), Client(url)
    await alice.login("alice", "user-password-1")
    await bob.login("bob", "user-password-1")
    asked = await alice.post("/api/access-requests", {"host_id": ids["host_id"], "minutes": 60, "reason": "patching"})
    assert asked.status == 201, asked
    assert (await bob.post(f"/api/access-requests/{asked.json['id']}/decision", {"decision": "approve"})).status == 200
    term = await TerminalClient.open(alice, f"/ws/terminal/{ids['host_id']}")
    await term.control("session")
    await term.send("echo rea''dy\r")
    await term.expect("ready", timeout=30)
    clock.write_text("3601")  # an hour later, as far as the bastion's access clock goes
    closed = await term.control("closed", timeout=30)
    assert closed["code"] == "revoked" and "temporary access to web1 ended" in closed["reason"]

    async def expired() -> bool:
        return (await alice.get(f"/api/access-requests/{asked.json['id']}")).json["status"] == "expired"
    await wait_until(expired, 15, what="the request marked expired")
    for c in (admin, alice, bob):
        c.close()
