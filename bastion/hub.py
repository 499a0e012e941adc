"""SessionHub: the registry of live sessions on this node, their monitors, kick and shutdown.

Each monitor has a bounded queue and a byte budget (token bucket). Interactive output streams to
monitors byte for byte; when output floods past the budget, or a monitor stops reading, the monitor
switches to screen snapshots (at most a few per second, shared by every monitor of the session) until
it can stream again. So monitors never slow the user's session nor grow the bastion's memory, and the
cost of watching does not grow with the output rate.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from .config import Config
from .errors import Conflict, NotFound
from .protocol import control

if TYPE_CHECKING:
    from .store import Session
    from .terminal import TerminalSession

log = logging.getLogger(__name__)


class Sink(Protocol):
    """A browser socket as the session sees it (implemented by the WebSocket handlers)."""

    def send_output(self, data: bytes) -> "asyncio.Future[Any] | None": ...
    def send_control(self, text: str) -> None: ...
    def close_socket(self) -> None: ...


SNAPSHOT_INTERVAL = 0.5  # seconds between snapshots while a monitor cannot stream
MONITOR_RATE = 512 * 1024  # bytes per second one monitor may stream (a person cannot read faster)
SESSION_MONITOR_RATE = 4 * 1024 * 1024  # bytes per second all monitors of one session may stream together
MONITOR_BURST = 128 * 1024  # bytes a monitor may receive at once (more than a full-screen repaint)


class Monitor:
    """One watcher of a session: bounded queue, byte budget, own sender task, snapshots when behind."""

    def __init__(self, sink: Sink, username: str, limit: int, rate: float = MONITOR_RATE) -> None:
        self.sink = sink
        self.username = username
        self.limit = limit
        self.rate = rate
        self.burst = float(min(limit, MONITOR_BURST))
        self._tokens = self.burst
        self._refilled = time.monotonic()
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._resync = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.resyncs = 0
        self.refused_inputs = 0
        self._last_snapshot = 0.0

    def push(self, data: bytes) -> None:
        if self._closed or self._resync:
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

    def push_snapshot(self, data: bytes) -> None:
        """The first frame of a monitor: the current screen, outside the byte budget."""
        self._queue.append(data)
        self._queued += len(data)
        self._wake.set()

    def start(self, session: "TerminalSession") -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(session))

    async def _write(self, data: bytes) -> bool:
        fut = self.sink.send_output(data)
        if fut is None:
            return False
        try:
            await fut
        except Exception:
            return False
        return True

    async def _run(self, session: "TerminalSession") -> None:
        try:
            while not self._closed:
                await self._wake.wait()
                self._wake.clear()
                if self._resync:
                    await asyncio.sleep(max(0.0, self._last_snapshot + SNAPSHOT_INTERVAL - time.monotonic()))
                    if self._closed:
                        break
                    self._resync = False  # from here on, output queues again behind the snapshot
                    self._last_snapshot = time.monotonic()
                    if not await self._write(session.shared_snapshot()):
                        break
                while self._queue and not self._closed:
                    chunk = b"".join(self._queue)
                    self._queue.clear()
                    self._queued = 0
                    if not await self._write(chunk):
                        self._closed = True
                        break
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("monitor sender failed [session=%s monitor=%s]", session.id, self.username)

    def close(self, frame: str | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if frame:
            self.sink.send_control(frame)
        self.sink.close_socket()
        if self._task is not None:
            self._task.cancel()


class SessionHub:
    """In-memory registry of this node's live sessions (the default, single-node hub).

    Handlers use `reachable`, `watch`, `unwatch` and `end`, which take the session document: this hub serves
    sessions of this node; a shared hub (hub_redis) also reaches sessions owned by other nodes.
    """

    backend = "memory"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sessions: dict[str, "TerminalSession"] = {}
        self.kicks = 0

    async def start(self) -> None:
        """Connect to whatever the hub needs (nothing for the in-memory hub)."""

    async def ping(self) -> None:
        """Raise Unavailable when the hub cannot be used (never for the in-memory hub)."""

    def reachable(self, record: "Session") -> bool:
        """Whether this node can watch and end a live session."""
        return record.id in self.sessions

    def unreachable_error(self, record: "Session") -> Conflict:
        return Conflict(f"session is live on node {record.node}, which this node cannot reach (no shared hub)")

    async def watch(self, record: "Session", sink: Sink, username: str) -> Any:
        """Attach a read-only watcher; returns a handle for `unwatch` (with a `refused_inputs` counter)."""
        if record.id in self.sessions:
            return self.attach(record.id, sink, username)
        raise self.unreachable_error(record)

    async def unwatch(self, session_id: str, watcher: Any) -> None:
        self.detach(session_id, watcher)

    async def end(self, record: "Session", reason: str, by: str) -> None:
        """Kick a live session wherever it runs."""
        if record.id in self.sessions:
            await self.kick(record.id, reason, by)
        else:
            raise self.unreachable_error(record)

    def register(self, session: "TerminalSession") -> None:
        self.sessions[session.id] = session

    def unregister(self, session: "TerminalSession") -> None:
        self.sessions.pop(session.id, None)

    def get(self, session_id: str) -> "TerminalSession | None":
        return self.sessions.get(session_id)

    def live(self) -> list["TerminalSession"]:
        return list(self.sessions.values())

    def attach(self, session_id: str, sink: Sink, username: str) -> Monitor:
        """Add a monitor: it first gets the size and current screen, then live output."""
        session = self.sessions.get(session_id)
        if session is None or session.closing:
            raise NotFound("session is not live on this node")
        monitor = Monitor(sink, username, self.config.terminal.monitor_queue_bytes)
        sink.send_control(control("resize", cols=session.cols, rows=session.rows))
        monitor.push_snapshot(session.screen.snapshot())
        session.monitors.add(monitor)
        self._share_budget(session)
        monitor.start(session)
        session.monitor_joined(username)
        return monitor

    def detach(self, session_id: str, monitor: Monitor) -> None:
        session = self.sessions.get(session_id)
        if session is not None and monitor in session.monitors:
            session.monitors.discard(monitor)
            session.monitor_left(monitor.username)
            self._share_budget(session)
        monitor.close()

    @staticmethod
    def _share_budget(session: "TerminalSession") -> None:
        """Monitors of one session share a byte budget, so watching costs the same with 1 or 50 watchers."""
        if session.monitors:
            rate = min(MONITOR_RATE, SESSION_MONITOR_RATE / len(session.monitors))
            for monitor in session.monitors:
                monitor.rate = rate

    async def kick(self, session_id: str, reason: str, by: str) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFound("session is not live on this node")
        if session.closing:
            raise Conflict("session has already ended")
        self.kicks += 1
        await session.close("kicked", by=by, note=reason)

    async def shutdown(self) -> None:
        """End every live session (reason `shutdown`) and wait for each to close its recording."""
        sessions = list(self.sessions.values())
        if sessions:
            await asyncio.gather(*(s.close("shutdown") for s in sessions), return_exceptions=True)

    async def close(self) -> None:
        await self.shutdown()


