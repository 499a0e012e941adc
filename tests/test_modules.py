"""Task modules against several real sshd "hosts": registry, envelopes, authorization, faults."""
from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest

from bastion import protocol
from conftest import BastionApp
from scenario import grant, seed_sshd
from sshd import make_sshd
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def hosts_sshd(tmp_path_factory: pytest.TempPathFactory):
    """One sshd listening on 127.0.0.2-5 (four "hosts")."""
    server = make_sshd(tmp_path_factory.mktemp("hosts"), addresses=[f"127.0.0.{i}" for i in range(2, 6)]).start()
    yield server
    server.stop()


async def setup(app: BastionApp, sshd, modules: tuple[str, ...] = ("1001", "1002", "1003")) -> dict:
    """Copy sample modules, create hosts on every sshd endpoint, grant them to alice."""
    folder = Path(app.config.modules.dir)
    folder.mkdir(exist_ok=True)
    for mid in modules:
        shutil.copy(ROOT / "modules" / f"Mid_{mid}.py", folder)
    await app.services.registry.refresh()
    admin = await app.admin()
    ids = await seed_sshd(admin, sshd, "node", all_endpoints=True, category="fleet")
    user = await app.user("alice")
    uid = (await app.services.store.get_user_by_name("alice")).id
    await grant(admin, uid, app_id=ids["app_id"])
    return {"admin": admin, "user": user, "hosts": ids["host_ids"], "cat": ids["app_id"], "folder": folder, "uid": uid}


async def wait_run(client, run_id: str, timeout: float = 60) -> dict:
    """Poll the API until a run has finished; return it."""
    async def finished() -> dict | None:
        run = (await client.get(f"/api/runs/{run_id}")).json
        return run if run["status"] in ("ok", "partial", "failed", "timeout") else None
    return await wait_until(finished, timeout, interval=0.1, what=f"run {run_id} finishing")


async def modules_by_id(client) -> dict:
    return {m["id"]: m for m in (await client.get("/api/modules")).json["items"]}


def write_module(folder: Path, mid: str, body: str, *, timeout: int = 10, params: str = "[]", name: str = "Test") -> None:
    (folder / f"Mid_{mid}.py").write_text(f'''import bastion


class Modulehandle(bastion.Modulehandle):
    name = "{name}"
    description = "test module"
    platform = "ssh"
    category = "Test"
    timeout = {timeout}
    params = {params}

{body}
''')


async def test_system_version_on_four_hosts(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd)
    listing = (await env["user"].get("/api/modules")).json["items"]
    assert {m["id"] for m in listing} == {"1001", "1002", "1003"}
    resp = await env["user"].post("/api/modules/1003/runs", {"host_ids": env["hosts"], "params": {}})
    assert resp.status == 201, resp
    run = await wait_run(env["user"], resp.json["run_id"])
    assert run["status"] == "ok", run
    os_name = Path("/etc/os-release").read_text().split('PRETTY_NAME="')[1].split('"')[0]
    assert set(run["results"]) == {f"node{i}" for i in range(4)}
    for r in run["results"].values():
        assert r["ok"] and r["rc"] == 0 and os_name in r["stdout"] and r["elapsed"] > 0
    # keys seen by the run are pinned (trust on first use)
    host = await bastion.services.store.get_host(env["hosts"][0])
    assert host.host_key_fingerprint.startswith("SHA256:")
    assert (await bastion.services.store.list_events(action="module.run_started")).total == 1


@pytest.mark.parametrize("bad_id, status, fragment", [
    ("1001;__import__('os')", 400, "module id must be 1-9 ASCII digits"),
    ("..%2Fx", 400, "module id must be 1-9 ASCII digits"),
    ("Mid_1001", 400, "module id must be 1-9 ASCII digits"),
    ("１００１", 400, "module id must be 1-9 ASCII digits"),
    ("9999", 404, "not found"),
    ("", 404, ""),  # no route matches an empty id
])
async def test_bad_module_ids(bastion: BastionApp, hosts_sshd, bad_id: str, status: int, fragment: str) -> None:
    env = await setup(bastion, hosts_sshd)
    resp = await env["user"].post(f"/api/modules/{bad_id}/runs", {"host_ids": env["hosts"][:1], "params": {}})
    assert resp.status == status, resp
    assert fragment in resp.json["error"], resp
    assert (await bastion.services.store.list_runs()).total == 0


