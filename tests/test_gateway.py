"""SSH gateway: the real OpenSSH client (ssh, scp, sftp, sshpass) → Bastion's gateway → a real sshd.

Ground truth comes from outside the code under test: the host's file system (markers a command would leave,
files transferred, compared by SHA-256), the ssh client's own exit status and streams, and the store.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import BastionApp, granted_host, wait_ended
from client import Client
from gateway_client import GatewayClient, PtySSH, keygen, run
from sshd import SSHServer
from waiting import wait_until

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client missing")


@dataclass
class Setup:
    app: BastionApp
    admin: Client
    alice: Client
    ids: dict[str, Any]
    ssh: GatewayClient
    tmp: Path
    uid: str


async def gateway_setup(make_bastion: Any, sshd: SSHServer, tmp_path: Path, *, upload: bool = False,
                        download: bool = False, **overrides: Any) -> Setup:
    """A bastion with its gateway on, web1 on the sshd granted to alice, alice's key registered on her account."""
    app = await make_bastion(gateway_listen="127.0.0.1:0", **overrides)
    admin = await app.admin()
    from scenario import seed_sshd
    ids = await seed_sshd(admin, sshd, "web1")
    alice = await app.user("alice")
    uid = (await app.services.store.get_user_by_name("alice")).id
    resp = await admin.post("/api/grants", {"user_id": uid, "host_id": ids["host_id"], "upload": upload,
                                            "download": download})
    assert resp.status == 201, resp
    key = tmp_path / "alice_key"
    public = keygen(key)
    resp = await alice.post("/api/me/ssh-keys", {"name": "laptop", "public_key": public})
    assert resp.status == 201, resp
    info = (await alice.get("/api/gateway")).json
    assert info["enabled"] and info["fingerprint"].startswith("SHA256:")
    ssh = GatewayClient.make(tmp_path / "ssh", info["port"], info["public_key"], key)
    return Setup(app, admin, alice, ids, ssh, tmp_path, uid)


async def sessions_of(app: BastionApp, via: str) -> list[Any]:
    page = await app.services.store.list_sessions(limit=50)
    return [s for s in page.items if s.via == via]


