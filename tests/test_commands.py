"""Command extraction against a real bash on a real sshd, the command filter, verification and retention."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import TerminalClient
from conftest import BastionApp
from test_terminal import granted_host, wait_ended

UP, LEFT = "\x1b[A", "\x1b[D"


async def typed(term: TerminalClient, keys: str, pause: float = 0.15) -> None:
    """Send keys and give the shell a moment to echo (people type slower than this)."""
    await term.send(keys)
    await asyncio.sleep(pause)


async def shell(app: BastionApp, sshd, tmp_path: Path) -> tuple:
    admin, user, ids = await granted_host(app, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}", cols=160, rows=40)
    await term.control("session")
    hist = tmp_path / "bash_history"
    await term.send(f"export HISTFILE={hist} HISTCONTROL= HISTIGNORE= PROMPT_COMMAND='history -a'; set -o history; "
                    f"history -c; echo hist''ready\r")
    await term.expect("histready")
    await asyncio.sleep(0.3)
    return admin, user, ids, term, hist


async def commands_of(app: BastionApp, session_id: str) -> list[str]:
    return [c.text for c in await app.services.store.commands_of_session(session_id)]


async def test_extracted_commands_equal_bash_history(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    files = tmp_path / "tabdir"
    files.mkdir()
    (files / "uniquefilename123.txt").write_text("x")
    await typed(term, "echo abcd")
    await typed(term, "\x7f\x7fxy\r")                                  # backspace
    await typed(term, "echo world")
    await typed(term, LEFT * 5 + "hello " + "\r")                     # ← then insert
    await typed(term, "garbage text")
    await typed(term, "\x15echo after-ctrl-u\r")                      # Ctrl-U
    await typed(term, "echo one two")
    await typed(term, "\x17three\r")                                  # Ctrl-W
    await typed(term, f"ls {files}/uniquef")
    await typed(term, "\t", pause=0.4)                                 # tab completion of a real file
    await typed(term, "\r")
    await typed(term, UP, pause=0.3)                                   # ↑ recall
    await typed(term, "\r")
    await typed(term, "\x12hello", pause=0.3)                          # Ctrl-R
    await typed(term, "\r")
    await typed(term, "echo p1\recho p2\recho p3\r", pause=1.0)        # pasted three lines
    await term.send("echo fin''al\r")
    await term.expect("final")
    await asyncio.sleep(0.5)
    # bash keeps the space tab completion appends after a file name; the screen cannot show trailing blanks
    history = [line.rstrip() for line in hist.read_text().splitlines() if line.strip()]
    extracted = await commands_of(bastion, term.session_id)
    assert extracted[0].startswith("export HISTFILE=")
    assert extracted[1:] == history, (extracted, history)
    assert history[:4] == ["echo abxy", "echo hello world", "echo after-ctrl-u", "echo one three"]
    assert history[4] == f"ls {files}/uniquefilename123.txt"
    assert history[5] == history[4] and history[6] == "echo hello world"
    assert history[7:10] == ["echo p1", "echo p2", "echo p3"]
    term.close()


async def test_no_commands_inside_vim(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    target = tmp_path / "edited.txt"
    await typed(term, f"vim -u NONE -N {target}\r", pause=1.0)
    await typed(term, "ihello from vim\rsecond line\r", pause=0.3)
    await typed(term, "\x1b:wq\r", pause=1.0)
    await term.send("echo back''home\r")
    await term.expect("backhome")
    await asyncio.sleep(0.3)
    assert target.read_text() == "hello from vim\nsecond line\n\n" or target.read_text().startswith("hello from vim")
    extracted = await commands_of(bastion, term.session_id)
    assert extracted[1:] == [f"vim -u NONE -N {target}", "echo back''home"]
    term.close()


async def test_password_prompt_not_extracted(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    await typed(term, "read -s -p 'Password: ' pw; echo; echo got-${#pw}\r", pause=0.5)
    await typed(term, "hunter2secret\r", pause=0.5)
    await term.expect("got-13")
    extracted = await commands_of(bastion, term.session_id)
    assert not any("hunter2" in c for c in extracted)
    term.close()


async def test_denied_command_never_runs(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    bad = await admin.post("/api/command-rules", {"name": "broken", "pattern": "(["})
    assert bad.status == 400 and "not a valid regular expression" in bad.json["error"]
    rule = await admin.post("/api/command-rules", {"name": "no-markers", "kind": "regex", "pattern": r"touch\s+\S*marker",
                                                   "action": "deny"})
    assert rule.status == 201, rule
    warn = await admin.post("/api/command-rules", {"name": "watch-ids", "kind": "words", "pattern": "whoami",
                                                   "action": "warn"})
    assert warn.status == 201
    mon = await TerminalClient.open(admin, f"/ws/monitor/{term.session_id}")
    await mon.control("resize")
    marker = tmp_path / "denied-marker"
    await typed(term, f"touch {marker}\r", pause=0.5)
    notice = [c for c in term.controls if c["type"] == "notice" and c.get("level") == "error"]
    assert notice and "blocked by policy (no-markers)" in notice[0]["message"]
    await typed(term, "whoami\r", pause=0.5)
    await term.send("echo still''usable\r")
    await term.expect("stillusable")
    await asyncio.sleep(0.5)
    assert not marker.exists()
    frames = [c for c in mon.controls if c["type"] == "command"]
    assert {"command": f"touch {marker}", "blocked": True} == {k: frames[0][k] for k in ("command", "blocked")}
    stored = await bastion.services.store.commands_of_session(term.session_id)
    blocked = [c for c in stored if c.blocked]
    assert [c.text for c in blocked] == [f"touch {marker}"] and blocked[0].rule == "no-markers"
    assert [c.flagged for c in stored if c.text == "whoami"] == [True]
    search = await admin.get("/api/commands/search", params={"blocked": "1"})
    assert [h["text"] for h in search.json["items"]] == [f"touch {marker}"]
    hits = await admin.get("/api/commands/search", params={"q": "STILL''USABLE"})
    assert hits.json["total"] == 1
    assert (await bastion.services.store.list_events(action="command.blocked")).total == 1
    assert "touch" not in hist.read_text()
    term.close()


def _cli(app: BastionApp, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BASTION_SERVER_DATA_DIR": str(app.config.data_dir),
           "BASTION_DATABASE_URL": app.config.database.url, "BASTION_TERMINAL_RECORDS_DIR": str(app.config.records_dir)}
    return subprocess.run([sys.executable, "-m", "bastion", *args], env=env, capture_output=True, text=True, timeout=60)


async def test_verify_detects_a_flipped_byte(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    await term.send("for i in 1 2 3; do echo line-$i; sleep 0.2; done\r")
    await term.expect("line-3")
    term.close()
    record = await wait_ended(bastion, term.session_id)
    ok = _cli(bastion, "verify", record.id)
    assert ok.returncode == 0 and "verified" in ok.stdout, ok
    assert (await admin.get(f"/api/sessions/{record.id}/verify")).json["ok"] is True
    listing = _cli(bastion, "play", record.id, "--commands")
    assert "for i in 1 2 3" in listing.stdout
    data = bytearray(Path(record.recording_path).read_bytes())
    lines = data.split(b"\n")
    target = next(i for i, line in enumerate(lines) if b"line-2" in line)
    offset = sum(len(line) + 1 for line in lines[:target]) + lines[target].index(b"line-2") + 5
    data[offset] ^= 0x01  # "line-2" → "line-3"
    Path(record.recording_path).write_bytes(bytes(data))
    bad = _cli(bastion, "verify", record.id)
    assert bad.returncode == 1 and f"line {target + 1} does not match" in bad.stdout, bad.stdout
    api = (await admin.get(f"/api/sessions/{record.id}/verify")).json
    assert api["ok"] is False and api["first_bad_line"] == target + 1


async def test_retention_purge(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, user, ids = await granted_host(bastion, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await term.control("session")
    term.close()
    record = await wait_ended(bastion, term.session_id)
    record.started_at = time.time() - 40 * 86400
    await bastion.services.store.save(record)
    dry = _cli(bastion, "purge", "--days", "30", "--dry-run")
    assert dry.returncode == 0 and f"would delete {record.id}" in dry.stdout
    assert Path(record.recording_path).exists()
    done = _cli(bastion, "purge", "--days", "30")
    assert done.returncode == 0 and f"deleted {record.id}" in done.stdout
    assert not Path(record.recording_path).exists()
    after = await bastion.services.store.get_session(record.id)
    assert after.purged is True and after.username == "alice"
    assert (await bastion.services.store.list_events(action="recording.purged")).total == 1
    assert (await admin.get(f"/api/sessions/{record.id}/recording")).status == 404


@pytest.mark.parametrize("body, fragment", [
    ({"name": "r", "pattern": "x", "action": "drop"}, "action must be deny or warn"),
    ({"name": "r", "pattern": "x", "kind": "glob"}, "kind must be regex or words"),
    ({"name": "r", "pattern": "x", "scope": "role", "scope_value": "root"}, "scope_value must be a role"),
    ({"name": "r", "pattern": "x", "scope": "host", "scope_value": "nope"}, "host not found"),
    ({"name": "r", "pattern": "", "kind": "words"}, "pattern must not be empty"),
    ({"name": "r", "pattern": "a" * 1001}, "at most 1000"),
])
async def test_rule_validation(bastion: BastionApp, body: dict, fragment: str) -> None:
    admin = await bastion.admin()
    resp = await admin.post("/api/command-rules", body)
    assert resp.status in (400, 404) and fragment in resp.json["error"], resp
    assert await bastion.services.store.list_rules() == []
