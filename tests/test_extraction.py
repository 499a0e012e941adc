"""Logged commands equal bash's own history, scenario by scenario, over Bastion's real terminal WebSocket.

Ground truth is bash on a real sshd: each scenario opens a fresh session, points HISTFILE at a private file
with `PROMPT_COMMAND='history -a'` (HISTCONTROL and HISTIGNORE empty, HISTTIMEFORMAT unset), plays its keys,
then ends with a sentinel command. The commands Bastion stored for the session must equal the history
file entry by entry (multi-line entries such as here-documents span several lines of the file, so the
comparison is on the entries joined by newlines, the file's own format), and the history must hold what
the table says bash logs (so an empty history and an empty log can never agree by accident).

Scenario steps: a str is sent as one input frame; Expect waits for output; Prompt waits for the shell's
next prompt (readline's bracketed-paste marker); Typed sends one frame per key without waiting for echo;
Resize changes the terminal size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_asyncio

from client import TerminalClient
from conftest import BastionApp, make_config, seed_inventory, start_bastion
from waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

UP, LEFT, RIGHT = "\x1b[A", "\x1b[D", "\x1b[C"
HOME, END, DELETE = "\x1b[H", "\x1b[F", "\x1b[3~"
ALT_B, ALT_F, ALT_D, ALT_BS = "\x1bb", "\x1bf", "\x1bd", "\x1b\x7f"
CTRL_C, CTRL_U, CTRL_K, CTRL_W, CTRL_L, CTRL_R = "\x03", "\x15", "\x0b", "\x17", "\x0c", "\x12"
PASTE = "\x1b[200~{}\x1b[201~"
MARKER = "\x1b[?2004h"  # bash's readline switches bracketed paste on as it starts reading a line
ALT_SCREEN = "\x1b[?1049h"


@dataclass
class Expect:
    text: str
    timeout: float = 15.0


@dataclass
class Prompt:
    """Wait for the shell's next prompt."""


@dataclass
class Typed:
    """One frame per key, without waiting for any echo (faster than the echo comes back)."""
    keys: str


@dataclass
class Resize:
    cols: int
    rows: int


@dataclass
class Scenario:
    name: str
    steps: list[Any]
    history: list[str]                 # what bash logs (checked against the history file)
    logged: list[str] | None = None    # what Bastion logs when it must differ from bash's file, with `why`
    why: str = ""
    never: list[str] = field(default_factory=list)  # text that must appear in no logged command
    setup: Callable[[Path], None] | None = None
    early: str = ""  # typed in the same frame as the set-up line, before bash's first prompt


def S(name: str, steps: list[Any], history: list[str], **kw: Any) -> Any:
    return pytest.param(Scenario(name, steps, history, **kw), id=name)


def _files(root: Path) -> None:
    (root / "tabdir").mkdir(exist_ok=True)
    (root / "tabdir" / "uniquefilename123.txt").write_text("x\n")
    (root / "pager.txt").write_text("".join(f"line {i}\n" for i in range(200)))


TWO_LINE_PS1 = r"PS1='[\u@\h \w]\n\$ '"
COLOUR_PS1 = r"PS1='\[\e[1;32m\]\u@\h\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]\$ '"
RUNNING = "echo running''-now; sleep 30"  # prints once it runs, so Ctrl-C reaches `sleep`, not a shell still forking
LONG = "echo " + "abcdefghij" * 30  # 305 characters: wraps at 200 columns

