"""The SSH host connector: an asyncssh PTY session to a host, with pinned host keys."""
from __future__ import annotations

import logging
from typing import Any, Callable

import asyncssh

from ..errors import BastionError
from ..hostkeys import HostKeyTrust
from ..ssh import HostKeyChanged, Target, connect
from ..store import Host
from .doors import UpstreamEvents

log = logging.getLogger(__name__)
MIN_WINDOW = 32 * 1024  # one maximum SSH packet: a smaller window would stall the channel


class _Channel(asyncssh.SSHClientSession):
    """asyncssh callbacks → the session's UpstreamEvents."""

    def __init__(self, events: UpstreamEvents) -> None:
        self.events = events

    def data_received(self, data: bytes, datatype: Any) -> None:
        self.events.on_output(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.on_upstream_closed("exit" if exc is None else "host_lost")


async def open_channel(conn: asyncssh.SSHClientConnection, host: Host, what: str,
                       factory: Callable[[], asyncssh.SSHClientSession], **options: Any) -> asyncssh.SSHClientChannel:
    """A session channel (bytes, no encoding) on `conn`; the connection is closed when it cannot be opened, and a
    refusal is said in words: "<host>: the host refused <what>: <reason>"."""
    try:
        chan, _ = await conn.create_session(factory, encoding=None, **options)
    except (asyncssh.Error, OSError) as exc:
        conn.close()
        raise BastionError(f"{host.name}: the host refused {what}: {getattr(exc, 'reason', None) or exc}") from None
    except BaseException:
        conn.close()
        raise
    return chan


class SSHUpstream:
    """One interactive shell on an SSH host (implements Upstream)."""

    def __init__(self, conn: asyncssh.SSHClientConnection, chan: asyncssh.SSHClientChannel, window: int) -> None:
        self._conn = conn
        self._chan = chan
        self._window = window
        self.closed = False

    @classmethod
    async def open(cls, target: Target, host: Host, username: str, events: UpstreamEvents, *, cols: int, rows: int,
                   trust: HostKeyTrust, connect_timeout: float, keepalive: int, window: int,
                   env: dict[str, str]) -> "SSHUpstream":
        """Connect, pin or check the host key, open the PTY; raise BastionError with a human reason."""
        try:
            connected = await connect(target, timeout=connect_timeout, keepalive=keepalive)
        except HostKeyChanged as exc:
            await trust.mismatch(host, getattr(exc, "offered_key", ""), username)
            raise
        conn = connected.conn
        try:
            if connected.newly_seen and connected.offered_key:
                await trust.pin(host, connected.offered_key, username)
        except BaseException:
            conn.close()
            raise
        chan = await open_channel(conn, host, "a terminal", lambda: _Channel(events), term_type="xterm-256color",
                                  term_size=(cols, rows), window=window, env=env or None)
        return cls(conn, chan, window)

    def write(self, data: bytes) -> None:
        if not self.closed:
            self._chan.write(data)

    def resize(self, cols: int, rows: int) -> None:
        if not self.closed:
            self._chan.change_terminal_size(cols, rows)

    def pause_reading(self) -> None:
        self._chan.pause_reading()

    def resume_reading(self) -> None:
        self._chan.resume_reading()

    def limit_buffer(self, size: int) -> None:
        # asyncssh (pinned 2.24.0) has no call to shrink an open channel's window; it refills the window up to
        # `_init_recv_window` as data is delivered, so changing that bounds what the host may send ahead once
        # the data already in flight has been read. It never grows past the window the channel opened with.
        if isinstance(getattr(self._chan, "_init_recv_window", None), int):
            self._chan._init_recv_window = max(MIN_WINDOW, min(size, self._window))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._chan.close()
        self._conn.close()
