"""CommandGate: sits between the user's keystrokes and the upstream shell; extracts commands, applies the filter.

Protocol-agnostic: it sees upstream output (`observe`) and user input (`feed`), writes what may pass through
`write`, and reports each decided command through `on_command` (never awaited).
"""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from .commands import CommandExtractor, ScreenTracker, Verdict
from .errors import BastionError


class CommandGate:
    """Extracts the command at Enter from the screen and lets it through, or not."""

    def __init__(self, cols: int, rows: int, *, write: Callable[[bytes], None],
                 check: Callable[[str], Awaitable[Verdict]], on_command: Callable[[str, Verdict], None],
                 notice: Callable[[str, str], None]) -> None:
        self._screen = ScreenTracker(cols, rows)
        self.extractor = CommandExtractor(self._screen)
        self._write_up = write
        self._check = check
        self._on_command = on_command
        self._notice = notice
        self._after_enter = True  # the shell's first prompt is still coming: settle before learning it
        self._last_out = self._last_in = time.monotonic()

    @property
    def screen(self) -> ScreenTracker:
        return self._screen

    def observe(self, data: bytes) -> None:
        self._last_out = time.monotonic()
        self._screen.feed(data)
        self.extractor.observe(data)

    def resize(self, cols: int, rows: int) -> None:
        self._screen.resize(cols, rows)
        self._screen.screen.ensure_vbounds()  # pyte leaves the cursor below a screen that shrank
        self._screen.screen.ensure_hbounds()
        self.extractor.before_input_reset()

    def _write(self, text: str) -> None:
        self._last_in = time.monotonic()
        self._write_up(text.encode("utf-8", "surrogatepass"))

    async def _settle(self, quiet: float = 0.03, limit: float = 0.5) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            idle = time.monotonic() - max(self._last_out, self._last_in)
            if idle >= quiet or loop.time() >= deadline:
                return
            await asyncio.sleep(quiet - idle)

    async def _begin_line(self) -> None:
        if self.extractor.alternate:
            return
        if self._after_enter:
            self._after_enter = False
            await self._settle()
        self.extractor.before_input()

    async def feed(self, data: str) -> None:
        if "\r" not in data or self.extractor.alternate:
            await self._begin_line()
            self._write(data)
            return
        parts = data.split("\r")
        for index, part in enumerate(parts):
            if part:
                await self._begin_line()
                self._write(part)
            if index == len(parts) - 1:
                break
            await self._enter()

    async def _enter(self) -> None:
        if self.extractor.alternate:
            self._write("\r")
            return
        await self._begin_line()
        await self._settle()
        command = self.extractor.take()
        self._after_enter = True
        if command is None:
            self._write("\r")
            return
        try:
            verdict = await self._check(command)
        except BastionError:
            self._write("\x05\x15")
            self._notice("error", "the command filter is unavailable (database not answering); the command was "
                                  "not sent, try again")
            return
        if verdict.action == "deny":
            self._write("\x05\x15")  # end of line, then kill it: the host never runs the line
            self._notice("error", f"command blocked by policy ({verdict.rule}): {command[:200]}")
        else:
            self._write("\r")
            if verdict.action == "warn":
                self._notice("warn", f"this command is flagged for review ({verdict.rule})")
        self._on_command(command, verdict)
