"""A `review` rule also holds module parameters: the run request waits for an approver; denied or unanswered,
nothing runs (the host's file system says so)."""
from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import BastionApp
from test_modules import hosts_sshd, setup, wait_run, write_module  # noqa: F401 - hosts_sshd is a fixture
from waiting import wait_until


async def test_module_parameter_held_for_review(make_bastion, hosts_sshd, tmp_path: Path) -> None:  # noqa: F811
    app: BastionApp = await make_bastion(access_review_timeout="60")
    env = await setup(app, hosts_sshd, modules=())
    write_module(env["folder"], "1031", '''    async def run(self):
        return await self.ssh(["touch", self.params["sys_param_1"]])''',
                 params='[{"name": "sys_param_1", "label": "File", "type": "str", "required": True}]', name="Touch")
    await app.services.registry.refresh()
    rule = await env["admin"].post("/api/command-rules", {"name": "ask-first", "pattern": "held", "action": "review"})
    assert rule.status == 201
    bob = await app.user("bob", roles=["auditor"])

    async def held_one() -> dict:
        listed = await bob.get("/api/reviews")
        return listed.json["items"][0] if listed.json["items"] else None

    approved = tmp_path / "approved-held"
    asking = asyncio.ensure_future(env["user"].post("/api/modules/1031/runs", {"host_ids": env["hosts"][:1],
                                                                                "params": {"sys_param_1": str(approved)}}))
    held = await wait_until(held_one, 15, what="the held parameter on the approver's list")
    assert held["target"] == "module Touch" and held["command"] == str(approved) and held["by"] == "alice"
    assert (await app.services.store.list_runs()).total == 0 and not approved.exists()  # nothing runs while held
    assert (await bob.post(f"/api/reviews/{held['id']}", {"decision": "approve"})).status == 200
    resp = await asking
    assert resp.status == 201, resp
    await wait_run(env["user"], resp.json["run_id"])
    assert approved.exists()

    denied = tmp_path / "denied-held"
    asking = asyncio.ensure_future(env["user"].post("/api/modules/1031/runs", {"host_ids": env["hosts"][:1],
                                                                                "params": {"sys_param_1": str(denied)}}))
    held = await wait_until(held_one, 15, what="the second held parameter")
    assert (await bob.post(f"/api/reviews/{held['id']}", {"decision": "deny"})).status == 200
    resp = await asking
    assert resp.status == 403 and "denied by bob" in resp.json["error"]
    unanswered = tmp_path / "unanswered-held"
    asking = asyncio.ensure_future(env["user"].post("/api/modules/1031/runs", {"host_ids": env["hosts"][:1],
                                                                                "params": {"sys_param_1": str(unanswered)}}))
    await wait_until(held_one, 15, what="the third held parameter")
    app.services.foureyes.clock.advance(61)
    resp = await asking
    assert resp.status == 403 and "no answer in time" in resp.json["error"]
    assert (await app.services.store.list_runs()).total == 1
    assert not denied.exists() and not unanswered.exists()
