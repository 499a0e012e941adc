"""The command gate: between the user's keystrokes and the upstream shell, it extracts commands and applies
the command filter before a command can run. Protocol-agnostic: it sees input text, output bytes and a size.

How it knows where a command starts and what it is, without waiting for output to go quiet:
- *Where the shell reads a command.* bash (5.1+) with readline switches bracketed paste on
  (`ESC [?2004h`) each time it starts reading a line and off (`ESC [?2004l`) when the line is accepted. The
  gate scans output for these markers (O(len), no emulator) and for the alternate screen (vim, less, top).
  Between a forwarded Enter and the next marker a command is running: what is typed then is input to that
  program (a `read -s` answer, `cat > file`), unless the shell's next prompt arrives before its Enter
  goes through (type-ahead), which is held for a short bounded time to tell which.
- *What the line is.* Keystrokes are applied to a model of readline's line buffer (insert, ←/→,
  Home/End, Ctrl-A/E/B/F/U/K/W/D/H, Alt-B/F/D/Backspace, Delete, bracketed paste), so the command is known
  the moment Enter is pressed: Enter goes through at once. Only a line that used keys whose effect lives in
  the shell (Tab completion, ↑/↓ history, Ctrl-R, yank, undo) is read back from the screen, and only then
  does Enter wait, bounded, for the echo of keys still in flight.
- *What bash logs.* Continuation lines (backslash, PS2 constructs, here-documents) are joined as bash's
  history joins them (`shellsyntax`), and history expansion (`!!`, `!$`, `!-2`, `!str`, `^a^b`) is applied.
- *The filter decides first.* Every physical line and the logical command so far are checked before the
  Enter that could run them reaches the host; the lines of a multi-line paste are all checked before the
  first one goes; a denied line is erased (and an open construct cancelled), and whatever followed it in
  the same input is dropped. A cancelled line (Ctrl-C, Ctrl-U) is gone from the model, so it never
  reaches the filter again.
Hosts without the markers (old bash, other shells) fall back to treating every Enter outside the
alternate screen as a command, with the screen's password-prompt check.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import pyte

from .commands import MAX_COMMAND, PASSWORD_PROMPT, SEARCH_PROMPT, ScreenTracker, TerminalScreen, Verdict
from .errors import BastionError
from .shellsyntax import Analysis, analyze, join

log = logging.getLogger(__name__)

RL_ON = b"\x1b[?2004h"
RL_OFF = b"\x1b[?2004l"
ALT_ON = (b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h")
ALT_OFF = (b"\x1b[?1049l", b"\x1b[?1047l", b"\x1b[?47l")
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
KILL_LINE = "\x05\x15"  # end of line, then erase it: the shell never sees the line
MAX_SINCE_PROMPT = 64 * 1024
INTERRUPT_TAIL = 4096  # output kept after a Ctrl-C: enough to see how bash came back to a prompt
MAX_NUDGES = 2  # extra Ctrl-C sent to a bash that re-armed readline with its SIGINT still pending
ENTER = "\r"

# keys whose effect on the line the model follows (readline's emacs defaults and Debian's inputrc)
_MOVES = {"\x01": "home", "\x1b[H": "home", "\x1bOH": "home", "\x1b[1~": "home", "\x1b[7~": "home",
          "\x05": "end", "\x1b[F": "end", "\x1bOF": "end", "\x1b[4~": "end", "\x1b[8~": "end",
          "\x02": "left", "\x1b[D": "left", "\x1bOD": "left", "\x06": "right", "\x1b[C": "right", "\x1bOC": "right",
          "\x1bb": "word_left", "\x1bf": "word_right", "\x1b[1;5D": "word_left", "\x1b[1;5C": "word_right",
          "\x1b[1;3D": "word_left", "\x1b[1;3C": "word_right",
          "\x7f": "backspace", "\x08": "backspace", "\x04": "delete", "\x1b[3~": "delete",
          "\x15": "kill_start", "\x0b": "kill_end", "\x17": "rubout_word", "\x1b\x7f": "kill_word_left",
          "\x1b\x08": "kill_word_left", "\x1bd": "kill_word_right", "\x0c": "none", "\x1b[2~": "opaque"}
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|O.|.)?", re.S)


def tokenize(text: str) -> list[str]:
    """Split input into keys: one character, or one escape sequence."""
    keys: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == "\x1b":
            m = _ESCAPE.match(text, i)
            end = m.end() if m else i + 1
            keys.append(text[i:end])
            i = end
        else:
            keys.append(text[i])
            i += 1
    return keys


def _is_word(c: str) -> bool:
    return c.isalnum()


@dataclass
class LineModel:
    """readline's line buffer as far as keystrokes decide it."""

    text: str = ""
    point: int = 0
    opaque: bool = False   # a key whose effect the model cannot know was used: read the line from the screen
    used: bool = False     # any key reached this line
    ahead: bool = False    # keys were typed while a program ran: it may have read some of them

    def reset(self) -> None:
        self.text, self.point, self.opaque, self.used, self.ahead = "", 0, False, False, False

    def insert(self, s: str) -> None:
        self.used = True
        self.text = self.text[:self.point] + s + self.text[self.point:]
        self.point += len(s)

    def key(self, k: str) -> None:
        """Apply one key (not Enter, not Ctrl-C)."""
        self.used = True
        action = _MOVES.get(k)
        t, p = self.text, self.point
        if action is None:
            if len(k) == 1 and k >= " " and k != "\x7f":
                self.insert(k)
            else:
                self.opaque = True
            return
        if action == "home":
            self.point = 0
        elif action == "end":
            self.point = len(t)
        elif action == "left":
            self.point = max(0, p - 1)
        elif action == "right":
            self.point = min(len(t), p + 1)
        elif action == "word_left":
            self.point = self._word_start(p)
        elif action == "word_right":
            self.point = self._word_end(p)
        elif action == "backspace":
            if p:
                self.text, self.point = t[:p - 1] + t[p:], p - 1
        elif action == "delete":
            self.text = t[:p] + t[p + 1:]
        elif action == "kill_start":
            self.text, self.point = t[p:], 0
        elif action == "kill_end":
            self.text = t[:p]
        elif action == "rubout_word":  # unix-word-rubout: back to whitespace
            q = p
            while q and t[q - 1] in " \t":
                q -= 1
            while q and t[q - 1] not in " \t":
                q -= 1
            self.text, self.point = t[:q] + t[p:], q
        elif action == "kill_word_left":
            q = self._word_start(p)
            self.text, self.point = t[:q] + t[p:], q
        elif action == "kill_word_right":
            q = self._word_end(p)
            self.text = t[:p] + t[q:]
        elif action == "opaque":
            self.opaque = True

    def _word_start(self, p: int) -> int:
        t = self.text
        while p and not _is_word(t[p - 1]):
            p -= 1
        while p and _is_word(t[p - 1]):
            p -= 1
        return p

    def _word_end(self, p: int) -> int:
        t, n = self.text, len(self.text)
        while p < n and not _is_word(t[p]):
            p += 1
        while p < n and _is_word(t[p]):
            p += 1
        return p