SCENARIOS = [
    # ---- Ctrl-C ---------------------------------------------------------------------------------
    S("ctrl-c-partial-line", ["echo never-run", CTRL_C, Prompt(), "echo ok1\r"], ["echo ok1"], never=["never-run"]),
    S("ctrl-c-partial-then-typed-at-once", ["rm -rf /nonexistent/x" + CTRL_C + "echo ok2\r"], ["echo ok2"],
      never=["rm -rf"]),
    S("ctrl-c-running-command", [RUNNING + "\r", Expect("running-now"), CTRL_C, Prompt(), "echo after-sleep\r"],
      [RUNNING, "echo after-sleep"]),
    S("ctrl-c-running-then-typed-at-once", [RUNNING + "\r", Expect("running-now"), CTRL_C + "echo fast-after\r"],
      [RUNNING, "echo fast-after"]),
    S("ctrl-c-at-ps2", ["for i in 1 2\r", Prompt(), CTRL_C, Prompt(), "echo after-ps2\r"],
      ["for i in 1 2", "echo after-ps2"], logged=["echo after-ps2"],
      why="bash keeps the first line of a construct cancelled at PS2 in its history although nothing of it "
          "ran; the log records what ran"),
    # ---- editing keys ------------------------------------------------------------------------------
    S("backspace", ["echo abcd\x7f\x7fxy\r"], ["echo abxy"]),
    S("ctrl-u", ["garbage text" + CTRL_U + "echo after-ctrl-u\r"], ["echo after-ctrl-u"], never=["garbage"]),
    S("ctrl-k", ["echo keep drop" + LEFT * 5 + CTRL_K + "\r"], ["echo keep"]),
    S("ctrl-w", ["echo one two" + CTRL_W + "three\r"], ["echo one three"]),
    S("alt-b-alt-f", ["echo aaa bbb" + ALT_B + ALT_B + "X" + ALT_F + "Y\r"], ["echo XaaaY bbb"]),
    S("alt-d-alt-backspace", ["echo one two" + ALT_B + ALT_D + "three\r", Prompt(), "echo foo-bar" + ALT_BS + "baz\r"],
      ["echo one three", "echo foo-baz"]),
    S("home-end", ["cho hi" + HOME + "e" + END + "gh\r"], ["echo high"]),
    S("ctrl-a-ctrl-e", ["cho a\x01e\x05b\r"], ["echo ab"]),
    S("left-right-insert", ["echo wld" + LEFT * 2 + "or" + RIGHT * 2 + "s\r"], ["echo worlds"]),
    S("delete-key", ["echo abXc" + LEFT * 2 + DELETE + "\r"], ["echo abc"]),
    S("keys-one-frame-each", [Typed("echo slow" + LEFT * 4 + "not-" + END + "ly\r")], ["echo not-slowly"]),
    S("tab-completion", ["ls {root}/tabdir/uniq", Expect("uniq"), "\t", Expect("123.txt"), "\r"],
      ["ls {root}/tabdir/uniquefilename123.txt "], setup=_files),
    S("history-up", ["echo recall''me\r", Prompt(), UP, Expect("recall''me", 5), "\r"],
      ["echo recall''me", "echo recall''me"]),
    S("history-up-then-edit", ["echo base1\r", Prompt(), UP, Expect("base1"), "\x7f2\r"],
      ["echo base1", "echo base2"]),
    S("ctrl-r-search", ["echo searchable1\r", Prompt(), CTRL_R + "searchab", Expect("i-search"), "\r"],
      ["echo searchable1", "echo searchable1"]),
    # ---- before the first prompt, faster than the echo ------------------------------------------------
    S("typed-before-first-prompt", [], ["mkdir -p {root}/early-dir"], early="mkdir -p {root}/early-dir\r"),
    S("three-commands-one-frame", ["echo a1\recho a2\recho a3\r"], ["echo a1", "echo a2", "echo a3"]),
    S("typed-ahead-while-running", ["sleep 0.1\recho typed-ahead\r"], ["sleep 0.1", "echo typed-ahead"]),
    # ---- pastes ------------------------------------------------------------------------------------
    S("bracketed-paste-lines", [PASTE.format("echo p1\recho p2\recho p3\r"), "\r"],
      ["echo p1", "echo p2", "echo p3"]),
    S("bracketed-paste-then-enter", [PASTE.format("echo q1\recho q2"), "\r"], ["echo q1", "echo q2"]),
    S("bracketed-paste-construct", [PASTE.format("for i in 1 2\rdo echo x$i\rdone"), "\r"],
      ["for i in 1 2; do echo x$i; done"]),
    # ---- continuations and PS2 ------------------------------------------------------------------------
    S("backslash-continuation", ["echo a \\\r", Prompt(), "b\r"], ["echo a b"]),
    S("backslash-in-a-word", ["ec\\\r", Prompt(), "ho joined\r"], ["echo joined"]),
    S("for-do-done", ["for i in 1 2\r", Prompt(), "do\r", Prompt(), "echo x$i\r", Prompt(), "done\r"],
      ["for i in 1 2; do echo x$i; done"]),
    S("if-then-fi", ["if true\r", Prompt(), "then echo yes\r", Prompt(), "fi\r"], ["if true; then echo yes; fi"]),
    S("here-document", ["cat <<EOF\r", Prompt(), "hello doc\r", Prompt(), "EOF\r"], ["cat <<EOF\nhello doc\nEOF\n"]),
    S("open-quote", ["echo 'a\r", Prompt(), "b'\r"], ["echo 'a\nb'"]),
    S("pipe-continuation", ["echo piped |\r", Prompt(), "cat\r"], ["echo piped | cat"]),
    S("function-definition", ["f() {\r", Prompt(), "echo in-f\r", Prompt(), "}\r", Prompt(), "f\r"],
      ["f() { echo in-f; }", "f"]),
    # ---- full-screen programs -----------------------------------------------------------------------
    S("vim", ["vim -u NONE -N {root}/v.txt\r", Expect(ALT_SCREEN), "ihello from vim\rsecond\x1b:wq\r",
              Expect("\x1b[?1049l"), Prompt(),
              "echo after-vim\r"], ["vim -u NONE -N {root}/v.txt", "echo after-vim"], never=["hello from vim"]),
    S("less", ["less {root}/pager.txt\r", Expect(ALT_SCREEN), "/line 150\r", Expect("line 150"), "q", Prompt(),
               "echo after-less\r"], ["less {root}/pager.txt", "echo after-less"], setup=_files),
    S("top", ["top\r", Expect("load average"), "q", Prompt(), "echo after-top\r"], ["top", "echo after-top"]),
    S("man", ["man ls\r", Expect(ALT_SCREEN), "q", Prompt(), "echo after-man\r"], ["man ls", "echo after-man"]),
    # ---- passwords ---------------------------------------------------------------------------------
    S("read-s-password", ["read -s -p 'Password: ' pw; echo; echo got-${#pw}\r", Expect("Password: "),
                          "hunter2secret\r", Expect("got-13")],
      ["read -s -p 'Password: ' pw; echo; echo got-${#pw}"], never=["hunter2"]),
    S("getpass-prompt", ["python3 -c 'import getpass; print(\"got\", len(getpass.getpass()))'\r",
                         Expect("Password:"), "s3cret-value\r", Expect("got 12")],
      ["python3 -c 'import getpass; print(\"got\", len(getpass.getpass()))'"], never=["s3cret"]),
    S("read-answer-not-a-command", ["read answer; echo got-$answer\r", Expect("read answer"),
                                    "yes-please\r", Expect("got-yes-please")],
      ["read answer; echo got-$answer"], never=["yes-please"]),
    # ---- width and size -----------------------------------------------------------------------------
    S("wrapping-line", [LONG + "\r"], [LONG]),
    S("wrapping-line-edited-across-the-wrap", [LONG + LEFT * 70 + "XYZ" + "\r"],
      [LONG[:-70] + "XYZ" + LONG[-70:]]),
    S("resize-while-typing", ["echo resi", Expect("resi"), Resize(120, 20), "zed\r"], ["echo resized"]),
    S("resize-then-history-recall", ["echo " + "w" * 150 + "\r", Prompt(), Resize(100, 20), UP, Expect("www"), "\r"],
      ["echo " + "w" * 150, "echo " + "w" * 150]),
    # ---- prompts -----------------------------------------------------------------------------------
    S("coloured-ps1", [COLOUR_PS1 + "\r", Prompt(), "echo colour\r", Prompt(), UP, Expect("colour"), "\r"],
      [COLOUR_PS1, "echo colour", "echo colour"]),
    S("two-line-ps1", [TWO_LINE_PS1 + "\r", Prompt(), "echo two-line\r", Prompt(), UP, Expect("two-line"), "\r"],
      [TWO_LINE_PS1, "echo two-line", "echo two-line"]),
    S("ps1-changed-mid-session", ["echo before\r", Prompt(), "PS1='changed> '\r", Prompt(), "echo after\r"],
      ["echo before", "PS1='changed> '", "echo after"]),
    # ---- shells, screens, history expansion ---------------------------------------------------------------
    S("nested-shell-and-exit", ["bash --norc\r", Expect("bash-"), "echo inner\r", Prompt(), "exit\r", Prompt(),
                                "echo outer\r"],
      ["echo inner", "exit", "bash --norc", "echo outer"],
      logged=["bash --norc", "echo inner", "exit", "echo outer"],
      why="PROMPT_COMMAND's `history -a` runs when a command ends, so the outer shell writes `bash --norc` "
          "to the file after the inner shell's lines; the log keeps the order things ran in"),
    S("clear", ["clear\r", Prompt(), "echo after-clear\r"], ["clear", "echo after-clear"]),
    S("ctrl-l-while-typing", ["echo cl" + CTRL_L, Expect("\x1b[H"), "ear\r"], ["echo clear"]),
    S("bang-bang", ["echo one\r", Prompt(), "!!\r"], ["echo one", "echo one"]),
    S("bang-dollar-and-caret", ["echo x y\r", Prompt(), "echo !$\r", Prompt(), "^y^z\r"],
      ["echo x y", "echo y", "echo z"]),
    S("bang-prefix-and-minus-n", ["echo first\r", Prompt(), "echo second\r", Prompt(), "!-2\r", Prompt(), "!echo s\r"],
      ["echo first", "echo second", "echo first", "echo first s"]),
    S("leading-and-trailing-blanks", ["  echo spaced  \r"], ["  echo spaced  "]),
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, sshd) -> AsyncIterator[dict[str, Any]]:
    """One bastion for the whole table, a host on the shared sshd, and a user granted to it."""
    app = await start_bastion(make_config(tmp_path_factory.mktemp("extraction")))
    try:
        admin = await app.admin()
        ids = await seed_inventory(app, admin, address=sshd.address, port=sshd.port, username=sshd.username,
                                   private_key=sshd.client_key)
        user = await app.user("alice")
        uid = (await app.services.store.get_user_by_name("alice")).id
        assert (await admin.post("/api/grants", {"user_id": uid, "host_id": ids["host_id"]})).status == 201
        yield {"app": app, "user": user, "admin": admin, "host_id": ids["host_id"]}
    finally:
        await app.stop()