async def test_parameter_schema_and_literal_values(bastion: BastionApp, hosts_sshd, tmp_path: Path) -> None:
    env = await setup(bastion, hosts_sshd)
    user, hosts = env["user"], env["hosts"][:1]
    for params, fragment in [({"sys_param_1": "abc", "sys_param_2": "syslog"}, "sys_param_1 (Lines) must be an integer"),
                             ({"sys_param_1": 0, "sys_param_2": "syslog"}, "sys_param_1 (Lines) must be between 1 and 5000"),
                             ({"sys_param_1": 5, "sys_param_2": "../../etc/shadow"}, "sys_param_2 (Log file) must be one of"),
                             ({"sys_param_1": 5, "sys_param_9": "x"}, "unknown parameter 'sys_param_9'")]:
        resp = await user.post("/api/modules/1001/runs", {"host_ids": hosts, "params": params})
        assert resp.status == 400 and fragment in resp.json["error"], (params, resp)
    write_module(env["folder"], "1020", '''    async def run(self):
        return await self.ssh(["printf", "%s", self.params["sys_param_1"]])''',
                 params='[{"name": "sys_param_1", "label": "Text", "type": "str", "required": True}]')
    await bastion.services.registry.refresh()
    marker = tmp_path / "pwned"
    literal = "{{ lookup('pipe','id') }} $(touch " + str(marker) + ") `id` ; id"
    resp = await user.post("/api/modules/1020/runs", {"host_ids": hosts, "params": {"sys_param_1": literal}})
    run = await wait_run(user, resp.json["run_id"])
    assert run["results"]["node0"]["stdout"] == literal
    assert not marker.exists()
    assert (await bastion.services.store.list_runs()).total == 1


async def test_ungranted_hosts_and_roles(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd)
    other = await bastion.user("mallory")
    resp = await other.post("/api/modules/1003/runs", {"host_ids": env["hosts"][:1], "params": {}})
    # not granted reads exactly like unknown, and the refusal does not name the host
    assert resp.status == 404 and resp.json["error"] == "host not found", resp
    assert "node0" not in resp.body.decode()
    resp = await env["admin"].patch("/api/modules/1003", {"allowed_roles": ["admin"]})
    assert resp.status == 200
    resp = await env["user"].post("/api/modules/1003/runs", {"host_ids": env["hosts"][:1], "params": {}})
    assert resp.status == 403 and "not available to your role" in resp.json["error"]
    await env["admin"].patch("/api/modules/1003", {"allowed_roles": [], "enabled": False})
    resp = await env["user"].post("/api/modules/1003/runs", {"host_ids": env["hosts"][:1], "params": {}})
    assert resp.status == 409 and "disabled" in resp.json["error"]
    assert (await bastion.services.store.list_runs()).total == 0
    assert (await bastion.services.store.list_events(action="module.run_refused")).total == 3


