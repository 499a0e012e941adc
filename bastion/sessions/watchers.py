"""Watchers of a live session: each has a bounded queue, a byte budget and its own sender task.

Interactive output streams to watchers byte for byte, in order with resizes. When output floods past the
budget, or a watcher stops reading, the watcher switches to screen snapshots (at most a few per second,
shared by every watcher of the session) until it can stream again. So watchers never slow the user's
session nor grow the bastion's memory, and the cost of watching does not grow with the output rate.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Awaitable, Callable, Union

from .doors import FrontDoor

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL = 0.5  # seconds between snapshots while a watcher cannot stream
WATCHER_RATE = 512 * 1024  # bytes per second one watcher may stream (a person cannot read faster)
SESSION_WATCHER_RATE = 4 * 1024 * 1024  # bytes per second all watchers of one session may stream together
WATCHER_BURST = 128 * 1024  # bytes a watcher may receive at once (more than a full-screen repaint)

Item = Union[bytes, str]  # output bytes, or a JSON control frame kept in order with the output


class Watcher:
    """One read-only viewer of a session (a local socket, or a relay to another node)."""

    def __init__(self, door: FrontDoor, username: str, limit: int, resync: Callable[[], Awaitable[list[Item]]],
                 on_gone: Callable[["Watcher"], None], rate: float = WATCHER_RATE) -> None:
        self.door = door
        self._on_gone = on_gone
        self.username = username
        self.limit = limit
        self.rate = rate
        self.burst = float(min(limit, WATCHER_BURST))
        self._resync_frames = resync
        self._tokens = self.burst
        self._refilled = time.monotonic()
        self._queue: deque[Item] = deque()
        self._queued = 0
        self._resync = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.closed = False
        self.resyncs = 0
        self.refused_inputs = 0
        self._last_snapshot = 0.0

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for this watcher's socket (bounded by `limit`)."""
        return self._queued

    def push(self, data: bytes) -> None:
        """Live output (hot path)."""
        if self.closed or self._resync:
            return  # while a resync is pending, the coming snapshot covers this output
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        if self._queued + len(data) > self.limit or len(data) > self._tokens:
            self._queue.clear()
            self._queued = 0
            self._resync = True
            self.resyncs += 1
        else:
            self._tokens -= len(data)
            self._queue.append(data)
            self._queued += len(data)
        self._wake.set()

    def push_control(self, frame: str) -> None:
        """A control frame in order with the output (resize must not overtake the output drawn before it)."""
        if self.closed:
            return
        if self._resync:
            if '"resize"' in frame:
                return  # the snapshot carries the current size
        self._queue.append(frame)
        self._wake.set()

    def push_initial(self, items: list[Item]) -> None:
        """What a new watcher sees first (recent output with its resizes, or a snapshot), outside the budget."""
        for item in items:
            self._queue.append(item)
            if isinstance(item, bytes):
                self._queued += len(item)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _write(self, data: bytes) -> bool:
        fut = self.door.send_output(data)
        if fut is None:
            return False
        try:
            await fut
        except Exception:
            return False
        return True

    async def _run(self) -> None:
        try:
            while not self.closed:
                await self._wake.wait()
                self._wake.clear()
                if self._resync:
                    await asyncio.sleep(max(0.0, self._last_snapshot + SNAPSHOT_INTERVAL - time.monotonic()))
                    if self.closed:
                        break
                    self._resync = False  # from here on, output queues again behind the snapshot
                    self._last_snapshot = time.monotonic()
                    for item in await self._resync_frames():
                        if isinstance(item, str):
                            self.door.send_control(item)
                        elif not await self._write(item):
                            self.closed = True
                            break
                while self._queue and not self.closed:
                    batch: list[bytes] = []
                    while self._queue and isinstance(self._queue[0], bytes):
                        batch.append(self._queue.popleft())  # type: ignore[arg-type]
                    if batch:
                        chunk = b"".join(batch)
                        self._queued -= len(chunk)
                        if not await self._write(chunk):
                            self.closed = True
                            break
                    while self._queue and isinstance(self._queue[0], str):
                        self.door.send_control(self._queue.popleft())  # type: ignore[arg-type]
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("watcher sender failed [watcher=%s]", self.username)
        self.closed = True
        self._task = None
        self._on_gone(self)  # its door stopped taking output: the session forgets it

    def close(self, frame: str | None = None) -> None:
        """Stop watching (idempotent); `frame` is the last control frame the watcher gets."""
        if self.closed and self._task is None:
            return
        self.closed = True
        self._wake.set()
        if frame:
            self.door.send_control(frame)
        self.door.hang_up()
        if self._task is not None:
            self._task.cancel()
            self._task = None


def share_budget(watchers: "set[Watcher]") -> None:
    """Watchers of one session share a byte budget, so watching costs the same with 1 or 50 watchers."""
    if watchers:
        rate = min(WATCHER_RATE, SESSION_WATCHER_RATE / len(watchers))
        for watcher in watchers:
            watcher.rate = rate
