"""The session's terminal emulator (pyte) and the command filter.

`ScreenTracker`: pyte fed lazily. Feeding pyte costs CPU on the loop, so output is queued (bounded)
and fed only when the screen is needed (a monitor joins, a snapshot is taken). If more than `max_pending`
bytes arrive between two looks, the oldest are dropped and the emulator is reset before replaying the
rest: a screen is redrawn by far fewer bytes than that.

Commands are extracted and the filter applied by the command gate (`bastion.gate`).

`CommandFilter`: admin rules (regex or words; deny or warn; scope all/category/host/role; priority).
"""
from __future__ import annotations

import asyncio
import codecs
import logging
import re
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable

import pyte

from .errors import Invalid
from .store import CommandRule, Host, User

log = logging.getLogger(__name__)

_SGR_COLORS = {"black": 0, "red": 1, "green": 2, "brown": 3, "yellow": 3, "blue": 4, "magenta": 5, "cyan": 6, "white": 7}


def _color(value: str, base: int) -> str | None:
    if value == "default":
        return None
    if value in _SGR_COLORS:
        return str(base + _SGR_COLORS[value])
    if value.startswith("bright") and value[6:] in _SGR_COLORS:
        return str(base + 60 + _SGR_COLORS[value[6:]])
    if len(value) == 6:
        try:
            r, g, b = int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
        except ValueError:
            return None
        return f"{base + 8};2;{r};{g};{b}"
    return None


class TerminalScreen(pyte.Screen):
    """pyte 0.8.2 raises on private SGR (xterm's modifyOtherKeys `CSI > 4 ; 2 m`, sent by vim): ignore it."""

    def select_graphic_rendition(self, *attrs: int, private: bool = False, **_: object) -> None:
        if not private:
            super().select_graphic_rendition(*attrs)


class ScreenTracker:
    """A pyte screen with a bounded, lazily fed input queue."""

    # pyte parses about 1 MB/s: 32 KiB (more than a full-screen repaint) bounds a catch-up to ~35 ms
    def __init__(self, cols: int, rows: int, max_pending: int = 32 * 1024) -> None:
        self.screen = TerminalScreen(cols, rows)
        self.stream = pyte.Stream(self.screen)
        self.max_pending = max_pending
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._reset = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> None:
        """Queue output (hot path: O(1))."""
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > self.max_pending + self.max_pending // 2:  # amortised: each trim drops a third
            self._trim()

    def _trim(self) -> None:
        joined = b"".join(self._pending)[-self.max_pending:]
        self._pending = [joined]
        self._pending_size = len(joined)
        self._reset = True

    def resize(self, cols: int, rows: int) -> None:
        self.catch_up()
        self.screen.resize(rows, cols)

    def catch_up(self) -> None:
        """Feed everything queued into the emulator."""
        if not self._pending:
            return
        if self._pending_size > self.max_pending:
            self._trim()
        if self._reset:
            self.screen.reset()
            self._decoder.reset()
            self._reset = False
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        try:
            self.stream.feed(self._decoder.decode(data))
        except Exception:  # an emulator bug must never break the session: start from a clean screen
            log.warning("terminal emulator could not parse output; screen reset", exc_info=True)
            self.screen.reset()

    def lines(self) -> list[str]:
        """The screen as plain text lines (trailing spaces removed)."""
        self.catch_up()
        return [line.rstrip() for line in self.screen.display]

    def row(self, y: int) -> str:
        """One line of the screen as text (renders only that line)."""
        self.catch_up()
        line = self.screen.buffer[y]
        return "".join(line[x].data for x in range(self.screen.columns))

    def snapshot(self) -> bytes:
        """The current screen rendered back to ANSI: clear, draw every cell with its attributes, place the cursor."""
        self.catch_up()
        screen = self.screen
        out: list[str] = ["\x1b[0m\x1b[H\x1b[2J"]
        for y in range(screen.lines):
            row = screen.buffer[y]
            last = screen.columns
            while last > 0 and row[last - 1].data == " " and row[last - 1].bg == "default" and not row[last - 1].reverse:
                last -= 1
            current = ""
            parts: list[str] = [f"\x1b[{y + 1};1H"]
            for x in range(last):
                char = row[x]
                codes = ["0"]
                if char.bold:
                    codes.append("1")
                if char.italics:
                    codes.append("3")
                if char.underscore:
                    codes.append("4")
                if char.reverse:
                    codes.append("7")
                fg = _color(char.fg, 30)
                bg = _color(char.bg, 40)
                if fg:
                    codes.append(fg)
                if bg:
                    codes.append(bg)
                sgr = ";".join(codes)
                if sgr != current:
                    parts.append(f"\x1b[{sgr}m")
                    current = sgr
                parts.append(char.data)
            parts.append("\x1b[0m")
            out.append("".join(parts))
        out.append(f"\x1b[{screen.cursor.y + 1};{screen.cursor.x + 1}H")
        if screen.cursor.hidden:
            out.append("\x1b[?25l")
        return "".join(out).encode("utf-8")


