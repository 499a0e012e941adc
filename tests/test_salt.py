"""The salt platform through salt-ssh against real sshd hosts: a sample module for real, parameters as data,
pinned host keys, the private directory, and modules refused on another platform's helper."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.salt_platform import salt_argv, yaml_scalar
from conftest import BastionApp
from test_fleet import wait_final
from test_modules import hosts_sshd, modules_by_id, setup, write_module  # noqa: F401 - fixture
from waiting import wait_until

# salt-ssh costs seconds per host and run even on an idle machine (Python start, thin bundle check, salt-call): more
# than the suite's 300 s per test on a loaded one
pytestmark = [pytest.mark.timeout(900), pytest.mark.skipif(not (Path(__file__).resolve().parent.parent / ".venv" / "bin" / "salt-ssh").exists()
                                and not __import__("shutil").which("salt-ssh"),
                                reason="the salt extra is not installed (pip install -e '.[salt]')")]
HOSTILE = "{{ lookup('pipe','id') }} $(touch MARKER) `id`; id # a=b 1e3 'q' \"dq\" \\ ünï 😀 - [x] {y: z} !tag &a *a |"


async def pin_keys(env: dict, hosts: list[str]) -> None:
    """Run the ssh-platform sample once: trust on first use pins the keys salt-ssh is then held to."""
    resp = await env["user"].post("/api/modules/1003/runs", {"host_ids": hosts, "params": {}})
    assert (await wait_final(env["user"], resp.json["run_id"]))["status"] == "ok"


def test_arguments_read_back_unchanged_by_yaml() -> None:
    """What salt-call does to each word (salt.utils.args.parse_input) gives back exactly the value."""
    from salt.utils.args import parse_input
    values = [HOSTILE, "a=b", "1e3", "0x10", "yes", "null", "~", "#", "", "   ", "---", "1_000", "[1]", "{a: 1}", "tab\there"]
    args, kwargs = parse_input(salt_argv(values), condition=False)
    assert args == values and kwargs == {}
    args, kwargs = parse_input(salt_argv({"cmd": ["printf", "%s", HOSTILE], "python_shell": False, "n": 3}), condition=False)
    assert args == [] and kwargs == {"cmd": ["printf", "%s", HOSTILE], "python_shell": False, "n": 3}
    assert yaml_scalar("plain words/ok") == '"plain words/ok"'


async def test_salt_sample_module_and_literal_parameters(bastion: BastionApp, hosts_sshd, tmp_path: Path) -> None:  # noqa: F811
    env = await setup(bastion, hosts_sshd, modules=("1003", "1008"))
    await pin_keys(env, env["hosts"])
    # the four "hosts" share one file system: the first contact unpacks salt's thin bundle, on one host alone
    resp = await env["user"].post("/api/modules/1008/runs", {"host_ids": env["hosts"][:1], "params": {}})
    assert (await wait_final(env["user"], resp.json["run_id"], timeout=300))["status"] == "ok"
    resp = await env["user"].post("/api/modules/1008/runs", {"host_ids": env["hosts"], "params": {}})
    assert resp.status == 201, resp
    run = await wait_final(env["user"], resp.json["run_id"], timeout=300)
    assert run["status"] == "ok", (run["error"], run["log"][-2000:], run["results"])
    for r in run["results"].values():
        assert r["ok"] and r["rc"] == 0 and "load average" in r["stdout"] and r["elapsed"] > 0, r

    marker = tmp_path / "pwned"
    literal = HOSTILE.replace("MARKER", str(marker))
    write_module(env["folder"], "1050", '''    platform = "salt"

    def run(self):
        import json
        import os
        import tempfile
        made = []
        real = tempfile.mkdtemp

        def spy(*args, **kwargs):
            path = real(*args, **kwargs)
            if os.path.basename(path).startswith("bastion-salt-") and "cache" not in path:
                made.append((path, oct(os.stat(path).st_mode & 0o777)))
            return path
        tempfile.mkdtemp = spy
        try:
            text = self.params["sys_param_1"]
            ran = self.salt("cmd.run_all", {"cmd": ["printf", "%s", text], "python_shell": False})
            echoed = self.salt("test.echo", [text])
        finally:
            tempfile.mkdtemp = real
        return {h: {**r, "stdout": json.dumps({"ran": r["stdout"], "echo": echoed[h]["stdout"], "made": made})}
                for h, r in ran.items()}''',
                 params='[{"name": "sys_param_1", "label": "Text", "type": "str", "required": True, "max_length": 400}]',
                 timeout=300, name="Salt literal")
    await bastion.services.registry.refresh()
    resp = await env["user"].post("/api/modules/1050/runs", {"host_ids": env["hosts"][:1], "params": {"sys_param_1": literal}})
    assert resp.status == 201, resp
    run = await wait_final(env["user"], resp.json["run_id"], timeout=300)
    assert run["status"] == "ok", (run["error"], run["results"])
    seen = json.loads(run["results"]["node0"]["stdout"])
    assert seen["ran"] == literal  # through cmd.run_all on the target: no shell, no template
    assert seen["echo"] == literal  # and back from a function's return value
    assert not marker.exists()
    assert len(seen["made"]) == 2 and all(mode == "0o700" for _, mode in seen["made"]), seen["made"]
    for path, _ in seen["made"]:
        assert not Path(path).exists(), f"{path} (roster, keys, known_hosts) was left behind"


async def test_salt_refuses_a_changed_host_key(bastion: BastionApp, hosts_sshd) -> None:  # noqa: F811
    env = await setup(bastion, hosts_sshd, modules=("1008",))
    host = await bastion.services.store.get_host(env["hosts"][0])
    host.host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPx2ZcFhKJm7o3e7Q0gXvP0xCzCq3Jr3mV5b0b3d1E2F"
    host.host_key_fingerprint = "SHA256:fake"
    await bastion.services.store.save(host)
    resp = await env["user"].post("/api/modules/1008/runs", {"host_ids": [host.id], "params": {}})
    run = await wait_final(env["user"], resp.json["run_id"], timeout=300)
    assert run["status"] == "failed" and not run["results"]["node0"]["ok"]
    assert "Host key verification failed" in run["results"]["node0"]["stderr"], run["results"]["node0"]


async def test_a_module_is_refused_on_another_platform(bastion: BastionApp, hosts_sshd) -> None:  # noqa: F811
    env = await setup(bastion, hosts_sshd, modules=())
    write_module(env["folder"], "1051", '''    platform = "salt"

    async def run(self):
        return await self.ssh(["uptime"])''', name="Salt calling ssh")
    write_module(env["folder"], "1052", '''    def run(self):
        return self.salt("test.ping")''', name="Ssh calling salt")
    # called dynamically, so only the run-time check can see it
    write_module(env["folder"], "1053", '''    def run(self):
        return getattr(self, "sa" + "lt")("test.ping")''', name="Ssh calling salt at run time")
    await bastion.services.registry.refresh()
    items = await modules_by_id(env["admin"])
    assert items["1051"]["state"] == "broken"
    assert items["1051"]["error"] == "the module is declared for the salt platform but calls self.ssh() of the ssh platform (line 15)"
    assert items["1052"]["state"] == "broken" and "declared for the ssh platform but calls self.salt()" in items["1052"]["error"]
    resp = await env["user"].post("/api/modules/1051/runs", {"host_ids": env["hosts"][:1], "params": {}})
    assert resp.status == 409 and "broken" in resp.json["error"]
    resp = await env["user"].post("/api/modules/1053/runs", {"host_ids": env["hosts"][:1], "params": {}})
    run = await wait_final(env["user"], resp.json["run_id"])
    assert run["status"] == "failed"
    assert ("this module is written for the ssh platform and cannot use self.salt() of the salt platform "
            "(declare platform = \"salt\")") in run["error"]
    # the run's result is stored before its worker has been reaped: wait for that, bounded
    await wait_until(lambda: bastion.services.executor.running() == 0, 30, what="the failed run's worker reaped")