async def test_faulty_modules_and_bastion_stays_up(bastion: BastionApp, hosts_sshd, tmp_path: Path) -> None:
    env = await setup(bastion, hosts_sshd, modules=("1003",))
    folder, user, hosts = env["folder"], env["user"], env["hosts"][:2]
    write_module(folder, "1030", '''    def run(self):
        import time
        time.sleep(3600)''', timeout=2, name="Hangs")
    write_module(folder, "1031", '''    def run(self):
        raise RuntimeError("module exploded on purpose")''', name="Raises")
    write_module(folder, "1032", '''    def run(self):
        import os
        os._exit(7)''', name="Exits")
    write_module(folder, "1033", '''    def run(self):
        import sys
        for _ in range(100):
            sys.stdout.write("x" * 1048576)
        return {h.name: {"ok": True, "rc": 0, "stdout": "y" * 3_000_000} for h in self.hosts}''', name="Floods")
    await bastion.services.registry.refresh()
    runs = {}
    for mid in ("1030", "1031", "1032", "1033"):
        resp = await user.post(f"/api/modules/{mid}/runs", {"host_ids": hosts, "params": {}})
        assert resp.status == 201, resp
        runs[mid] = resp.json["run_id"]
    # a file with a syntax error dropped in while runs are going
    (folder / "Mid_1034.py").write_text("import bastion\nclass Modulehandle(bastion.Modulehandle):\n    name = 'x'\n    def run(self:\n")
    hang = await wait_run(user, runs["1030"], timeout=30)
    assert hang["status"] == "timeout" and "killed" in hang["error"]
    raised = await wait_run(user, runs["1031"])
    assert raised["status"] == "failed" and "module exploded on purpose" in raised["error"] and "Traceback" in raised["error"]
    exited = await wait_run(user, runs["1032"])
    assert exited["status"] == "failed" and "exited with code 7" in exited["error"]
    flood = await wait_run(user, runs["1033"])
    assert flood["status"] == "ok"
    out = flood["results"]["node0"]["stdout"]
    assert len(out) < 1_100_000 and out.endswith(f"[truncated {3_000_000 - 1048576} bytes]")
    items = await wait_until(lambda: _has(env["admin"], "1034"), what="the broken module listed")
    broken = items["1034"]
    assert broken["state"] == "broken" and "syntax error on line 4" in broken["error"]
    # the executor freed its slots (a run's result is stored just before its worker is reaped) and all else works
    await wait_until(lambda: bastion.services.executor.running() == 0, 30, what="every worker reaped")
    resp = await user.post("/api/modules/1003/runs", {"host_ids": hosts, "params": {}})
    assert (await wait_run(user, resp.json["run_id"]))["status"] == "ok"
    import subprocess
    zombies = subprocess.run(["ps", "-eo", "stat,ppid"], capture_output=True, text=True).stdout.split("\n")
    import os
    assert not [z for z in zombies if z.strip().startswith("Z") and z.split()[-1] == str(os.getpid())]


async def test_hot_reload_add_change_remove(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd, modules=())
    folder = env["folder"]
    write_module(folder, "1010", '''    def run(self):
        return {}''', name="Dropped in")
    items = await wait_until(lambda: _has(env["user"], "1010"), what="the new module listed")
    assert items["1010"]["name"] == "Dropped in" and items["1010"]["state"] == "enabled"
    write_module(folder, "1010", '''    def run(self):
        return {}''', name="Renamed")

    async def renamed() -> bool:
        return (await modules_by_id(env["user"]))["1010"]["name"] == "Renamed"
    await wait_until(renamed, what="the changed module listed")
    (folder / "Mid_1010.py").unlink()

    async def gone() -> bool:
        return "1010" not in await modules_by_id(env["user"])
    await wait_until(gone, what="the deleted module gone")
    reserved = await env["admin"].post("/api/modules/reserve")
    assert reserved.status == 201 and reserved.json["id"] == "1001" and "class Modulehandle(bastion.Modulehandle)" in reserved.json["template"]
    assert (await env["admin"].post("/api/modules/reserve")).json["id"] == "1002"  # the first is held


async def _has(client, module_id: str) -> dict | None:
    items = await modules_by_id(client)
    return items if module_id in items else None


def _token_client(app: BastionApp, token: str):
    c = app.client()
    c.token = token
    return c