class Shell:
    """A terminal socket to the host, set up for history comparison."""

    def __init__(self, app: BastionApp, term: TerminalClient, hist: Path) -> None:
        self.app, self.term, self.hist = app, term, hist
        self.prompt_at = -1
        self.mark = 0  # where the last expected output was found

    @classmethod
    async def open(cls, env: dict[str, Any], root: Path, early: str = "", cols: int = 200, rows: int = 40) -> "Shell":
        app = env["app"]
        term = await TerminalClient.open(env["user"], f"/ws/terminal/{env['host_id']}", cols=cols, rows=rows)
        await term.control("session")
        # the channel is open: type at once, before bash has printed its first prompt
        await wait_until(lambda: getattr(app.services.hub.get(term.session_id), "upstream", None) is not None,
                         10.0, what="SSH channel")
        hist = root / "bash_history"
        await term.send(f"export HISTFILE={hist} HISTCONTROL= HISTIGNORE= PROMPT_COMMAND='history -a'; "
                        f"unset HISTTIMEFORMAT; history -c; cd {root}; echo SET''UP-DONE\r" + early)
        shell = cls(app, term, hist)
        shell.prompt_at = await term.expect("SETUP-DONE")
        return shell

    async def prompt(self) -> None:
        self.prompt_at = await self.term.expect(MARKER, start=max(self.prompt_at + 1, self.mark))

    async def play(self, steps: list[Any], root: Path) -> None:
        await self.prompt()
        for step in steps:
            if isinstance(step, str):
                await self.term.send(_at(step, root))
            elif isinstance(step, Expect):
                self.mark = await self.term.expect(_at(step.text, root), timeout=step.timeout,
                                                   start=max(0, self.prompt_at))
            elif isinstance(step, Prompt):
                await self.prompt()
            elif isinstance(step, Typed):
                for key in _keys_of(step.keys):
                    await self.term.send(key)
            elif isinstance(step, Resize):
                await self.term.resize(step.cols, step.rows)

    async def finish(self) -> tuple[list[str], str]:
        """Run the sentinel, wait for bash's history file and Bastion's log to hold it; return both."""
        await self.term.send("echo END''MARK\r")
        await self.term.expect("ENDMARK")
        await wait_until(lambda: self.hist.exists() and "echo END''MARK\n" in self.hist.read_text(),
                         10.0, what="bash's history file")

        async def logged() -> list[str] | None:
            cmds = await self.app.services.store.commands_of_session(self.term.session_id)
            return cmds if cmds and cmds[-1].text == "echo END''MARK" else None
        commands = await wait_until(logged, 10.0, what="the sentinel in Bastion's log")
        self.term.close()
        return commands, self.hist.read_text()