# ---- keys and logins -----------------------------------------------------------------------------------
async def test_exec_with_a_registered_key_passes_status_stdout_stderr(make_bastion: Any, sshd: SSHServer,
                                                                      tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    marker = tmp_path / "ran-marker"
    status, out, err = await s.ssh.ssh("alice@web1", f"echo to-stdout; echo to-stderr >&2; touch {marker}; exit 3")
    assert status == 3, err
    assert out == b"to-stdout\n"
    assert b"to-stderr" in err
    assert marker.exists()  # the host ran it (the sshd runs as this user on this machine)
    await s.app.settle()
    [record] = await sessions_of(s.app, "exec")
    assert not record.live and record.command.startswith("echo to-stdout") and record.username == "alice"
    commands = await s.app.services.store.commands_of_session(record.id)
    assert [c.text for c in commands] == [f"echo to-stdout; echo to-stderr >&2; touch {marker}; exit 3"]
    assert not commands[0].blocked
    cast = Path(record.recording_path).read_text()
    assert "to-stdout" in cast and "to-stderr" in cast  # recorded
    events = (await s.admin.get("/api/events", params={"action": "gateway.login"})).json["items"]
    assert events and events[0]["actor"] == "alice" and events[0]["detail"]["method"] == "publickey"
    keys = (await s.alice.get("/api/me/ssh-keys")).json["items"]
    assert keys[0]["last_used_at"] > 0


async def test_denied_exec_never_reaches_the_host(make_bastion: Any, sshd: SSHServer, tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    resp = await s.admin.post("/api/command-rules", {"name": "no touch", "kind": "regex", "pattern": r"\btouch\b",
                                                     "action": "deny"})
    assert resp.status == 201, resp
    marker = tmp_path / "must-not-exist"
    status, out, err = await s.ssh.ssh("alice@web1", f"touch {marker}")
    assert status != 0
    assert b"refused by the command filter" in err and b"no touch" in err
    assert not marker.exists()
    await s.app.settle()
    [record] = await sessions_of(s.app, "exec")
    commands = await s.app.services.store.commands_of_session(record.id)
    assert [(c.text, c.blocked, c.rule) for c in commands] == [(f"touch {marker}", True, "no touch")]


async def test_unregistered_key_and_unknown_host_are_refused(make_bastion: Any, sshd: SSHServer,
                                                             tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    other = tmp_path / "other_key"
    keygen(other)
    stranger = GatewayClient.make(tmp_path / "ssh2", s.ssh.port, s.app.services.gateway.public_key, other)
    status, _, err = await stranger.ssh("alice@web1", "true")
    assert status == 255 and b"Permission denied" in err
    status, _, err = await s.ssh.ssh("alice@nosuchhost", "true")
    assert status == 1 and b"host not found" in err


async def test_password_and_totp_through_keyboard_interactive(make_bastion: Any, sshd: SSHServer,
                                                              tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    if shutil.which("sshpass") is None:
        pytest.fail("sshpass is not installed (scripts/system-deps.sh installs it)")
    pw = GatewayClient.make(tmp_path / "pw", s.ssh.port, s.app.services.gateway.public_key, None)
    env = {**os.environ, "SSHPASS": "user-password-1"}
    status, out, err = await run(["sshpass", "-e", *pw.ssh_args("alice@web1", "echo via-password")], env=env)
    assert status == 0 and out == b"via-password\n", err
    env_bad = {**os.environ, "SSHPASS": "wrong-password-1"}
    status, out, _ = await run(["sshpass", "-e", *pw.ssh_args("alice@web1", "echo nope")], env=env_bad)
    assert status != 0 and out == b""
    # with TOTP enrolled, the password alone is not enough: a second prompt asks for the code
    user = await s.app.services.store.get_user_by_name("alice")
    secret, _ = await s.app.services.auth.begin_totp(user)
    user = await s.app.services.store.get_user_by_name("alice")
    await s.app.services.auth.confirm_totp(user, s.app.services.auth.totp_code(secret))
    user = await s.app.services.store.get_user_by_name("alice")
    user.totp_last_step = 0
    await s.app.services.store.save(user)
    term = await PtySSH(["ssh", *pw.options(), "-p", str(pw.port), "-tt", "alice@web1@127.0.0.1",
                         "echo via-totp"]).start()
    try:
        await term.expect("Password:")
        term.send("user-password-1\n")
        await term.expect("TOTP code:")
        term.send(s.app.services.auth.totp_code(secret) + "\n")
        await term.expect("via-totp")
        assert await term.wait() == 0
    finally:
        await term.close()
    await s.app.settle()
    events = (await s.admin.get("/api/events", params={"action": "gateway.login"})).json["items"]
    assert any(e["detail"]["method"] == "password+totp" for e in events)


async def test_disabled_user_is_refused_at_login_and_ended_when_live(make_bastion: Any, sshd: SSHServer,
                                                                     tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    term = await PtySSH(s.ssh.ssh_args("alice@web1", tty=True)).start()
    try:
        session = await wait_until(lambda: [x for x in s.app.services.hub.live() if x.record.via == "ssh"], 15)
        await term.prompt()
        term.send("echo gw-$((6*7))\r")
        await term.expect("gw-42")
        resp = await s.admin.request("PATCH", f"/api/users/{s.uid}", {"disabled": True})
        assert resp.status == 200, resp
        record = await wait_ended(s.app, session[0].id)
        assert record.end_reason == "revoked"
        assert await term.wait() != 0
        await term.expect("access to this host was withdrawn")
    finally:
        await term.close()
    status, _, err = await s.ssh.ssh("alice@web1", "true")
    assert status == 255
    events = (await s.admin.get("/api/events", params={"action": "gateway.login_refused"})).json["items"]
    assert events and events[0]["detail"]["why"] == "this account is disabled"


# ---- the menu, direct login, kick ---------------------------------------------------------------------
async def test_menu_through_a_pty_lists_searches_and_connects(make_bastion: Any, sshd: SSHServer,
                                                              tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    from scenario import seed_sshd
    more = await seed_sshd(s.admin, sshd, "db1", category="databases")
    await s.admin.post("/api/grants", {"user_id": s.uid, "host_id": more["host_id"]})
    term = await PtySSH(s.ssh.ssh_args("alice", tty=True)).start()
    try:
        await term.expect("host> ")
        text = term.output.decode()
        assert "[databases]" in text and "[cat-web1]" in text
        assert "1) web1" in text and "2) db1" in text  # by category, then name
        term.send("web\r")
        await term.expect("matching 'web'")
        after = term.output.decode().split("matching 'web'")[1]
        assert "web1" in after and "db1" not in after
        term.send("1\r")
        await term.expect("connecting to web1")
        await wait_until(lambda: [x for x in s.app.services.hub.live() if x.record.via == "ssh"], 15)
        term.send("echo menu-$((40+2))\r")
        await term.expect("menu-42")
        term.send("exit\r")
        assert await term.wait() == 0
    finally:
        await term.close()
    await s.app.settle()
    [record] = await sessions_of(s.app, "ssh")
    assert record.host_name == "web1" and not record.live
    commands = await s.app.services.store.commands_of_session(record.id)
    assert "echo menu-$((40+2))" in [c.text for c in commands]
    assert "menu-42" in Path(record.recording_path).read_text()


async def test_kick_ends_a_gateway_session_with_the_reason(make_bastion: Any, sshd: SSHServer,
                                                           tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    term = await PtySSH(s.ssh.ssh_args("alice@web1", tty=True)).start()
    try:
        [session] = await wait_until(lambda: [x for x in s.app.services.hub.live() if x.record.via == "ssh"], 15)
        await term.prompt()
        term.send("echo before-kick\r")
        await term.expect("before-kick")
        resp = await s.admin.post(f"/api/sessions/{session.id}/kill", {"reason": "policy check"})
        assert resp.status == 200, resp
        assert await term.wait() != 0
        await term.expect("ended by admin: policy check")
    finally:
        await term.close()
    record = await wait_ended(s.app, session.id)
    assert record.end_reason == "kicked" and record.ended_by == "admin"


async def test_proxyjump_is_refused_and_audited_when_turned_off(make_bastion: Any, sshd: SSHServer,
                                                                 tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path, gateway_proxy_jump="false")
    args = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
            "-o", f"ProxyCommand=ssh {' '.join(s.ssh.options())} -p {s.ssh.port} -W %h:%p alice@127.0.0.1",
            "-p", str(sshd.port), f"{sshd.username}@{sshd.address}", "touch", str(tmp_path / "jumped")]
    status, _, err = await run(args)  # what `ssh -J alice@bastion:PORT host` does under the hood
    assert status == 255
    assert b"does not forward connections" in err, err
    assert not (tmp_path / "jumped").exists()
    await s.app.settle()  # the refusal is journaled (never awaited on the connection's path)
    events = (await s.admin.get("/api/events", params={"action": "gateway.forward_refused"})).json["items"]
    assert events and events[0]["actor"] == "alice" and events[0]["target"] == f"{sshd.address}:{sshd.port}"
    assert (await s.alice.get("/api/gateway")).json["cert_authority"] == ""


async def test_proxyjump_ends_at_the_gateway_and_is_recorded(make_bastion: Any, sshd: SSHServer,
                                                             tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    info = (await s.alice.get("/api/gateway")).json
    assert info["cert_authority"].startswith("@cert-authority * ssh-ed25519 ")
    known = tmp_path / "known_jump"
    known.write_text(info["cert_authority"] + "\n")  # the one documented line: trust the gateway's CA
    config = tmp_path / "ssh_config"
    config.write_text(f"""Host gw
  HostName 127.0.0.1
  Port {s.ssh.port}
  User alice
  IdentityFile {s.ssh.identity}
  IdentitiesOnly yes
  UserKnownHostsFile {s.ssh.known_hosts}
  StrictHostKeyChecking yes
  BatchMode yes
Host web1
  ProxyJump gw
  UserKnownHostsFile {known}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
""")
    marker = tmp_path / "jumped"
    status, out, err = await run(["ssh", "-F", str(config), "web1", f"echo via-jump; touch {marker}"])
    assert status == 0, err
    assert out == b"via-jump\n" and marker.exists()
    await s.app.settle()
    [record] = await sessions_of(s.app, "exec")
    assert record.host_name == "web1" and record.username == "alice"
    assert "via-jump" in Path(record.recording_path).read_text()
    commands = await s.app.services.store.commands_of_session(record.id)
    assert [c.text for c in commands] == [f"echo via-jump; touch {marker}"]
    events = (await s.admin.get("/api/events", params={"action": "gateway.jump"})).json["items"]
    assert events and events[0]["actor"] == "alice" and events[0]["target"] == "web1:22"
    # a jump to a host that is not granted gets no session
    status, _, err = await run(["ssh", "-F", str(config), "-o", "ProxyJump=gw", "-o", f"UserKnownHostsFile={known}",
                                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "db9", "true"])
    assert status == 1 and b"host not found" in err, err


# ---- file transfer ------------------------------------------------------------------------------------
def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_scp_and_sftp_both_ways_checked_by_hash(make_bastion: Any, sshd: SSHServer, tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path, upload=True, download=True)
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    remote = tmp_path / "remote-dir"
    remote.mkdir()
    # scp (OpenSSH ≥ 9 speaks sftp underneath) up, then down
    status, _, err = await run(s.ssh.scp_args(str(local), f"alice@web1@127.0.0.1:{remote}/up.bin"))
    assert status == 0, err
    assert sha(remote / "up.bin") == sha(local)
    status, _, err = await run(s.ssh.scp_args(f"alice@web1@127.0.0.1:{remote}/up.bin", str(tmp_path / "down.bin")))
    assert status == 0, err
    assert sha(tmp_path / "down.bin") == sha(local)
    # sftp batch: put and get
    batch = f"put {local} {remote}/put.bin\nget {remote}/put.bin {tmp_path}/got.bin\nls {remote}\n".encode()
    status, out, err = await run(s.ssh.sftp_args("alice@web1"), stdin=batch)
    assert status == 0, err
    assert sha(remote / "put.bin") == sha(local) and sha(tmp_path / "got.bin") == sha(local)
    await s.app.settle()
    events = (await s.admin.get("/api/events", params={"action": "gateway.transfer", "limit": 50})).json["items"]
    seen = {(e["detail"]["direction"], e["detail"]["path"], e["detail"]["size"], e["detail"]["sha256"]) for e in events}
    for direction, path in (("upload", f"{remote}/up.bin"), ("download", f"{remote}/up.bin"),
                            ("upload", f"{remote}/put.bin"), ("download", f"{remote}/put.bin")):
        assert (direction, path, local.stat().st_size, sha(local)) in seen, (direction, path, seen)
    records = await sessions_of(s.app, "sftp")
    assert len(records) == 3 and all(not r.live for r in records)
    assert any("upload" in Path(r.recording_path).read_text() for r in records)


async def test_transfers_refused_without_permission_never_touch_the_host(make_bastion: Any, sshd: SSHServer,
                                                                          tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path, download=True)  # download only
    local = tmp_path / "local.txt"
    local.write_text("upload me\n")
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "there.txt").write_text("download me\n")
    status, _, err = await run(s.ssh.scp_args(str(local), f"alice@web1@127.0.0.1:{remote}/up.txt"))
    assert status != 0
    assert not (remote / "up.txt").exists()
    status, _, err = await run(s.ssh.scp_args(f"alice@web1@127.0.0.1:{remote}/there.txt", str(tmp_path / "d.txt")))
    assert status == 0, err
    assert (tmp_path / "d.txt").read_text() == "download me\n"
    status, _, _ = await run(s.ssh.sftp_args("alice@web1"), stdin=f"rm {remote}/there.txt\n".encode())
    assert status != 0 and (remote / "there.txt").exists()
    # the legacy scp protocol (an exec of `scp -t`) is held to the same permission
    status, _, err = await run(["scp", "-O", *s.ssh.scp_args(str(local), f"alice@web1@127.0.0.1:{remote}/legacy.txt")[1:]])
    assert status != 0 and not (remote / "legacy.txt").exists()
    assert b"upload is not permitted" in err
    # no transfer permission at all: sftp is refused before reaching the host
    grants = (await s.admin.get("/api/grants")).json["items"]
    for g in grants:
        await s.admin.delete(f"/api/grants/{g['id']}")
    await s.admin.post("/api/grants", {"user_id": s.uid, "host_id": s.ids["host_id"]})
    status, _, err = await run(s.ssh.sftp_args("alice@web1"), stdin=f"get {remote}/there.txt {tmp_path}/x\n".encode())
    assert status != 0 and not (tmp_path / "x").exists()
    assert b"not permitted" in err
    await s.app.settle()
    refused = (await s.admin.get("/api/events", params={"action": "gateway.transfer_refused"})).json["items"]
    assert any(e["detail"].get("direction") == "upload" for e in refused)


# ---- validators ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, expected", [
    ("scp -t /tmp/x", ("upload", "/tmp/x")),
    ("scp -r -t -- /tmp/dir", ("upload", "/tmp/dir")),
    ("scp -pf /etc/hosts", ("download", "/etc/hosts")),
    ("/usr/bin/scp -f a", ("download", "a")),
    ("rsync --server -vlogDtpre.iLsfxCIvu . /srv", ("upload", "/srv")),
    ("rsync --server --sender -vlogDtpre.iLsfxCIvu . /srv", ("download", "/srv")),
    ("/usr/lib/openssh/sftp-server", ("sftp", "")),
    ("uptime", None),
    ("echo scp -t x", None),
    ("'unbalanced", None),
    ("", None),
])
def test_transfer_commands_are_recognised(command: str, expected: Any) -> None:
    from bastion.gateway.server import transfer_command
    assert transfer_command(command) == expected


@pytest.mark.parametrize("text, fragment", [
    ("", "paste one public key line"),
    ("ssh-ed25519 AAAA\nssh-ed25519 BBBB", "paste one public key line"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "looks like a private key"),
    ("ssh-ed25519 not-base64!", "not a readable SSH public key"),
    ("hello world", "not a readable SSH public key"),
    ("x" * 20000, "paste one public key line"),
])
def test_bad_public_keys_are_refused_in_words(text: str, fragment: str) -> None:
    from bastion.errors import Invalid
    from bastion.gateway.keys import parse_public_key
    with pytest.raises(Invalid) as info:
        parse_public_key(text)
    assert fragment in info.value.message


async def test_a_key_belongs_to_one_account(make_bastion: Any, sshd: SSHServer, tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    bob = await s.app.user("bob")
    public = Path(str(tmp_path / "alice_key") + ".pub").read_text()
    resp = await bob.post("/api/me/ssh-keys", {"name": "stolen", "public_key": public})
    assert resp.status == 409 and "already registered" in resp.json["error"]
    [key] = (await s.alice.get("/api/me/ssh-keys")).json["items"]
    assert (await bob.delete(f"/api/me/ssh-keys/{key['id']}")).status == 404  # not bob's
    status, _, _ = await s.ssh.ssh("bob@web1", "true")  # alice's key does not log in as bob
    assert status == 255
    assert (await s.alice.delete(f"/api/me/ssh-keys/{key['id']}")).status == 200
    status, _, _ = await s.ssh.ssh("alice@web1", "true")  # removed: refused
    assert status == 255


async def test_auditor_watches_and_replays_a_gateway_session(make_bastion: Any, sshd: SSHServer,
                                                             tmp_path: Path) -> None:
    from client import TerminalClient
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    term = await PtySSH(s.ssh.ssh_args("alice@web1", tty=True)).start()
    try:
        [session] = await wait_until(lambda: [x for x in s.app.services.hub.live() if x.record.via == "ssh"], 15)
        await term.prompt()
        listed = (await s.admin.get("/api/sessions", params={"live": "1"})).json["items"]
        assert [(x["id"], x["via"]) for x in listed] == [(session.id, "ssh")]
        monitor = await TerminalClient.open(s.admin, f"/ws/monitor/{session.id}")
        try:
            term.send("echo watched-$((20+3))\r")
            await term.expect("watched-23")
            await monitor.expect("watched-23")
        finally:
            monitor.close()
        term.send("exit\r")
        assert await term.wait() == 0
    finally:
        await term.close()
    record = await wait_ended(s.app, session.id)
    resp = await s.admin.get(f"/api/sessions/{session.id}/recording")
    assert resp.status == 200 and b"watched-23" in resp.body
    verify = (await s.admin.get(f"/api/sessions/{session.id}/verify")).json
    assert verify["ok"] is True, verify
    assert record.end_reason == "exit"


def test_transfer_digest_follows_offsets_and_admits_when_it_cannot() -> None:
    from bastion.gateway.sftp import Transfer
    data = os.urandom(100_000)
    chunks = [(o, data[o:o + 32768]) for o in range(0, len(data), 32768)]
    shuffled = Transfer("download", "/f")
    for offset, chunk in [chunks[1], chunks[0], chunks[3], chunks[2]]:  # replies out of order
        shuffled.feed(offset, chunk)
    assert shuffled.size == len(data) and shuffled.sha256 == hashlib.sha256(data).hexdigest()
    rewritten = Transfer("upload", "/f")
    for offset, chunk in chunks + [chunks[0]]:  # a block written twice: the size holds, no digest is claimed
        rewritten.feed(offset, chunk)
    assert rewritten.size == len(data) and rewritten.sha256 == ""
    holey = Transfer("upload", "/f")
    holey.feed(chunks[1][0], chunks[1][1])  # never got the first block
    assert holey.sha256 == ""


async def test_account_page_shows_keys_and_the_gateway_host_key(make_bastion: Any, sshd: SSHServer,
                                                                tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path)
    page = (await s.alice.get("/account")).body.decode()
    info = (await s.alice.get("/api/gateway")).json
    assert info["fingerprint"] in page and info["cert_authority"] in page
    [key] = (await s.alice.get("/api/me/ssh-keys")).json["items"]
    assert key["fingerprint"] in page and "laptop" in page


async def test_lockout_and_login_rules_apply_to_gateway_logins(make_bastion: Any, sshd: SSHServer,
                                                               tmp_path: Path) -> None:
    s = await gateway_setup(make_bastion, sshd, tmp_path, auth_lockout_threshold="2")
    if shutil.which("sshpass") is None:
        pytest.fail("sshpass is not installed (scripts/system-deps.sh installs it)")
    pw = GatewayClient.make(tmp_path / "pw", s.ssh.port, s.app.services.gateway.public_key, None)
    ssh_pw = lambda password: run(["sshpass", "-e", *pw.ssh_args("alice@web1", "echo in")],  # noqa: E731
                                  env={**os.environ, "SSHPASS": password})
    for _ in range(2):
        status, out, _ = await ssh_pw("wrong-password-1")
        assert status != 0 and out == b""
    status, out, err = await ssh_pw("user-password-1")  # right password, locked account
    assert status != 0 and out == b"" and b"locked after repeated failed logins" in err
    status, out, err = await s.ssh.ssh("alice@web1", "echo in")  # a key does not get around the lock
    assert status == 255 and out == b"" and b"locked" in err
    await s.app.services.auth.clear_lock("user:alice", actor="test")
    await s.app.services.auth.clear_lock("ip:127.0.0.1", actor="test")
    status, out, _ = await s.ssh.ssh("alice@web1", "echo in")
    assert status == 0 and out == b"in\n"
    resp = await s.admin.post("/api/login-rules", {"name": "nobody from here", "action": "deny",
                                                   "networks": ["127.0.0.0/8"]})
    assert resp.status == 201, resp
    status, out, err = await s.ssh.ssh("alice@web1", "echo in")
    assert status == 255 and out == b"" and b"not allowed for your account" in err