async def test_envelopes_flips_replay_stale_unknown_key(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd, modules=("1003",))
    token = (await env["user"].post("/api/tokens", {"name": "cli"})).json["token"]
    script = _token_client(bastion, token)
    key, kid = protocol.token_envelope_key(token), protocol.token_key_id(token)
    payload = protocol.new_payload("1003", env["hosts"][:1], {}, "alice")
    envelope = protocol.seal(key, kid, payload)
    # every single-byte flip of the sealed data is refused and nothing runs
    prefix, _, body = envelope.rpartition(".")
    raw = protocol.b64decode(body)
    codes = set()
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        resp = await script.post("/api/commands", {"envelope": f"{prefix}.{protocol.b64encode(bytes(flipped))}"})
        assert resp.status == 400, resp
        codes.add(resp.json["error"])
    assert codes == {"envelope failed authentication (bad tag): it was altered or sealed with another key"}
    for i in range(len(prefix)):  # flips in the version or key id
        mangled = prefix[:i] + chr(ord(prefix[i]) ^ 1) + prefix[i + 1:]
        resp = await script.post("/api/commands", {"envelope": f"{mangled}.{body}"})
        assert resp.status == 400
    assert (await bastion.services.store.list_runs()).total == 0
    ok = await script.post("/api/commands", {"envelope": envelope})
    assert ok.status == 201, ok
    replay = await script.post("/api/commands", {"envelope": envelope})
    assert replay.status == 409 and "replayed envelope" in replay.json["error"]
    stale = protocol.seal(key, kid, protocol.new_payload("1003", env["hosts"][:1], {}, "alice", now=time.time() - 3600))
    resp = await script.post("/api/commands", {"envelope": stale})
    assert resp.status == 400 and "stale envelope" in resp.json["error"]
    unknown = protocol.seal(b"k" * 32, "tok:nonexistent", protocol.new_payload("1003", env["hosts"][:1], {}, "alice"))
    resp = await script.post("/api/commands", {"envelope": unknown})
    assert resp.status == 400 and "unknown key id" in resp.json["error"]
    for junk, expected in (("", "malformed"), ("nonsense", "malformed"), (5, "malformed"),
                           ("bst1.server.!!!!", "malformed"), ("bst9.server.AAAA", "unsupported")):
        resp = await script.post("/api/commands", {"envelope": junk})
        assert resp.status == 400, junk
        assert expected in resp.json["error"], (junk, resp.json)
    # someone else's token key cannot seal for alice
    other = await bastion.user("bob")
    other_token = (await other.post("/api/tokens", {"name": "b"})).json["token"]
    forged = protocol.seal(protocol.token_envelope_key(other_token), protocol.token_key_id(other_token),
                           protocol.new_payload("1003", env["hosts"][:1], {}, "alice"))
    resp = await script.post("/api/commands", {"envelope": forged})
    assert resp.status == 400 and "unknown key id" in resp.json["error"]
    assert (await bastion.services.store.list_runs()).total == 1


async def test_replay_refused_after_restart(make_bastion, hosts_sshd) -> None:
    app = await make_bastion()
    env = await setup(app, hosts_sshd, modules=("1003",))
    token = (await env["user"].post("/api/tokens", {"name": "cli"})).json["token"]
    envelope = protocol.seal(protocol.token_envelope_key(token), protocol.token_key_id(token),
                             protocol.new_payload("1003", env["hosts"][:1], {}, "alice"))
    assert (await _token_client(app, token).post("/api/commands", {"envelope": envelope})).status == 201
    await app.stop()
    from conftest import start_bastion
    again = await start_bastion(app.config)
    try:
        resp = await _token_client(again, token).post("/api/commands", {"envelope": envelope})
        assert resp.status == 409 and "replayed" in resp.json["error"]
    finally:
        await again.stop()


async def test_concurrent_runs(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd, modules=("1003",))
    resps = await asyncio.gather(*(env["user"].post("/api/modules/1003/runs", {"host_ids": env["hosts"], "params": {}})
                                   for _ in range(8)))
    assert all(r.status == 201 for r in resps)
    runs = [await wait_run(env["user"], r.json["run_id"]) for r in resps]
    assert [r["status"] for r in runs] == ["ok"] * 8
    history = (await env["user"].get("/api/runs")).json
    assert history["total"] == 8 and "results" not in history["items"][0]


