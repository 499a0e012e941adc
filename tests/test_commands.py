"""Command extraction against a real bash on a real sshd, the command filter, verification and retention."""
from __future__ import annotations

import asyncio
import os
import re
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
    # exact, including the space tab completion appends after a file name (bash keeps it)
    history = [line for line in hist.read_text().splitlines() if line]
    extracted = await commands_of(bastion, term.session_id)
    assert extracted[0].startswith("export HISTFILE=")
    assert extracted[1:] == history, (extracted, history)
    assert history[:4] == ["echo abxy", "echo hello world", "echo after-ctrl-u", "echo one three"]
    assert history[4] == f"ls {files}/uniquefilename123.txt "
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
    await bastion.settle()  # commands and their audit events reach the store through the journal
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
    ({"name": "r", "pattern": "x", "action": "drop"}, "action must be deny, warn or review"),
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


# ---- the filter decides on what will run (the host's file system is the judge) ---------------------------
PASTE = "\x1b[200~{}\x1b[201~"


async def _deny_rm(admin) -> None:
    rule = await admin.post("/api/command-rules", {"name": "no-rm-rf", "kind": "regex", "pattern": r"^rm\s+-rf",
                                                   "action": "deny"})
    assert rule.status == 201, rule


async def _settled(term: TerminalClient) -> None:
    """Everything sent before has been read and run by the shell: a sentinel comes back."""
    mark = len(term.output)
    await term.send("echo SENT''INEL\r")
    await term.expect("SENTINEL", start=mark)


def _refusals(term: TerminalClient) -> list[str]:
    return [c["message"] for c in term.controls if c["type"] == "notice" and c.get("level") == "error"]


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll predicate until it holds (no fixed sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.02)
    return value


async def _blocked(app: BastionApp, session_id: str) -> list[str]:
    """The refused commands stored for the session (stored in the background: polled)."""
    deadline = time.monotonic() + 10
    while True:
        found = [c.text for c in await app.services.store.commands_of_session(session_id) if c.blocked]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("bracketed", [True, False], ids=["bracketed-paste", "typed-lines"])
async def test_denied_line_of_a_paste_and_what_follows_never_run(bastion: BastionApp, sshd, tmp_path: Path,
                                                                 bracketed: bool) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    await _deny_rm(admin)
    keep = tmp_path / "keep"
    keep.mkdir()
    before, after = tmp_path / "before", tmp_path / "after"
    lines = f"touch {before}\rrm -rf {keep}\rtouch {after}\r"
    await term.send(PASTE.format(lines) + "\r" if bracketed else lines)
    await _settled(term)
    assert keep.is_dir() and not after.exists()
    # a bracketed paste is checked as a whole before any of it reaches the host: nothing of it runs;
    # typed (unbracketed) lines run up to the refused one
    assert before.exists() is (not bracketed)
    assert any(f"rm -rf {keep}" in m for m in _refusals(term)), term.controls
    assert f"rm -rf {keep}" in await _blocked(bastion, term.session_id)
    assert "rm -rf" not in hist.read_text()
    term.close()


async def test_paste_ending_in_a_denied_fragment_is_refused(bastion: BastionApp, sshd, tmp_path: Path) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    await _deny_rm(admin)
    keep = tmp_path / "keep"
    keep.mkdir()
    first = tmp_path / "first"
    await term.send(PASTE.format(f"touch {first}\rrm -rf {keep}"))
    await term.send("\r")
    await _settled(term)
    assert keep.is_dir() and not first.exists()
    assert any("rm -rf" in m for m in _refusals(term))
    term.close()