@dataclass
class _Construct:
    """A command spanning several lines (continuations, PS2): raw lines and the history entry so far."""

    lines: list[str] = field(default_factory=list)
    entry: str = ""
    analysis: Analysis = field(default_factory=Analysis)

    @property
    def open(self) -> bool:
        return bool(self.lines)

    def with_line(self, line: str) -> tuple[str, Analysis]:
        """The history entry and the analysis if `line` is read next."""
        if not self.lines:
            return line, (_SIMPLE if _simple(line) else analyze([line]))
        return join(self.entry, self.analysis, line), analyze(self.lines + [line])

    def add(self, line: str, entry: str, analysis: Analysis) -> None:
        self.entry, self.analysis = entry, analysis
        self.lines.append(line)

    def copy(self) -> "_Construct":
        return _Construct(self.lines[:], self.entry, self.analysis)  # an Analysis is never changed in place

    def clear(self) -> None:
        self.lines, self.entry, self.analysis = [], "", Analysis()


_SIMPLE = Analysis()
_SPECIAL = re.compile(r"['\"\\`<|&({#]|\b(?:if|for|while|until|select|case|function)\b")


def _simple(line: str) -> bool:
    """A line that is a complete command on its own and needs no parsing (most lines typed)."""
    return _SPECIAL.search(line) is None