def _at(text: str, root: Path) -> str:
    """A scenario's text with {root} (the test's own directory) filled in."""
    return text.replace("{root}", str(root))


def _keys_of(text: str) -> list[str]:
    from bastion.gate import tokenize
    return tokenize(text)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_logged_commands_equal_bash_history(env: dict[str, Any], scenario: Scenario,
                                                  tmp_path: Path) -> None:
    root = tmp_path
    if scenario.setup:
        scenario.setup(root)
    shell = await Shell.open(env, root, early=_at(scenario.early, root))
    await shell.play(scenario.steps, root)
    commands, history_text = await shell.finish()
    texts = [c.text for c in commands]
    assert texts[0].startswith("export HISTFILE="), texts
    assert not any(c.blocked for c in commands)
    texts = texts[1:-1]  # without the set-up line and the sentinel
    history_text = history_text[: history_text.rindex("echo END''MARK\n")]
    expected_history = [_at(h, root) for h in scenario.history]
    # bash's history file holds the entries one after another, each ending in a newline
    assert history_text == "".join(e + "\n" for e in expected_history), (history_text, expected_history)
    expected_log = [_at(h, root) for h in (scenario.logged or scenario.history)]
    assert texts == expected_log, scenario.why or (texts, expected_log)
    if scenario.logged is not None:  # the same commands as bash's file, in another order or with one left out
        assert scenario.why
        assert set(texts) <= set(expected_history)
    for secret in scenario.never:
        assert not any(secret in t for t in texts), texts
    for text in texts:
        assert "^C" not in text and "root@" not in text
