"""Command extraction against a real bash on a real sshd, the command filter, verification and retention."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client import TerminalClient
from conftest import BastionApp, granted_host, wait_ended
from waiting import wait_until

UP, LEFT = "\x1b[A", "\x1b[D"
PROMPT = "bt-prompt> "


async def typed(term: TerminalClient, keys: str, until: str, prompt: bool = False) -> None:
    """Send keys and wait until the shell's echo (or the command's output) shows `until` (then the prompt).

    The extractor reads the command from the screen at Enter, so each step waits for what the shell drew,
    the way a person looks at the screen before going on. Command output lines start with "\r" (after bash's
    bracketed-paste switch), which the echo of the typed line never has before the same text.
    """
    mark = len(term.output)
    await term.send(keys)
    pos = await term.expect(until, start=mark)
    if prompt:
        await term.expect(PROMPT, start=pos)


async def shell(app: BastionApp, sshd, tmp_path: Path) -> tuple:
    admin, user, ids = await granted_host(app, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}", cols=160, rows=40)
    await term.control("session")
    hist = tmp_path / "bash_history"
    # a known prompt, so each step can wait for the shell to be back
    await term.send(f"export HISTFILE={hist} HISTCONTROL= HISTIGNORE= PROMPT_COMMAND='history -a' PS1='{PROMPT}'; "
                    f"set -o history; history -c; echo hist''ready\r")
    ready = await term.expect("histready")
    await term.expect(PROMPT, start=ready)
    return admin, user, ids, term, hist


async def commands_of(app: BastionApp, session_id: str) -> list[str]:
    return [c.text for c in await app.services.store.commands_of_session(session_id)]


async def until_stored(app: BastionApp, session_id: str, text: str) -> list[str]:
    """Wait until the session's commands in the store include `text` (they are written off the keystroke path)."""
    async def stored() -> list[str] | None:
        texts = await commands_of(app, session_id)
        return texts if text in texts else None
    return await wait_until(stored, what=f"command {text!r} in the store")


async def test_extracted_commands_equal_bash_history(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    files = tmp_path / "tabdir"
    files.mkdir()
    (files / "uniquefilename123.txt").write_text("x")
    full = f"{files}/uniquefilename123.txt"
    await typed(term, "echo abcd", "abcd")
    await typed(term, "\x7f\x7fxy\r", "\rabxy\r\n", True)                   # backspace
    await typed(term, "echo world", "world")
    await typed(term, LEFT * 5 + "hello " + "\r", "\rhello world\r\n", True)  # ← then insert
    await typed(term, "garbage text", "text")
    await typed(term, "\x15echo after-ctrl-u\r", "\rafter-ctrl-u\r\n", True)  # Ctrl-U
    await typed(term, "echo one two", "two")
    await typed(term, "\x17three\r", "\rone three\r\n", True)                 # Ctrl-W
    await typed(term, f"ls {files}/uniquef", "uniquef")
    await typed(term, "\t", "ilename123.txt")                                   # tab completion of a real file
    await typed(term, "\r", PROMPT)
    await typed(term, UP, "uniquefilename123.txt")                              # ↑ recall
    await typed(term, "\r", PROMPT)
    await typed(term, "\x12hello", "o'")                                        # Ctrl-R
    await typed(term, "\r", "\rhello world\r\n", True)
    await typed(term, "echo p1\recho p2\recho p3\r", "\rp3\r\n", True)      # pasted three lines
    await typed(term, "echo fin''al\r", "final")
    await until_stored(bastion, term.session_id, "echo fin''al")
    await wait_until(lambda: "echo fin''al" in hist.read_text(), what="bash writing its history")
    assert full in hist.read_text()
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
    await typed(term, f"vim -u NONE -N {target}\r", "\x1b[?1049h")           # vim is on the alternate screen
    await typed(term, "ihello from vim\rsecond line\r", "second line")
    await typed(term, "\x1b:wq\r", "\x1b[?1049l")                            # and has left it
    await typed(term, "echo back''home\r", "backhome")
    await until_stored(bastion, term.session_id, "echo back''home")
    # the second \r opened an empty third line before Esc; vim writes every line with its newline
    assert target.read_text() == "hello from vim\nsecond line\n\n"
    extracted = await commands_of(bastion, term.session_id)
    assert extracted[1:] == [f"vim -u NONE -N {target}", "echo back''home"]
    term.close()


async def test_password_prompt_not_extracted(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    await typed(term, "read -s -p 'Password: ' pw; echo; echo got-${#pw}\r", "\rPassword: ")
    await typed(term, "hunter2secret\r", "got-13")
    await typed(term, "echo af''ter\r", "after")
    extracted = await until_stored(bastion, term.session_id, "echo af''ter")
    assert extracted[1:] == ["read -s -p 'Password: ' pw; echo; echo got-${#pw}", "echo af''ter"]
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
    mark = len(term.output)
    await term.send(f"touch {marker}\r")
    notice = await wait_until(lambda: [c for c in term.controls if c["type"] == "notice" and c.get("level") == "error"],
                              what="an error notice")
    assert "blocked by policy (no-markers)" in notice[0]["message"]
    await term.expect(PROMPT, start=mark)  # the refused line was cleared and the prompt redrawn
    await typed(term, "whoami\r", f"\r{sshd.username}\r\n", True)
    await typed(term, "echo still''usable\r", "stillusable")
    await until_stored(bastion, term.session_id, "echo still''usable")
    assert not marker.exists()
    frames = await wait_until(lambda: [c for c in mon.controls if c["type"] == "command"], what="a command frame")
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


@pytest.mark.parametrize("body, status, fragment", [
    ({"name": "r", "pattern": "x", "action": "drop"}, 400, "action must be deny or warn"),
    ({"name": "r", "pattern": "x", "kind": "glob"}, 400, "kind must be regex or words"),
    ({"name": "r", "pattern": "x", "scope": "role", "scope_value": "root"}, 400, "scope_value must be a role"),
    ({"name": "r", "pattern": "x", "scope": "host", "scope_value": "nope"}, 404, "host not found"),
    ({"name": "r", "pattern": "", "kind": "words"}, 400, "pattern must be at least 1"),
    ({"name": "r", "pattern": "a" * 1001}, 400, "at most 1000"),
])
async def test_rule_validation(bastion: BastionApp, body: dict, status: int, fragment: str) -> None:
    admin = await bastion.admin()
    resp = await admin.post("/api/command-rules", body)
    assert resp.status == status, resp
    assert fragment in resp.json["error"], resp
    assert await bastion.services.store.list_rules() == []