PASSWORD_PROMPT = re.compile(r"(password|passphrase|passcode|\bpin\b|verification code)[^:]*:\s*$", re.I)
SEARCH_PROMPT = re.compile(r"^\((?:reverse-|failed reverse-|bck-|fwd-)?i-search\)`[^']*': ?(.*)$")
MAX_COMMAND = 4096


def compile_rule(kind: str, pattern: str) -> re.Pattern[str]:
    """Compile a rule's pattern; a regex that does not compile is rejected, never treated as no match."""
    if kind == "words":
        words = [w for w in re.split(r"[\s,]+", pattern) if w]
        if not words:
            raise Invalid("pattern must hold at least one word")
        return re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w-])")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise Invalid(f"pattern is not a valid regular expression: {exc}") from None


@dataclass
class Verdict:
    """What the filter decided about one command."""

    action: str  # allow | deny | warn | review (review: decided by an approver, see bastion.review)
    rule: str = ""
    review: str = ""  # after a review: "approved by X", "denied by X" or "no answer in time"


class CommandFilter:
    """Evaluates admin rules in priority order; the first matching rule decides."""

    def __init__(self, rules: Iterable[CommandRule]) -> None:
        self.rules = sorted((r for r in rules if r.enabled), key=lambda r: (r.priority, r.name))
        self._compiled = {r.id: compile_rule(r.kind, r.pattern) for r in self.rules}

    def check(self, command: str, user: User, host: Host) -> Verdict:
        """The first matching rule's verdict (checked on each line and on the whole logical command)."""
        for rule in self.rules:
            if rule.scope == "app" and rule.scope_value != host.app_id:
                continue
            if rule.scope == "host" and rule.scope_value != host.id:
                continue
            if rule.scope == "role" and rule.scope_value not in user.roles:
                continue
            if self._compiled[rule.id].search(command):
                return Verdict(rule.action, rule.name)
        return Verdict("allow")


class RuleCache:
    """The current rules for every session of this node, refreshed by one query at a time (never one per
    session); while a refresh runs, sessions keep deciding with the previous rules. Without any rules loaded
    and no store, `verdict` raises (the gate fails closed)."""

    def __init__(self, load: "Callable[[], Awaitable[list[CommandRule]]]", ttl: float = 5.0) -> None:
        self._load_rules = load
        self.ttl = ttl
        self._filter: CommandFilter | None = None
        self._loaded_at = 0.0
        self._refresh: "asyncio.Task[CommandFilter] | None" = None

    async def current(self) -> CommandFilter:
        if self._filter is not None and time.monotonic() - self._loaded_at <= self.ttl:
            return self._filter
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._load())
            self._refresh.add_done_callback(_retrieve)
        if self._filter is not None:
            return self._filter
        return await asyncio.shield(self._refresh)

    async def verdict(self, command: str, user: User, host: Host) -> Verdict:
        return (await self.current()).check(command, user, host)

    async def _load(self) -> CommandFilter:
        loaded = CommandFilter(await self._load_rules())
        self._filter, self._loaded_at = loaded, time.monotonic()
        return loaded

    def changed(self) -> None:
        """Rules were edited on this node: the next Enter waits for the new rules."""
        self._filter = None


def _retrieve(task: "asyncio.Task[CommandFilter]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("loading command rules failed: %s", type(task.exception()).__name__)
