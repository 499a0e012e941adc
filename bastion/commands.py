"""The session's terminal emulator (pyte), fed lazily: screen snapshots for late monitors.

Feeding pyte costs CPU on the loop, so output is queued (bounded) and fed only when the screen is
needed. If more than `max_pending` bytes arrive between two looks, the oldest are dropped and the
emulator is reset before replaying the rest: a screen is redrawn by far fewer bytes than that.
"""
from __future__ import annotations

import codecs

import pyte

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


class ScreenTracker:
    """A pyte screen with a bounded, lazily fed input queue."""

    def __init__(self, cols: int, rows: int, max_pending: int = 128 * 1024) -> None:
        self.screen = pyte.Screen(cols, rows)
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
        if self._pending_size > self.max_pending * 2:
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
        self.stream.feed(self._decoder.decode(data))

    def lines(self) -> list[str]:
        """The screen as plain text lines (trailing spaces removed)."""
        self.catch_up()
        return [self.screen.display[y].rstrip() for y in range(self.screen.lines)]

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
