"""What a late watcher is shown first: the session's recent output with its resizes, replayed as it happened.

Replaying the very bytes the user's terminal received (from the session's start, with every resize in place)
makes the watcher's xterm.js draw, wrap and reflow exactly as the user's did. The window is bounded: when it
is full it is dropped, and the next watcher to join starts from a checkpoint: the emulator's rendering of the
screen at that moment (exact for what is on screen; scrollback and reflow before it are not reproduced),
followed by what comes next. The checkpoint is taken lazily, so a flood nobody watches costs nothing here.
"""
from __future__ import annotations

from typing import Callable

from ..protocol import control
from .watchers import Item

REPLAY_WINDOW = 512 * 1024  # bytes of recent output kept per session for late watchers


class ReplayWindow:
    """Recent output and resizes since a checkpoint (or the session's start), bounded in bytes."""

    def __init__(self, cols: int, rows: int, snapshot: Callable[[], bytes], limit: int = REPLAY_WINDOW) -> None:
        self._snapshot = snapshot
        self.limit = limit
        self.size = (cols, rows)
        self._items: list[Item] = [control("resize", cols=cols, rows=rows)]
        self._bytes = 0
        self._dropped = False  # the window overflowed: the next watcher starts from a checkpoint
        self.checkpoints = 0

    @property
    def exact(self) -> bool:
        """Whether a watcher joining now gets the session's output from its start."""
        return self.checkpoints == 0 and not self._dropped

    def output(self, data: bytes) -> None:
        """Hot path: keep a reference; drop the window when it is full."""
        if self._dropped:
            return
        if self._bytes + len(data) > self.limit:
            self._items.clear()
            self._bytes = 0
            self._dropped = True
            return
        self._items.append(data)
        self._bytes += len(data)

    def resize(self, cols: int, rows: int) -> None:
        self.size = (cols, rows)
        if not self._dropped:
            self._items.append(control("resize", cols=cols, rows=rows))

    def frames(self) -> list[Item]:
        """The items a new watcher gets before live output (the screen must be fed before this is called)."""
        if self._dropped:
            cols, rows = self.size
            shot = self._snapshot()
            self._items = [control("resize", cols=cols, rows=rows), shot]
            self._bytes = len(shot)
            self._dropped = False
            self.checkpoints += 1
        return list(self._items)
