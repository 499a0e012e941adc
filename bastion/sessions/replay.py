"""What a late watcher is shown first: the session's recent output with its resizes, replayed as it happened.

Replaying the very bytes the user's terminal received (from the session's start, with every resize in place)
makes the watcher's xterm.js draw, wrap and reflow exactly as the user's did. The window is bounded: when it
is full it is dropped, and the next watcher to join starts from a checkpoint: the emulator's rendering of the
screen at that moment (exact for what is on screen; scrollback and reflow before it are not reproduced),
followed by what comes next. The checkpoint is taken lazily, so a flood nobody watches costs nothing here.
"""
from __future__ import annotations

import threading
from typing import Callable

from ..commands import ScreenTracker
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
        return list(self._items)


class SnapshotScreen:
    """A second terminal emulator for watchers' snapshots, rendered in the I/O pool, never on the loop.

    The gate's emulator belongs to the event loop (commands are read from it at Enter). Watchers need a rendering
    of the screen only when they join after the replay window overflowed or fall behind during a flood, and
    parsing a flood's tail costs pyte tens of milliseconds: so they get their own emulator, fed through a short
    operation queue (output and resizes, in order) under a lock, and parsed and rendered in a worker thread.
    """

    def __init__(self, cols: int, rows: int, max_pending: int = 32 * 1024) -> None:
        self._tracker = ScreenTracker(cols, rows, max_pending)
        self.max_pending = max_pending
        self._size = (cols, rows)
        self._ops: list[bytes | tuple[int, int]] = []
        self._bytes = 0
        self._reset = False
        self._cuts = 0
        self._ready: list[tuple[int, list[bytes | tuple[int, int]], bool]] = []
        self._queue_lock = threading.Lock()  # loop ↔ thread: the operation queue
        self._render_lock = threading.Lock()  # one rendering at a time

    def feed(self, data: bytes) -> None:
        """Hot path (loop): queue output; past a bound, keep only the tail (a redraw needs far less)."""
        with self._queue_lock:
            self._ops.append(data)
            self._bytes += len(data)
            if self._bytes > 2 * self.max_pending:  # 2×, not more: 200 busy sessions hold 200 of these queues
                keep, size = [], 0
                for op in reversed(self._ops):  # only the newest outputs that make up the tail are joined
                    if isinstance(op, bytes):
                        keep.append(op)
                        size += len(op)
                        if size >= self.max_pending:
                            break
                tail = b"".join(reversed(keep))[-self.max_pending:]
                self._ops = [self._size, tail]
                self._bytes = len(tail)
                self._reset = True

    def resize(self, cols: int, rows: int) -> None:
        with self._queue_lock:
            self._size = (cols, rows)
            self._ops.append((cols, rows))

    def cut(self) -> int:
        """(Loop) Mark the output so far as what the next rendering shows; output after it is the watcher's to stream."""
        with self._queue_lock:
            self._cuts += 1
            self._ready.append((self._cuts, self._ops, self._reset))
            self._ops, self._bytes, self._reset = [], 0, False
            return self._cuts

    def render(self, upto: int) -> bytes:
        """(Worker thread) Apply the output up to cut `upto`, in order, and render the screen as ANSI."""
        with self._render_lock:
            with self._queue_lock:
                batches = [b for b in self._ready if b[0] <= upto]
                self._ready = [b for b in self._ready if b[0] > upto]
            tracker = self._tracker
            for _, ops, reset in batches:
                if reset:
                    tracker.screen.reset()
                for op in ops:
                    if isinstance(op, bytes):
                        tracker.feed(op)
                    else:
                        tracker.resize(*op)
                        tracker.screen.ensure_vbounds()
                        tracker.screen.ensure_hbounds()
            return tracker.snapshot()