class HistoryExpansionFailed(Exception):
    """bash would print `event not found` and run nothing."""


def expand_history(line: str, history: list[str]) -> str:
    """bash's default history expansion for the common designators; unknown forms are left as typed."""
    if not history:
        if "!" in line or line.startswith("^"):
            return line
    if line.startswith("^"):
        parts = line[1:].split("^")
        if len(parts) >= 2 and parts[0]:
            if not history or parts[0] not in history[-1]:
                raise HistoryExpansionFailed
            return history[-1].replace(parts[0], parts[1], 1) + ("^".join(parts[2:]) if len(parts) > 2 else "")
        return line
    if "!" not in line:
        return line
    out: list[str] = []
    i, n = 0, len(line)
    single = double = False
    while i < n:
        c = line[i]
        if c == "\\" and not single and i + 1 < n:
            out.append(line[i:i + 2])
            i += 2
            continue
        if c == "'" and not double:
            single = not single
        elif c == '"':
            double = not double
        if c != "!" or single or i + 1 >= n or line[i + 1] in " \t\n=(" or (double and line[i + 1] == '"'):
            out.append(c)
            i += 1
            continue
        nxt = line[i + 1]
        event: str | None = None
        length = 2
        if nxt == "!":
            event = _event(history, -1)
        elif nxt in "$^*":
            words = _words(_event(history, -1))
            event = (words[-1] if nxt == "$" else words[1] if nxt == "^" and len(words) > 1
                     else " ".join(words[1:]) if nxt == "*" else "")
            if nxt == "^" and len(words) < 2:
                raise HistoryExpansionFailed
        elif nxt == "-" and i + 2 < n and line[i + 2].isdigit():
            m = re.match(r"-(\d+)", line[i + 1:])
            assert m is not None
            event = _event(history, -int(m.group(1)))
            length = 1 + m.end()
        elif nxt.isalpha() or nxt in "./_-":
            m = re.match(r"[^\s;&|<>()'\"!:]+", line[i + 1:])
            assert m is not None
            prefix = m.group(0)
            event = next((h for h in reversed(history) if h.startswith(prefix)), None)
            if event is None:
                raise HistoryExpansionFailed
            length = 1 + m.end()
        else:
            out.append(c)
            i += 1
            continue
        if line.startswith(":", i + length):  # word designators and modifiers: not modelled
            raise ValueError("unsupported history designator")
        out.append(event)
        i += length
    return "".join(out)


def _event(history: list[str], index: int) -> str:
    if not history or -index > len(history):
        raise HistoryExpansionFailed
    return history[index]


def _words(line: str) -> list[str]:
    words, current, quote = [], "", ""
    for c in line:
        if quote:
            current += c
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
            current += c
        elif c in " \t":
            if current:
                words.append(current)
            current = ""
        else:
            current += c
    if current:
        words.append(current)
    return words or [""]