@pytest.mark.parametrize("steps", [
    ["r\\\r", "m -rf {keep}\r"],                                        # backslash continuation
    ["rm -rf \\\r", "{keep}\r"],
    ["for i in 1\r", "do\r", "rm -rf {keep}\r", "done\r"],              # PS2 construct
    ["if true; then\r", "rm -rf {keep}; fi\r"],
], ids=["split-word", "split-args", "for-loop", "if-then"])
async def test_continuations_are_checked_as_bash_will_run_them(bastion: BastionApp, sshd, tmp_path: Path,
                                                                steps: list[str]) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    await _deny_rm(admin)
    keep = tmp_path / "keep"
    keep.mkdir()
    for step in steps:
        mark = len(term.output)
        await term.send(step.replace("{keep}", str(keep)))
        # the shell reads its next line (PS1 or PS2), or the line was refused (then the rest is not sent)
        await wait_until(lambda: _refusals(term) or b"\x1b[?2004h" in term.output[mark:], what="next prompt")
        if _refusals(term):
            break
    await _settled(term)
    assert keep.is_dir()
    assert any("rm -rf" in m for m in _refusals(term)), term.controls
    assert any("rm -rf" in b for b in await _blocked(bastion, term.session_id))
    term.close()


@pytest.mark.parametrize("cancel", ["\x03", "\x15"], ids=["ctrl-c", "ctrl-u"])
async def test_cancelled_line_never_reaches_the_filter_again(bastion: BastionApp, sshd, tmp_path: Path,
                                                             cancel: str) -> None:
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    await _deny_rm(admin)
    keep = tmp_path / "keep"
    keep.mkdir()
    await term.send(f"rm -rf {keep}")
    await term.expect(str(keep))
    await term.send(cancel)
    await term.send("echo harm''less\r")
    await term.expect("harmless")
    await _settled(term)
    assert keep.is_dir()
    assert _refusals(term) == []
    async def stored_all():
        cmds = await bastion.services.store.commands_of_session(term.session_id)
        return cmds if cmds and cmds[-1].text == "echo SENT''INEL" else None
    stored = None
    deadline = time.monotonic() + 10
    while stored is None and time.monotonic() < deadline:
        stored = await stored_all()
        await asyncio.sleep(0.02)
    assert stored is not None
    assert [c.text for c in stored][1:] == ["echo harm''less", "echo SENT''INEL"]
    assert not any(c.blocked for c in stored)
    term.close()


@pytest.mark.parametrize("then", ["\r", "xrm -rf {keep}\r"], ids=["enter", "next-line"])
@pytest.mark.parametrize("opener", ["", "if true; then\r"], ids=["ps1", "ps2"])
async def test_interrupted_line_never_runs(bastion: BastionApp, sshd, tmp_path: Path, opener: str,
                                           then: str) -> None:
    """Ctrl-C landing while readline is busy: bash (5.2) may re-arm readline with its SIGINT still pending and
    the old line in its buffer; the next key is then swallowed and the old line (less its first character),
    or the next line less its first character, runs unchecked. The race is probabilistic, hence the rounds."""
    admin, user, ids, term, hist = await shell(bastion, sshd, tmp_path)
    await _deny_rm(admin)
    keeps = [tmp_path / f"keep{i}" for i in range(16)]
    for keep in keeps:
        keep.mkdir()
        if opener:
            mark = len(term.output)
            await term.send(opener)
            await wait_until(lambda: b"\x1b[?2004h" in term.output[mark:], what="continuation prompt")
        mark = len(term.output)
        await term.send(f"xrm -rf {keep} ")  # allowed as typed; `rm -rf …` once bash drops the x
        await term.send("\x03")  # lands while readline is still echoing the line: the racy case
        sent = len(term.output)
        await term.send(then.replace("{keep}", str(keep)))
        # the shell accepted a line after the Ctrl-C and is idle at its prompt again (not racing the next round)
        await wait_until(lambda: b"\r\n\x1b[?2004l\r" in term.output[sent:] and term.output.endswith(b"# "),
                         what="next prompt")
    await _settled(term)
    assert all(keep.is_dir() for keep in keeps), ([k.name for k in keeps if not k.is_dir()], term.output[-6000:])
    assert not re.search(r"(?<![\w-])rm -rf", hist.read_text()), hist.read_text()  # bash's own record
    term.close()


