"""Fleet runs over HTTP: cancel (worker and remote commands end, finished hosts keep their results), re-run of the
failed hosts as a new linked run, durations, incremental results (`?since=`), and the CLI's cancel and rerun.

Ground truth for "nothing left on the target" is the host's own process table (`ps`), searched for a `sleep` with
a duration no other process on this shared machine uses."""
from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path

from conftest import BastionApp
from test_modules import hosts_sshd, setup, write_module  # noqa: F401 - fixture
from waiting import wait_until

FINAL = ("ok", "partial", "failed", "timeout", "cancelled")

# node0 and node1 (127.0.0.2, .3) answer at once; the others sleep while the flag file exists, else answer "second"
SCRIPT = ('srv=$(echo "$SSH_CONNECTION" | cut -d" " -f3); '
          'case "$srv" in 127.0.0.2|127.0.0.3) echo fast;; '
          '*) if [ -e "$1" ]; then exec sleep "$2"; else echo second; fi;; esac')


def marker_duration() -> str:
    """A sleep duration unique to this test run, to find its processes among everyone else's."""
    return f"{800 + random.randint(0, 99)}.{random.randint(100000, 999999)}"


def sleepers(duration: str) -> list[str]:
    """Processes on this machine (the targets' process table) running our marker sleep."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if f"sleep {duration}" in line and "sh -c" not in line]


def hanging_module(folder: Path, mid: str, flag: Path, duration: str) -> None:
    write_module(folder, mid, f'''    async def run(self):
        return await self.ssh(["sh", "-c", {SCRIPT!r}, "fleet", {str(flag)!r}, {duration!r}])''',
                 timeout=120, name="Hangs on two hosts")


async def wait_final(client, run_id: str, timeout: float = 60) -> dict:
    async def ended() -> dict | None:
        run = (await client.get(f"/api/runs/{run_id}")).json
        return run if run["status"] in FINAL else None
    return await wait_until(ended, timeout, interval=0.1, what=f"run {run_id} ending")


async def start_hanging_run(bastion: BastionApp, env: dict, tmp_path: Path) -> tuple[str, str, Path]:
    flag, duration = tmp_path / "hang", marker_duration()
    flag.write_text("")
    hanging_module(env["folder"], "1040", flag, duration)
    await bastion.services.registry.refresh()
    resp = await env["user"].post("/api/modules/1040/runs", {"host_ids": env["hosts"], "params": {}})
    assert resp.status == 201, resp
    run_id = resp.json["run_id"]

    async def two_done_two_sleeping() -> bool:
        run = (await env["user"].get(f"/api/runs/{run_id}")).json
        return {"node0", "node1"} <= set(run["results"]) and len(sleepers(duration)) == 2
    await wait_until(two_done_two_sleeping, 60, interval=0.1, what="two hosts done and two sleeping")
    return run_id, duration, flag


async def test_cancel_kills_worker_and_remote_commands_and_keeps_finished_hosts(bastion: BastionApp, hosts_sshd,
                                                                                tmp_path: Path) -> None:  # noqa: F811
    env = await setup(bastion, hosts_sshd, modules=())
    user = env["user"]
    run_id, duration, _ = await start_hanging_run(bastion, env, tmp_path)
    worker = bastion.services.executor.worker_pid(run_id)
    assert worker is not None
    # incremental reads: everything once with the host list, then only what is newer than the last seq
    first = (await user.get(f"/api/runs/{run_id}?since=0")).json
    assert first["host_names"] == [f"node{i}" for i in range(4)] and set(first["results"]) == {"node0", "node1"}
    seq = max(r["seq"] for r in first["results"].values())
    again = (await user.get(f"/api/runs/{run_id}?since={seq}")).json
    assert again["results"] == {} and "host_names" not in again and again["status"] == "running"
    assert again["progress"] == {"total": 4, "done": 2, "ok": 2, "failed": 0, "cancelled": 0, "waiting": 2}
    assert (await user.get(f"/api/runs/{run_id}?since=-1")).status == 400
    # someone else may not cancel it (they cannot even see it)
    other = await bastion.user("mallory")
    assert (await other.post(f"/api/runs/{run_id}/cancel", {})).status == 404

    resp = await user.post(f"/api/runs/{run_id}/cancel", {})
    assert resp.status == 200, resp
    run = await wait_final(user, run_id)
    assert run["status"] == "cancelled" and run["cancelled_by"] == "alice", run
    for name in ("node0", "node1"):
        r = run["results"][name]
        assert r["ok"] and r["rc"] == 0 and r["stdout"] == "fast\n" and r["elapsed"] > 0, r
    for name in ("node2", "node3"):
        r = run["results"][name]
        assert not r["ok"] and r["cancelled"] and "cancelled" in r["stderr"], r
        # it waited from the run's start until the cancel: longer than the hosts that answered
        assert r["elapsed"] >= max(run["results"][n]["elapsed"] for n in ("node0", "node1")), run["results"]
    assert run["progress"] == {"total": 4, "done": 4, "ok": 2, "failed": 0, "cancelled": 2, "waiting": 0}
    assert run["duration"] > 0 and run["final"]
    # the worker's process is gone (reaped), and the target's process table shows nothing left of the commands
    assert not Path(f"/proc/{worker}").exists()
    await wait_until(lambda: not sleepers(duration), 15, what="the remote sleeps ending")
    resp = await user.post(f"/api/runs/{run_id}/cancel", {})
    assert resp.status == 409 and "already ended" in resp.json["error"], resp
    events = await bastion.services.store.list_events(action="module.run_cancelled")
    assert events.total == 1 and events.items[0].actor == "alice"
    listed = (await user.get("/api/runs?status=cancelled")).json["items"]
    assert [r["id"] for r in listed] == [run_id] and listed[0]["duration"] > 0


async def test_cancel_of_a_run_of_another_node_without_a_hub_names_that_node(bastion: BastionApp) -> None:
    """No hub links this node to the run's node (a run record on a shared database): 409 saying where to cancel it,
    and nothing audited as cancelled."""
    from bastion.store import Run
    user = await bastion.user("alice")
    uid = (await bastion.services.store.get_user_by_name("alice")).id
    run = await bastion.services.store.create_run(Run(module_id="1040", module_name="Hangs", user_id=uid,
                                                      username="alice", status="running", node="node-z"))
    resp = await user.post(f"/api/runs/{run.id}/cancel", {})
    assert resp.status == 409 and "node node-z" in resp.json["error"] and "cancel it there" in resp.json["error"], resp
    assert (await bastion.services.store.list_events(action="module.run_cancelled")).total == 0


async def test_rerun_failed_hosts_is_a_new_linked_run(bastion: BastionApp, hosts_sshd, tmp_path: Path) -> None:  # noqa: F811
    env = await setup(bastion, hosts_sshd, modules=())
    user = env["user"]
    run_id, duration, flag = await start_hanging_run(bastion, env, tmp_path)
    resp = await user.post(f"/api/runs/{run_id}/rerun", {})
    assert resp.status == 409 and "still going" in resp.json["error"], resp
    assert (await user.post(f"/api/runs/{run_id}/cancel")).status == 200
    await wait_final(user, run_id)
    await wait_until(lambda: not sleepers(duration), 15, what="the remote sleeps ending")
    flag.unlink()  # the second attempt answers instead of hanging
    resp = await user.post(f"/api/runs/{run_id}/rerun")
    assert resp.status == 201, resp
    second = await wait_final(user, resp.json["run_id"])
    assert second["rerun_of"] == run_id and second["host_names"] == ["node2", "node3"], second
    assert second["status"] == "ok" and all(r["stdout"] == "second\n" for r in second["results"].values())
    assert second["id"] != run_id and second["duration"] > 0
    resp = await user.post(f"/api/runs/{second['id']}/rerun", {})
    assert resp.status == 409 and "nothing to re-run" in resp.json["error"], resp
    # the re-run is validated again like any run: a parameter the module does not declare is refused
    third = await user.post(f"/api/runs/{run_id}/rerun", {"params": {"sys_param_9": "x"}})
    assert third.status == 400 and "unknown parameter" in third.json["error"], third


async def test_rerun_asks_again_for_secret_parameters(bastion: BastionApp, hosts_sshd) -> None:  # noqa: F811
    env = await setup(bastion, hosts_sshd, modules=())
    write_module(env["folder"], "1041", '''    async def run(self):
        return await self.ssh(["test", self.params["sys_param_1"], "=", "right-secret"])''',
                 params='[{"name": "sys_param_1", "label": "Token", "type": "secret", "required": True}]')
    await bastion.services.registry.refresh()
    resp = await env["user"].post("/api/modules/1041/runs", {"host_ids": env["hosts"][:2], "params": {"sys_param_1": "wrong"}})
    first = await wait_final(env["user"], resp.json["run_id"])
    assert first["status"] == "failed"
    resp = await env["user"].post(f"/api/runs/{first['id']}/rerun", {})
    assert resp.status == 400 and resp.json["error"] == "the run had a secret parameter (Token): give it again to re-run"
    resp = await env["user"].post(f"/api/runs/{first['id']}/rerun", {"params": {"sys_param_1": "right-secret"}})
    assert resp.status == 201, resp
    second = await wait_final(env["user"], resp.json["run_id"])
    assert second["status"] == "ok" and second["params"] == {"sys_param_1": "********"}


async def test_cli_cancel_and_rerun(bastion: BastionApp, hosts_sshd, tmp_path: Path) -> None:  # noqa: F811
    env = await setup(bastion, hosts_sshd, modules=())
    token = (await env["user"].post("/api/tokens", {"name": "cli"})).json["token"]
    run_id, duration, flag = await start_hanging_run(bastion, env, tmp_path)
    base = [sys.executable, "-m", "bastion"]
    opts = ["--url", bastion.base_url, "--key", token]

    async def cli(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(*base, *args, *opts, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env={**os.environ, "BASTION_TOKEN": ""})
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await cli("cancel", run_id)
    assert code == 0, (out, err)
    assert "node0  ok" in out and "node2  FAILED" in out and "cancelled before this host finished" in out, out
    await wait_until(lambda: not sleepers(duration), 15, what="the remote sleeps ending")
    code, out, err = await cli("cancel", run_id)
    assert code == 2 and "409: the run has already ended (cancelled)" in err, err
    flag.unlink()
    code, out, err = await cli("rerun", run_id)
    assert code == 0, (out, err)
    assert f"re-run of {run_id} on 2 host(s)" in err and "node2  ok" in out and "node0" not in out, (out, err)
    runs = (await env["user"].get("/api/runs")).json["items"]
    assert runs[0]["rerun_of"] == run_id and runs[0]["via"] == "api"
