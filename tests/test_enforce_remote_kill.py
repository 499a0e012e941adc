"""A module run that times out also ends its command on the target. The sshd fixture runs on this machine,
so this machine's process table is the target's: a marker argument is looked up with pgrep."""
from __future__ import annotations

import asyncio
import random
import subprocess
import time
from typing import Callable

import pytest

from conftest import BastionApp
from test_modules import setup as setup_modules, wait_run, write_module


async def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll predicate without blocking the loop the in-process bastion runs on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()


def remote_pids(marker: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.fixture(scope="module")
def hosts_sshd(tmp_path_factory: pytest.TempPathFactory):
    from sshd import make_sshd
    server = make_sshd(tmp_path_factory.mktemp("hosts"), addresses=["127.0.0.2"]).start()
    yield server
    server.stop()


def _marker() -> str:
    # a sleep length no other process uses: it is both the command and the marker pgrep looks for
    return f"{random.randint(30000, 39999)}.{random.randint(100000, 999999)}"


@pytest.mark.parametrize("how", ["host-timeout", "module-timeout"])
async def test_timed_out_command_is_killed_on_the_target(bastion: BastionApp, hosts_sshd, how: str) -> None:
    marker = _marker()
    env = await setup_modules(bastion, hosts_sshd, modules=())
    if how == "host-timeout":
        # the per-host timeout inside the worker closes the channel; the worker itself finishes normally
        body = f'''    async def run(self):
        return await self.ssh(["sh", "-c", "sleep {marker}; echo never"], timeout=2)'''
        timeout = 60
    else:
        # the module's own timeout: the executor SIGKILLs the worker, its TCP connection to sshd just drops
        body = f'''    async def run(self):
        return await self.ssh(["sh", "-c", "sleep {marker}; echo never"], timeout=300)'''
        timeout = 3
    write_module(env["folder"], "1040", body, timeout=timeout)
    await bastion.services.registry.refresh()
    resp = await env["user"].post("/api/modules/1040/runs", {"host_ids": env["hosts"][:1], "params": {}})
    assert resp.status == 201, resp
    try:
        assert await wait_until(lambda: bool(remote_pids(marker)), 30), "the remote command never started"
        run = await wait_run(env["user"], resp.json["run_id"], timeout=60)
        if how == "host-timeout":
            assert run["status"] == "failed" and "timed out after 2 s" in run["results"]["node0"]["stderr"], run
        else:
            assert run["status"] == "timeout", run
        assert await wait_until(lambda: not remote_pids(marker), 15), f"still running on the target: {remote_pids(marker)}"
    finally:
        for pid in remote_pids(marker):  # only the processes this test started (the unique marker)
            subprocess.run(["kill", "-KILL", str(pid)], capture_output=True)


async def test_output_and_exit_status_pass_through_the_wrapper(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup_modules(bastion, hosts_sshd, modules=())
    write_module(env["folder"], "1041", '''    async def run(self):
        return await self.ssh(["sh", "-c", 'printf "%s|" "$@"; echo to-stderr >&2; exit 7', "x", "a b", "it's", "$(id)"])''')
    await bastion.services.registry.refresh()
    resp = await env["user"].post("/api/modules/1041/runs", {"host_ids": env["hosts"][:1], "params": {}})
    run = await wait_run(env["user"], resp.json["run_id"])
    result = run["results"]["node0"]
    assert result["stdout"] == "a b|it's|$(id)|" and result["stderr"] == "to-stderr\n" and result["rc"] == 7, result