async def test_filter_rules_check_module_parameters(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd, modules=())
    write_module(env["folder"], "1021", '''    async def run(self):
        return await self.ssh(["echo", self.params["sys_param_1"]])''',
                 params='[{"name": "sys_param_1", "label": "Text", "type": "str", "required": True}]')
    await bastion.services.registry.refresh()
    await env["admin"].post("/api/command-rules", {"name": "no-rm", "kind": "words", "pattern": "rm", "action": "deny"})
    resp = await env["user"].post("/api/modules/1021/runs", {"host_ids": env["hosts"][:1], "params": {"sys_param_1": "rm -rf /"}})
    assert resp.status == 403 and "command filter (no-rm)" in resp.json["error"]
    assert (await bastion.services.store.list_runs()).total == 0  # refused before any run exists
    refused = await bastion.services.store.list_events(action="module.run_refused")
    assert refused.total == 1 and refused.items[0].actor == "alice"
    # a harmless value with the same module does run: the refusal was the filter's, not the module's
    ok = await env["user"].post("/api/modules/1021/runs", {"host_ids": env["hosts"][:1], "params": {"sys_param_1": "fine"}})
    assert ok.status == 201, ok
    assert (await wait_run(env["user"], ok.json["run_id"]))["results"]["node0"]["stdout"].strip() == "fine"


async def test_ansible_platform_disk_usage_and_literal_params(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd, modules=("1004", "1003"))
    user = env["user"]
    # pin the host keys first (ansible checks them against a known_hosts built from the pinned keys)
    first = await user.post("/api/modules/1003/runs", {"host_ids": env["hosts"][:2], "params": {}})
    await wait_run(user, first.json["run_id"])
    resp = await user.post("/api/modules/1004/runs", {"host_ids": env["hosts"][:2], "params": {"sys_param_1": "/"}})
    assert resp.status == 201, resp
    run = await wait_run(user, resp.json["run_id"], timeout=120)
    assert run["status"] == "ok", (run["error"], run["log"][-3000:], run["results"])
    for r in run["results"].values():
        assert r["ok"] and "Filesystem" in r["stdout"]
    # a parameter that looks like a Jinja template reaches the host as literal text
    write_module(env["folder"], "1022", '''    platform = "ansible"

    def run(self):
        return self.ansible("ansible.builtin.command", {"argv": ["printf", "%s", self.params["sys_param_1"]]})''',
                 params='[{"name": "sys_param_1", "label": "Text", "type": "str", "required": True}]', timeout=120)
    await bastion.services.registry.refresh()
    literal = "{{ lookup('pipe','id') }}"
    resp = await user.post("/api/modules/1022/runs", {"host_ids": env["hosts"][:1], "params": {"sys_param_1": literal}})
    run = await wait_run(user, resp.json["run_id"], timeout=120)
    assert run["status"] == "ok", run
    assert run["results"]["node0"]["stdout"] == literal


async def test_ansible_refuses_changed_host_key(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd, modules=("1004",))
    host = await bastion.services.store.get_host(env["hosts"][0])
    host.host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPx2ZcFhKJm7o3e7Q0gXvP0xCzCq3Jr3mV5b0b3d1E2F"
    host.host_key_fingerprint = "SHA256:fake"
    await bastion.services.store.save(host)
    resp = await env["user"].post("/api/modules/1004/runs", {"host_ids": [host.id], "params": {}})
    run = await wait_run(env["user"], resp.json["run_id"], timeout=120)
    assert run["status"] == "failed" and not run["results"]["node0"]["ok"]
    # the cause is the pinned key, not anything else that can fail a run
    assert "Host key verification failed" in run["results"]["node0"]["stderr"], run["results"]["node0"]


async def test_cli_run(bastion: BastionApp, hosts_sshd) -> None:
    import os
    import sys
    env = await setup(bastion, hosts_sshd, modules=("1003", "1001"))
    token = (await env["user"].post("/api/tokens", {"name": "cli"})).json["token"]
    cmd = [sys.executable, "-m", "bastion", "run", "1003", "--hosts", "node0,node1,node2", "--url", bastion.base_url]
    proc = await asyncio.create_subprocess_exec(*cmd, "--key", token, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env={**os.environ, "BASTION_TOKEN": ""})
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, (out, err)
    text = out.decode()
    assert text.startswith("HOST") and all(f"node{i}  ok" in text for i in range(3))
    assert b"3/3 hosts" in err
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bastion", "run", "1001", "--hosts", "node0",
                                                "--param", "sys_param_1=abc", "--url", bastion.base_url, "--key", token,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"sys_param_1 (Lines) must be an integer" in err
    runs = (await env["user"].get("/api/runs")).json["items"]
    assert [r["via"] for r in runs] == ["cli"]