# ---- the gate's models in isolation (the table in test_extraction.py checks them against bash) ------------
from bastion.gate import HistoryExpansionFailed, LineModel, expand_history, tokenize  # noqa: E402
from bastion.shellsyntax import analyze, join  # noqa: E402


def _joined(lines: list[str]) -> tuple[str, bool]:
    entry, done = "", []
    for line in lines:
        entry = join(entry, analyze(done), line) if done else line
        done.append(line)
    return entry, analyze(done).complete


@pytest.mark.parametrize("lines, entry, complete", [
    (["echo a \\", "b"], "echo a b", True),
    (["r\\", "m -rf x"], "rm -rf x", True),
    (["for i in 1 2", "do", "echo $i", "done"], "for i in 1 2; do echo $i; done", True),
    (["cat <<EOF", "hi", "EOF"], "cat <<EOF\nhi\nEOF\n", True),
    (["echo 'a", "b'"], "echo 'a\nb'", True),
    (["ls |", "wc -l"], "ls | wc -l", True),
    (["f() {", "echo x", "}"], "f() { echo x; }", True),
    (["for i in 1 2"], "for i in 1 2", False),
    (["cat <<EOF", "still open"], "cat <<EOF\nstill open\n", False),
    (["echo done; echo fi"], "echo done; echo fi", True),
    (["echo 'unclosed"], "echo 'unclosed", False),
    (["echo $(date", ")"], "echo $(date\n)", True),
])
def test_continuations_join_like_bash(lines: list[str], entry: str, complete: bool) -> None:
    assert _joined(lines) == (entry, complete)


@pytest.mark.parametrize("line, history, expanded", [
    ("!!", ["echo one"], "echo one"),
    ("echo !$", ["echo x y"], "echo y"),
    ("echo !^ !*", ["cmd a b"], "echo a a b"),
    ("!-2", ["first", "second"], "first"),
    ("!ec", ["echo a", "ls"], "echo a"),
    ("^one^two", ["echo one"], "echo two"),
    ("echo '!!'", ["x"], "echo '!!'"),          # no expansion inside single quotes
    ("echo \\!!", ["x"], "echo \\!!"),          # nor after a backslash
    ("echo hi!", ["x"], "echo hi!"),             # ! at the end stays
    ("echo a != b", ["x"], "echo a != b"),       # ! before a blank or = stays
])
def test_history_expansion(line: str, history: list[str], expanded: str) -> None:
    assert expand_history(line, history) == expanded


@pytest.mark.parametrize("line, history", [("!nomatch", ["echo a"]), ("!-5", ["a"]), ("^zz^y", ["echo a"])])
def test_history_expansion_failures(line: str, history: list[str]) -> None:
    with pytest.raises(HistoryExpansionFailed):
        expand_history(line, history)


@pytest.mark.parametrize("keys, text, opaque", [
    ("echo abcd\x7f\x7fxy", "echo abxy", False),
    ("echo one two\x17three", "echo one three", False),
    ("echo keep drop" + "\x1b[D" * 5 + "\x0b", "echo keep", False),
    ("cho\x01e", "echo", False),
    ("echo aaa bbb\x1bb\x1bbX\x1bfY", "echo XaaaY bbb", False),
    ("echo foo-bar\x1b\x7fbaz", "echo foo-baz", False),
    ("echo ab\x1b[D\x1b[3~", "echo a", False),
    ("ls /tm\t", "ls /tm", True),                 # completion: only the shell knows
    ("\x1b[A", "", True),                          # history recall
    ("\x12echo", "echo", True),                    # Ctrl-R
])
def test_line_model(keys: str, text: str, opaque: bool) -> None:
    line = LineModel()
    for key in tokenize(keys):
        line.key(key)
    assert (line.text, line.opaque) == (text, opaque)
