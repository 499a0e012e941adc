"""SessionHub: the registry of live sessions on this node, their monitors, kick and shutdown.

Each monitor has a bounded queue: a monitor that falls behind is resynced from a screen snapshot
(chunks are dropped until then), so it never slows the user's session or grows memory.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .config import Config
from .errors import Conflict, NotFound
from .protocol import control

if TYPE_CHECKING:
    from .terminal import TerminalSession

log = logging.getLogger(__name__)


class Sink(Protocol):
    """A browser socket as the session sees it (implemented by the WebSocket handlers)."""

    def send_output(self, data: bytes) -> "asyncio.Future[Any] | None": ...
    def send_control(self, text: str) -> None: ...
    def close_socket(self) -> None: ...


class Monitor:
    """One watcher of a session: bounded queue, own sender task, resync on overflow."""

    def __init__(self, sink: Sink, username: str, limit: int) -> None:
        self.sink = sink
        self.username = username
        self.limit = limit
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._resync = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.resyncs = 0
        self.refused_inputs = 0

    def push(self, data: bytes) -> None:
        if self._closed or self._resync:
            return  # while a resync is pending, the coming snapshot covers this output
        if self._queued + len(data) > self.limit:
            self._queue.clear()
            self._queued = 0
            self._resync = True
            self.resyncs += 1
        else:
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
                    self._resync = False
                    snapshot = session.screen.snapshot()
                    self.sink.send_control(control("notice", message="monitor fell behind; resynced from the current screen"))
                    if not await self._write(snapshot):
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
    """In-memory registry of this node's live sessions (the default, single-node hub)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sessions: dict[str, "TerminalSession"] = {}
        self._listeners: set[Callable[[str, "TerminalSession"], None]] = set()
        self.kicks = 0

    def register(self, session: "TerminalSession") -> None:
        self.sessions[session.id] = session
        self._notify("started", session)

    def unregister(self, session: "TerminalSession") -> None:
        if self.sessions.pop(session.id, None) is not None:
            self._notify("ended", session)

    def _notify(self, event: str, session: "TerminalSession") -> None:
        for listener in list(self._listeners):
            try:
                listener(event, session)
            except Exception:
                log.exception("hub listener failed")

    def listen(self, callback: Callable[[str, "TerminalSession"], None]) -> Callable[[], None]:
        self._listeners.add(callback)
        return lambda: self._listeners.discard(callback)

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
        snapshot = session.screen.snapshot()
        monitor.push(snapshot)
        session.monitors.add(monitor)
        monitor.start(session)
        session.monitor_joined(username)
        return monitor

    def detach(self, session_id: str, monitor: Monitor) -> None:
        session = self.sessions.get(session_id)
        if session is not None and monitor in session.monitors:
            session.monitors.discard(monitor)
            session.monitor_left(monitor.username)
        monitor.close()

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


