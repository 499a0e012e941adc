"""WebSockets: the user's terminal and the security team's read-only monitor.

Auth, role, grant and Origin are checked in get() before the upgrade (HTTP 401/403/404/409).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from tornado.websocket import WebSocketClosedError, WebSocketHandler

from bastion.errors import BastionError, Conflict, Invalid
from bastion.protocol import InputFrame, ResizeFrame, control, parse_client_frame, parse_size_args
from bastion.sessions.engine import Admission
from bastion.sessions.session import LiveSession

from .base import BaseMixin, authenticated, role

log = logging.getLogger(__name__)


def _swallow(fut: "asyncio.Future[Any]") -> None:
    if not fut.cancelled():
        fut.exception()


MAX_BAD_FRAMES = 20  # malformed frames one socket may send before it is closed


class SocketHandler(BaseMixin, WebSocketHandler):
    """A browser socket that a live session writes to: the browser's front door (FrontDoor protocol)."""

    async def prepare(self) -> None:
        await self.resolve_principal()

    def check_origin(self, origin: str) -> bool:
        ok = super().check_origin(origin)
        if not ok:
            log.warning("refused WebSocket from foreign Origin %s for %s", origin[:100], self.request.path)
            # audited at a bounded rate per address (a page on another site can make a browser try this in a loop)
            self.services.sessions.spawn(self.audit.record_limited(
                "websocket.refused_origin", self.client_address, actor=self.actor if self.principal else "",
                address=self.client_address, origin=origin[:200], path=self.request.path[:200]))
        return ok

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, BastionError):
            log.info("%s -> %d %s", self.request.path, value.status, value.message)
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.message if isinstance(exc, BastionError) else "request refused"
        if isinstance(exc, BastionError):
            status_code = exc.status
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"error": message}))

    def _open(self) -> bool:
        return self.ws_connection is not None and not self.ws_connection.is_closing()

    def send_output(self, data: bytes) -> "asyncio.Future[Any] | None":
        if not self._open():
            return None
        try:
            return self.write_message(data, binary=True)
        except WebSocketClosedError:
            return None

    def send_control(self, text: str) -> None:
        if not self._open():
            return
        try:
            self.write_message(text).add_done_callback(_swallow)
        except WebSocketClosedError:
            pass

    def hang_up(self) -> None:
        if self.ws_connection is not None:
            self.close(1000)


class TerminalSocket(SocketHandler):
    """/ws/terminal/<host_id>?cols=&rows=: the user's live SSH session."""

    session: LiveSession | None = None
    admission: Admission | None = None
    size = (80, 24)
    bad_frames = 0
    read_scope = "terminal"  # the upgrade is a GET, but an API token needs the terminal scope

    resumed: LiveSession | None = None
    fresh = True

    @authenticated
    async def get(self, host_id: str) -> None:
        host = await self.inventory.openable_host(self.principal.user, host_id, address=self.client_address)
        self.size = parse_size_args(self.get_query_argument("cols", None), self.get_query_argument("rows", None))
        resume = self.get_query_argument("session", None)
        if resume is not None:  # the browser comes back to its session (a reload, a lost connection)
            self.resumed = self.services.sessions.resumable(resume, self.principal.user, host.id)
            self.fresh = self.get_query_argument("fresh", "1") != "0"
            self.host = host
            await WebSocketHandler.get(self, host_id)
            return
        # a slot is reserved before the upgrade and released when the session ends (or never starts)
        try:
            self.admission = await self.services.sessions.admit(self.principal.user, host, self.client_address)
        except Conflict as exc:  # refused opens are audited, at most N a minute per address
            await self.audit.record_limited("session.refused", self.client_address, actor=self.actor, target=host.name,
                                            address=self.client_address, why=exc.message)
            raise
        self.host = host
        try:
            await WebSocketHandler.get(self, host_id)
        finally:
            if self.session is None:
                self.services.sessions.release(self.admission)

    async def open(self, host_id: str) -> None:
        self.set_nodelay(True)
        if self.resumed is not None:
            if not self.resumed.detached or self.resumed.closing:  # it ended, or another socket took it meanwhile
                self.send_control(control("closed", reason="the session can no longer be resumed", code="gone"))
                self.hang_up()
                return
            self.session = self.resumed
            self.session.reattach(self, fresh=self.fresh)
            return
        cols, rows = self.size
        assert self.admission is not None
        self.session = await self.services.sessions.open_session(
            self.admission, self.principal.user, self.host, cols, rows, self, self.client_address)
        if not self._open() and not self.session.closing:
            await self.session.close("closed")

    def on_message(self, message: str | bytes) -> None:
        session = self.session
        if session is None or session.closing:
            return
        try:
            frame = parse_client_frame(message)
        except Invalid as exc:
            self.bad_frames += 1
            if self.bad_frames >= MAX_BAD_FRAMES:
                self.services.sessions.spawn(session.close("closed", note="too many malformed frames"))
                return
            self.send_control(control("notice", message=exc.message))
            return
        if isinstance(frame, InputFrame):
            session.send_input(frame.data)
        elif isinstance(frame, ResizeFrame):
            session.resize(frame.cols, frame.rows)

    def on_close(self) -> None:
        session = self.session
        if session is None or session.closing or session.door is not self:
            return
        grace = self.services.config.terminal.reconnect_grace
        if grace > 0:
            session.detach(grace)  # a reload or a network blip: the browser may come back to it
        else:
            self.services.sessions.spawn(session.close("closed"))


class MonitorSocket(SocketHandler):
    """/ws/monitor/<session_id>: a read-only view of a live session (auditor, admin)."""

    watcher = None
    session_id = ""

    @role("auditor", "admin")
    async def get(self, session_id: str) -> None:
        record = await self.load_session(session_id)
        if not record.live:
            raise Conflict(f"session has ended ({record.end_reason})")
        if not self.hub.reachable(record):
            raise self.hub.unreachable_error(record)
        self.session_id = session_id
        self.record = record
        await WebSocketHandler.get(self, session_id)

    async def open(self, session_id: str) -> None:
        self.set_nodelay(True)
        record = self.record
        self.send_control(control("session", id=session_id, user=record.username, host=record.host_name, node=record.node))
        try:  # a session of another node is relayed through the shared hub
            self.watcher = await self.hub.watch(record, self, self.actor)
        except BastionError as exc:
            self.send_control(control("closed", reason=exc.message, code="gone"))
            self.hang_up()
            return
        self.audit.emit("monitor.joined", actor=self.actor, target=record.host_name, session=session_id,
                                user=record.username, node=record.node)

    def on_message(self, message: str | bytes) -> None:
        watcher = self.watcher
        if watcher is None:
            return
        watcher.refused_inputs += 1
        self.send_control(control("notice", message="monitors are read-only: input and resize are refused"))
        if watcher.refused_inputs in (1, 10, 100) or watcher.refused_inputs % 1000 == 0:
            self.audit.emit("monitor.input_refused", actor=self.actor, session=self.session_id, ok=False,
                            attempts=watcher.refused_inputs)

    def on_close(self) -> None:
        if self.watcher is None:
            return
        self.services.sessions.spawn(self.hub.unwatch(self.session_id, self.watcher))
        self.watcher = None
        self.audit.emit("monitor.left", actor=self.actor, session=self.session_id)


default_handlers = [
    (r"/ws/terminal/([^/]+)", TerminalSocket),
    (r"/ws/monitor/([^/]+)", MonitorSocket),
]