async def test_secret_parameters_are_masked_in_run_records(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd, modules=())
    secret = "S3cret-value-for-the-host"
    # the host itself checks the value (test(1) exits 0 only when it matches), so nothing prints it
    write_module(env["folder"], "1023", f'''    async def run(self):
        return await self.ssh(["test", self.params["sys_param_1"], "=", "{secret}"])''',
                 params='[{"name": "sys_param_1", "label": "Token", "type": "secret", "required": True}]')
    await bastion.services.registry.refresh()
    resp = await env["user"].post("/api/modules/1023/runs", {"host_ids": env["hosts"][:1], "params": {"sys_param_1": secret}})
    assert resp.status == 201, resp
    run = await wait_run(env["user"], resp.json["run_id"])
    assert run["status"] == "ok" and run["results"]["node0"]["rc"] == 0, run  # the real value reached the host
    assert run["params"] == {"sys_param_1": "********"}
    for client in (env["user"], env["admin"]):
        for path in (f"/api/runs/{run['id']}", "/api/runs"):
            body = (await client.get(path)).body
            assert secret.encode() not in body, path
    stored = await bastion.services.store.get_run(run["id"])
    assert secret not in json.dumps(stored.to_doc())
    events = await bastion.services.store.list_events(limit=500)
    assert all(secret not in json.dumps(e.to_doc()) for e in events.items)


async def test_run_log_keeps_the_first_64_kib(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd, modules=())
    write_module(env["folder"], "1024", '''    def run(self):
        for i in range(20000):
            print(f"log-line-{i:06d}")
        return {h.name: {"ok": True, "rc": 0, "stdout": "done"} for h in self.hosts}''')
    await bastion.services.registry.refresh()
    resp = await env["user"].post("/api/modules/1024/runs", {"host_ids": env["hosts"][:1], "params": {}})
    run = await wait_run(env["user"], resp.json["run_id"])
    assert run["status"] == "ok", run
    printed = "".join(f"log-line-{i:06d}\n" for i in range(20000))
    assert len(printed) > 3 * 65536
    assert run["log"] == printed[:65536]


async def test_ansible_private_dir_is_0700_and_removed(bastion: BastionApp, hosts_sshd) -> None:
    env = await setup(bastion, hosts_sshd, modules=("1003",))
    user = env["user"]
    first = await user.post("/api/modules/1003/runs", {"host_ids": env["hosts"][:1], "params": {}})
    await wait_run(user, first.json["run_id"])  # pins the host key ansible checks against
    # the module notes the private directory (and its mode) that self.ansible() creates, and runs a real command
    write_module(env["folder"], "1025", '''    platform = "ansible"

    def run(self):
        import os
        import tempfile
        made = []
        real = tempfile.mkdtemp

        def spy(*args, **kwargs):
            path = real(*args, **kwargs)
            if os.path.basename(path).startswith("bastion-ansible-"):
                made.append((path, oct(os.stat(path).st_mode & 0o777), sorted(os.listdir(path))))
            return path
        tempfile.mkdtemp = spy
        try:
            results = self.ansible("ansible.builtin.command", {"argv": ["true"]})
        finally:
            tempfile.mkdtemp = real
        import json
        return {h: {**r, "stdout": json.dumps(made)} for h, r in results.items()}''', timeout=120)
    await bastion.services.registry.refresh()
    resp = await user.post("/api/modules/1025/runs", {"host_ids": env["hosts"][:1], "params": {}})
    run = await wait_run(user, resp.json["run_id"], timeout=120)
    assert run["status"] == "ok", (run.get("error"), run["results"])
    made = json.loads(run["results"]["node0"]["stdout"])
    assert len(made) == 1, made
    path, mode, _ = made[0]
    assert mode == "0o700"
    assert not Path(path).exists(), f"{path} (inventory, keys, known_hosts) was left behind"