class CommandGate:
    """Sits between the user's keystrokes and the upstream shell: extracts commands, applies the filter."""

    def __init__(self, cols: int, rows: int, *, write: Callable[[bytes], None],
                 check: Callable[[str], Awaitable[Verdict]], on_command: Callable[[str, Verdict], None],
                 notice: Callable[[str, str], None], typeahead_wait: float = 0.3, first_prompt_wait: float = 5.0,
                 echo_wait: float = 0.25) -> None:
        self._write_bytes = write
        self._check = check
        self._on_command = on_command
        self._notice = notice
        self.typeahead_wait = typeahead_wait
        self.first_prompt_wait = first_prompt_wait
        self.echo_wait = echo_wait
        self._screen = ScreenTracker(cols, rows)
        self.cols, self.rows = cols, rows
        self.alternate = False
        self.at_prompt = False        # the shell's readline is reading a line (marker seen, Enter not yet sent)
        self.markers_seen = False     # the host's shell shows the readline markers at all
        self.line = LineModel()
        self.construct = _Construct()
        self.history: list[str] = []  # what bash's history holds from this session (for `!!`)
        self._since_prompt = bytearray()  # output since the last marker, while at a prompt (opaque lines)
        self._prompt_bytes: bytes | None = None
        self._output_seq = 0
        self._seq_at_write = 0
        self._seq_at_line_start = 0
        self._in_paste = False
        self._drop_paste = False
        self._first_wait_done = False
        self._paste_open = False  # the host has seen a paste's start but not yet its end
        self._interrupted: float | None = None  # when Ctrl-C was sent, until the shell prompts again
        self._interrupt_wait = typeahead_wait  # how long a prompt may take to come back after that Ctrl-C
        self._since_interrupt: bytearray | None = None  # output since that Ctrl-C (its tail)
        self._changed = asyncio.Event()

    # ---- output (hot path) ------------------------------------------------------------------------
    @property
    def screen(self) -> ScreenTracker:
        """The session's terminal emulator (lazily fed; watcher snapshots)."""
        return self._screen

    def observe(self, data: bytes) -> None:
        """Every upstream output chunk: queue it for the emulator and scan for mode switches (O(len))."""
        self._screen.feed(data)
        self._output_seq += 1
        start = 0
        if b"\x1b" in data and b"\x1b[?" in data:  # one byte is a memchr: a plain-text flood is scanned at memory speed
            on, off = data.rfind(RL_ON), data.rfind(RL_OFF)
            if on > off:
                self.at_prompt = True
                self.markers_seen = True
                self._since_prompt = bytearray()
                self._prompt_bytes = None
                start = on + len(RL_ON)
            elif off > on:
                self.at_prompt = False
            last_on = max(data.rfind(seq) for seq in ALT_ON)
            last_off = max(data.rfind(seq) for seq in ALT_OFF)
            if last_on > last_off:
                self.alternate = True
            elif last_off > last_on:
                self.alternate = False
        if self.at_prompt and len(self._since_prompt) < MAX_SINCE_PROMPT:
            self._since_prompt += data[start:start + MAX_SINCE_PROMPT]
        if self._since_interrupt is not None:  # only between a Ctrl-C and the next fresh prompt
            self._since_interrupt += data[-INTERRUPT_TAIL:]
            if len(self._since_interrupt) > 2 * INTERRUPT_TAIL:
                del self._since_interrupt[:-INTERRUPT_TAIL]
        self._changed.set()

    def resize(self, cols: int, rows: int) -> None:
        """The terminal's size changed."""
        self.cols, self.rows = cols, rows
        self._screen.resize(cols, rows)
        self._screen.screen.ensure_vbounds()  # pyte leaves the cursor below a screen that shrank
        self._screen.screen.ensure_hbounds()

    # ---- input -------------------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        self._seq_at_write = self._output_seq
        self._write_bytes(text.encode("utf-8", "surrogatepass"))

    def feed_now(self, data: str) -> bool:
        """The common cases, decided without waiting: a full-screen program's input, or one printable key typed
        at a prompt. True when the input was handled; False when it needs feed()."""
        if self.alternate:
            self._write(data)
            return True
        if (len(data) == 1 and " " <= data < "\x7f" and self.at_prompt and self._interrupted is None
                and not self._in_paste):
            self._note_prompt()
            self._start_line()
            self.line.insert(data)
            self._write(data)
            return True
        return False

    async def feed(self, data: str) -> None:
        """User input (called one at a time): forward what may pass, decide each Enter."""
        if self.feed_now(data):
            return
        keys = self._keys(data)
        refused = False
        if self.at_prompt or not self.markers_seen:
            keys, refused = await self._precheck(keys)
        pending: list[str] = []  # keys to forward in one write
        for key in keys:
            if self._interrupted is not None and key != "\x03":
                # bash drops keys that race its SIGINT handling (`echo` after Ctrl-C runs as `cho`): hold what
                # follows a Ctrl-C until the shell prompts again (bounded: a program may ignore Ctrl-C)
                if pending:
                    self._write("".join(pending))
                    pending = []
                if not await self._after_interrupt():
                    return
            if isinstance(key, Pasted):
                self._note_prompt()
                self._start_line()
                self.line.insert(key.text)
                pending.append(key.wire)
                self._paste_open = key.opens if key.opens is not None else self._paste_open
                continue
            if self.alternate:  # a full-screen program started while this input was being handled
                pending.append(key)
                continue
            if key == ENTER:
                if pending:
                    self._write("".join(pending))
                    pending = []
                if not await self._enter():
                    return  # refused: the rest of this input never reaches the host
                continue
            if key == "\x03":
                self.line.reset()
                self.construct.clear()
                pending.append(key)
                # at a prompt the shell answers for sure (and racing it is what loses keys): wait for it as long
                # as for a first prompt; a running program may ignore Ctrl-C: then what follows is its input
                self._interrupt(self.first_prompt_wait if self.at_prompt else self.typeahead_wait)
                continue
            self._note_prompt()
            if not self.at_prompt and self.markers_seen:
                self.line.ahead = True
            if key == "\x04" and not self.line.text and self.at_prompt:
                self.construct.clear()  # EOF: the shell (or its PS2 construct) ends
                self.at_prompt = False
            self._start_line()
            self.line.key(key)
            pending.append(key)
        if pending:
            self._write("".join(pending))
        if refused:
            await self._refuse()  # what was typed before the refused line, and any construct it was part of

    def _interrupt(self, wait: float) -> None:
        """A Ctrl-C is on its way: hold what follows until the shell reads a fresh line (at most `wait`)."""
        self.at_prompt = False  # readline starts over: the next marker is a fresh prompt
        self._interrupted = asyncio.get_running_loop().time()
        self._interrupt_wait = wait
        self._since_interrupt = bytearray()

    async def _after_interrupt(self) -> bool:
        """Wait until the shell reads a fresh line after Ctrl-C; False when it does not (the input is dropped).

        bash (5.2) handles SIGINT at a prompt in one of two ways. Usually readline cleans up and bash starts a
        fresh line: `ESC[?2004l CR ESC[?2004h ESC[?2004l CR CR LF ESC[?2004h prompt`. But when the signal
        lands while readline is busy, readline re-arms (`ESC[?2004l CR ESC[?2004h`) with bash's SIGINT still
        pending and the old line still in its buffer: the next key read is then swallowed and the old line
        (less its first character) runs with whatever was typed after it, unchecked. A second Ctrl-C, sent
        while readline waits for input, makes bash act on it; the keys are held until then."""
        started, self._interrupted = self._interrupted, None
        if started is None or self.alternate:
            self._since_interrupt = None
            return True
        loop = asyncio.get_running_loop()
        deadline = started + self._interrupt_wait
        nudges = 0
        while not self.alternate and not self._fresh_prompt():
            if self.at_prompt:  # a marker without a fresh line yet: its prompt is on the way, or bash is stuck
                if await self._wait(lambda: self.alternate or self._fresh_prompt() or not self.at_prompt,
                                    self.typeahead_wait):
                    continue
                if nudges == MAX_NUDGES:
                    self._since_interrupt = None
                    self._notice("error", "the shell did not come back to its prompt after Ctrl-C; "
                                          "the input after it was not sent")
                    return False
                nudges += 1
                log.debug("bash re-armed readline with SIGINT pending: Ctrl-C again")
                self._write("\x03")
                self._interrupt(self.first_prompt_wait)
                self._interrupted = None
                deadline = max(deadline, loop.time() + self.first_prompt_wait)
                continue
            # no marker yet: the prompt is on its way, or a program that ignores Ctrl-C still runs (then what
            # follows is that program's input)
            if not await self._wait(lambda: self.alternate or self.at_prompt, max(0.0, deadline - loop.time())):
                break
        self._since_interrupt = None
        return True

    def _fresh_prompt(self) -> bool:
        """After Ctrl-C: the shell reads a new line (a line feed came before the last marker switched on)."""
        out = self._since_interrupt
        if not self.at_prompt or out is None:
            return self.at_prompt
        on = out.rfind(RL_ON)
        return on >= 0 and b"\n" in out[out.rfind(RL_OFF, 0, on) + 1:on]

    def _prompted(self) -> bool:
        """The shell is reading a line and has shown its prompt. After SIGINT bash 5.2 switches the marker on,
        off and on again (`ESC[?2004h ESC[?2004l CR LF ESC[?2004h prompt`): the first one is not a prompt yet."""
        return self.at_prompt and len(self._since_prompt) > 0

    def _start_line(self) -> None:
        if not self.line.used:
            self._seq_at_line_start = self._output_seq

    def _note_prompt(self) -> None:
        """The first key of a line at a prompt: what came after the marker so far is the prompt."""
        if self.at_prompt and self._prompt_bytes is None:
            self._prompt_bytes = bytes(self._since_prompt)

    def _keys(self, data: str) -> list[Key]:
        """Input as keys; a bracketed paste becomes Pasted pieces (literal text, forwarded as received)."""
        keys: list[Key] = []
        i = 0
        while i < len(data):
            if self._in_paste:
                end = data.find(PASTE_END, i)
                chunk = data[i:] if end < 0 else data[i:end]
                wire = chunk + (PASTE_END if end >= 0 else "")
                if self._drop_paste:  # the rest of a paste whose line was refused
                    if end >= 0:
                        self._drop_paste = False
                        self._in_paste = False
                        i = end + len(PASTE_END)
                        continue
                    break
                keys.append(Pasted(wire=wire, text=re.sub(r"\r\n|\r", "\n", chunk),
                                   opens=False if end >= 0 else None))
                if end < 0:
                    break
                self._in_paste = False
                i = end + len(PASTE_END)
                continue
            start = data.find(PASTE_START, i)
            head = data[i:] if start < 0 else data[i:start]
            keys.extend(ENTER if k == "\n" else k for k in tokenize(head))
            if start < 0:
                break
            self._in_paste = True
            i = start + len(PASTE_START)
            end = data.find(PASTE_END, i)
            chunk = data[i:] if end < 0 else data[i:end]
            keys.append(Pasted(wire=PASTE_START + chunk + (PASTE_END if end >= 0 else ""),
                               text=re.sub(r"\r\n|\r", "\n", chunk), opens=end < 0))
            if end < 0:
                break
            self._in_paste = False
            i = end + len(PASTE_END)
        return keys

    # ---- Enter ---------------------------------------------------------------------------------------
    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until predicate() holds (re-checked on each output chunk), at most timeout seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return True

    async def _enter(self) -> bool:
        """Decide one Enter; False when the line was refused."""
        if not self.at_prompt and not self.alternate:
            if not self.markers_seen and not self._first_wait_done:
                self._first_wait_done = True
                await self._wait(lambda: self.markers_seen or self.alternate, self.first_prompt_wait)
            elif self.markers_seen and (self.line.used or self.construct.open):
                # type-ahead or a program's input? the shell's next prompt tells, if it comes soon
                await self._wait(lambda: self._prompted() or self.alternate, self.typeahead_wait)
        if self.alternate:
            self.line.reset()
            self._write(ENTER)
            return True
        if not self.at_prompt and self.markers_seen:
            return await self._program_input()
        text = await self._line_text()
        self.line.reset()
        if text is None:  # a password prompt (hosts without markers)
            self._write(ENTER)
            return True
        construct, history = self.construct.copy(), list(self.history)
        judged = await self._judge(text.split("\n"), construct, history)
        if judged.refused is not None or judged.unavailable:
            await self._refuse()
            if judged.refused is not None:
                entry, verdict = judged.refused
                self._notice("error", f"command blocked by policy ({verdict.rule}): {entry[:200]}")
                self._on_command(entry, verdict)
            return False
        self._write(ENTER)
        self.at_prompt = False
        if not judged.failed:
            self.construct = construct
        self.history = history[-500:]
        for entry, verdict in judged.decided:
            self._on_command(entry, verdict)
            if verdict.action == "warn":
                self._notice("warn", f"this command is flagged for review ({verdict.rule})")
        return True

    async def _program_input(self) -> bool:
        """Enter for a running program: not a command, not logged; still checked when the program echoed it,
        because a shell reading type-ahead would run it."""
        echoed = self._output_seq != self._seq_at_line_start
        text, opaque = self.line.text, self.line.opaque
        self.line.reset()
        if echoed and text.strip() and not opaque:
            verdict = await self._verdict(text)
            if verdict is None or verdict.action == "deny":
                self._write("\x15")  # the terminal's line-kill: the line never reaches a reader
                if verdict is not None:
                    self._notice("error", f"input refused by policy ({verdict.rule}): {text[:200]}")
                return False
        self._write(ENTER)
        return True

    async def _line_text(self) -> str | None:
        """The line as the shell holds it: from the model, or from the screen after opaque keys."""
        if not self.markers_seen:
            self._screen.catch_up()
            screen = self._screen.screen
            left = self._screen.row(screen.cursor.y)[:screen.cursor.x]
            if PASSWORD_PROMPT.search(left.rstrip() + " ") and not self.line.opaque:
                return None
        if self.line.ahead and not self.line.opaque:
            return await self._typed_ahead()
        if not self.line.opaque:
            return self.line.text
        # keys whose effect only the shell knows: wait (bounded) for their echo, then read the line
        await self._wait(lambda: self._output_seq != self._seq_at_write, self.echo_wait)
        text = self._screen_line()
        return text if text is not None else self.line.text

    async def _typed_ahead(self) -> str:
        """Keys typed while a program ran: the program (top, a pager) may have read the first ones. The shell
        shows what it got after its prompt: the longest end of what was typed that the screen ends with."""
        typed = self.line.text
        probe = typed.rstrip()[-8:].encode("utf-8", "replace")
        await self._wait(lambda: probe in self._since_prompt, self.echo_wait)
        shown = self._render(bytes(self._since_prompt))
        if shown is None:
            return typed
        rows = [row.rstrip() for row in shown.display]
        last = max((y for y, row in enumerate(rows) if row), default=0)
        text = "".join(shown.display[y] for y in range(last + 1)).rstrip()
        stripped = typed.rstrip()
        for start in range(len(stripped) + 1):
            if text.endswith(stripped[start:]) and stripped[start:]:
                return typed[start:]
        return typed

    def _render(self, stream: bytes) -> TerminalScreen | None:
        screen = TerminalScreen(self.cols, max(8, stream.count(b"\n") + 4 + len(stream) // max(1, self.cols)))
        try:
            pyte.ByteStream(screen).feed(stream)
        except Exception:
            log.warning("could not re-render the command line", exc_info=True)
            return None
        return screen

    def _screen_line(self) -> str | None:
        """Re-render the output since the prompt on a private emulator and read the line after the prompt."""
        if not self.markers_seen or len(self._since_prompt) >= MAX_SINCE_PROMPT:
            return None
        stream = bytes(self._since_prompt)
        prompt = self._prompt_bytes or b""
        tail = prompt.rsplit(b"\n", 1)[-1]
        at = stream.rfind(tail) if tail else -1
        if at < 0:
            at, tail = 0, b""
        screen = TerminalScreen(self.cols, max(8, stream.count(b"\n") + 4 + len(stream) // max(1, self.cols)))
        parser = pyte.ByteStream(screen)
        try:
            parser.feed(tail)
            py, px = screen.cursor.y, screen.cursor.x
            parser.feed(stream[at + len(tail):])
        except Exception:
            log.warning("could not re-render the command line", exc_info=True)
            return None
        rows = screen.display
        search = SEARCH_PROMPT.match(rows[screen.cursor.y].strip())
        if search:  # Ctrl-R: bash runs the match shown after the search prompt
            return search.group(1)
        last = max((y for y in range(py, len(rows)) if rows[y].strip()), default=py)
        last = max(last, screen.cursor.y)
        text = rows[py][px:] + "".join(rows[py + 1:last + 1])
        end = len(text.rstrip())
        cursor_index = (screen.cursor.y - py) * self.cols + screen.cursor.x - px
        return text[:max(end, min(cursor_index, len(text)))]

    async def _verdict(self, text: str) -> Verdict | None:
        """The filter's verdict, or None when the rules are unavailable (fail closed, the user is told)."""
        try:
            return await self._check(text)
        except BastionError:
            self._notice("error", "the command filter is unavailable (database not answering); "
                                  "the command was not sent, try again")
            return None

    async def _judge(self, lines: list[str], construct: _Construct, history: list[str]) -> _Judgement:
        """Expand, join and check physical lines in the order bash will read them (updates the copies given)."""
        judged = _Judgement()
        for raw in lines:
            heredoc = construct.analysis.heredoc
            try:
                line = raw if heredoc else expand_history(raw, history)
            except HistoryExpansionFailed:
                judged.failed = True  # bash prints "event not found" and runs nothing of this line
                return judged
            except ValueError:
                line = raw  # a designator the model does not follow: checked and logged as typed
            line = line[:MAX_COMMAND]
            entry, analysis = construct.with_line(line)
            # each physical line on its own (so `^rm` rules see it) and the logical command so far
            candidates = [entry] if not construct.open or heredoc else [line, entry]
            verdict = Verdict("allow")
            for text in candidates:
                if not text.strip():
                    continue
                found = await self._verdict(text)
                if found is None:
                    judged.unavailable = True
                    return judged
                if found.action == "deny":
                    judged.refused = (entry, found)
                    return judged
                if found.action == "warn" or (found.review and verdict.action == "allow"):
                    verdict = found  # a warning, or an approver's decision, is written on the command
            construct.add(line, entry, analysis)
            if analysis.complete:
                construct.clear()
                if entry:
                    history.append(entry)
                    judged.decided.append((entry, verdict))
        return judged

    async def _refuse(self) -> None:
        """Erase the line at the host; an open construct is cancelled so none of it runs."""
        if self._paste_open:  # the host is inside a bracketed paste whose rest is dropped: close it first
            self._write(PASTE_END)
            self._paste_open = False
            self._drop_paste = self._in_paste
        cancel = self.construct.open
        self.construct.clear()
        self.line.reset()
        self._write(KILL_LINE)
        if not cancel:
            return
        # Ctrl-C makes the terminal discard input readline has not read yet, and bash may keep readline's
        # buffer across SIGINT: the erase must have been read (the line shows empty) before Ctrl-C goes
        await self._wait(self._erased, self.echo_wait)
        self._write("\x03")
        # what follows is held until bash reads a fresh line (see _after_interrupt); the shell was at a prompt,
        # so it will answer: wait as long as for a first prompt
        self._interrupt(self.first_prompt_wait)

    def _erased(self) -> bool:
        """The shell's line shows empty after its prompt (or it is not reading a line at all)."""
        return not self.at_prompt or self._screen_line() in ("", None)

    # ---- multi-line input checked before any of it goes ------------------------------------------------
    async def _precheck(self, keys: list[Key]) -> tuple[list[Key], bool]:
        """Check every line of a multi-line input (typed ahead or pasted) before any of it is forwarded;
        cut it before the first refused line (a refused paste is dropped whole)."""
        multi_paste = any(isinstance(k, Pasted) and "\n" in k.text for k in keys)
        if keys.count(ENTER) < 2 and not multi_paste:
            return keys, False
        line, construct, history = copy.copy(self.line), self.construct.copy(), list(self.history)
        line_start = 0  # where the current line's keys begin in `keys`
        for index, key in enumerate(keys):
            if isinstance(key, Pasted):
                line_start = line_start if line.used else index
                line.insert(key.text)
                if "\n" not in key.text:
                    continue
                # the paste's lines as they stand, on copies: the state moves on at the Enter
                judged = await self._judge(line.text.split("\n"), construct.copy(), list(history))
            elif key == "\x03":
                line.reset()
                construct.clear()
                line_start = index + 1
                continue
            elif key != ENTER:
                line_start = line_start if line.used else index
                line.key(key)
                continue
            else:
                if line.opaque:
                    return keys, False  # the rest depends on the shell: each line is checked at its own Enter
                judged = await self._judge(line.text.split("\n"), construct, history)
                line.reset()
            if judged.unavailable:
                return keys[:line_start], True
            if judged.refused is not None:
                entry, verdict = judged.refused
                self._notice("error", f"command blocked by policy ({verdict.rule}): {entry[:200]}; "
                                      "it and the lines after it were not sent")
                self._on_command(entry, verdict)
                if self._in_paste:
                    self._drop_paste = True
                return keys[:line_start], True
            if key == ENTER:
                line_start = index + 1
        return keys, False


@dataclass
class Pasted:
    """A piece of a bracketed paste: forwarded as received, inserted literally into the line."""

    wire: str
    text: str
    opens: bool | None = None  # True: the paste continues in later input; False: it ends here


Key = str | Pasted


@dataclass
class _Judgement:
    decided: list[tuple[str, Verdict]] = field(default_factory=list)
    refused: tuple[str, Verdict] | None = None
    unavailable: bool = False
    failed: bool = False
