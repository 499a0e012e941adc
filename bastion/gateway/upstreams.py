"""Upstreams of SSH gateway sessions other than the PTY shell: an exec command, and the host's sftp subsystem."""
from __future__ import annotations

import logging
from typing import Any, Callable

import asyncssh

from ..hostkeys import HostKeyTrust
from ..ssh import HostKeyChanged, Target, connect
from ..store import Host
from ..sessions.doors import UpstreamEvents
from ..sessions.ssh_upstream import open_channel
from .sftp import SFTPFilter, SFTPProtocolError

log = logging.getLogger(__name__)


async def connect_pinned(target: Target, host: Host, username: str, trust: HostKeyTrust, *, timeout: float,
                         keepalive: int) -> asyncssh.SSHClientConnection:
    """Connect to a host with its pinned key (pinning it on first use), as the browser terminal does."""
    try:
        connected = await connect(target, timeout=timeout, keepalive=keepalive)
    except HostKeyChanged as exc:
        await trust.mismatch(host, getattr(exc, "offered_key", ""), username)
        raise
    if connected.newly_seen and connected.offered_key:
        try:
            await trust.pin(host, connected.offered_key, username)
        except BaseException:
            connected.conn.close()
            raise
    return connected.conn


class _ExecChannel(asyncssh.SSHClientSession):
    def __init__(self, events: UpstreamEvents, on_stderr: Callable[[bytes], None],
                 on_exit: Callable[[int], None]) -> None:
        self.events = events
        self.on_stderr = on_stderr
        self.on_exit = on_exit

    def data_received(self, data: bytes, datatype: Any) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.on_stderr(data)
        else:
            self.events.on_output(data)

    def exit_status_received(self, status: int) -> None:
        self.on_exit(status)

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.on_exit(255)  # what OpenSSH's client reports for a command killed by a signal

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.on_upstream_closed("exit" if exc is None else "host_lost")


class ExecUpstream:
    """One command on a host (implements Upstream): stdout to the session, stderr beside it, exit status kept."""

    def __init__(self, conn: asyncssh.SSHClientConnection, chan: asyncssh.SSHClientChannel) -> None:
        self._conn = conn
        self._chan = chan
        self.closed = False

    @classmethod
    async def open(cls, target: Target, host: Host, username: str, events: UpstreamEvents, *, command: str,
                   trust: HostKeyTrust, timeout: float, keepalive: int, window: int, term: tuple[str, int, int] | None,
                   env: dict[str, str], on_stderr: Callable[[bytes], None],
                   on_exit: Callable[[int], None]) -> "ExecUpstream":
        """Connect and start the command (with a PTY when the user's ssh asked for one)."""
        conn = await connect_pinned(target, host, username, trust, timeout=timeout, keepalive=keepalive)
        options: dict[str, Any] = {}
        if term is not None:
            options.update(term_type=term[0], term_size=(term[1], term[2]))
        chan = await open_channel(conn, host, "the command", lambda: _ExecChannel(events, on_stderr, on_exit),
                                  command=command, window=window, env=env or None, **options)
        return cls(conn, chan)

    def write(self, data: bytes) -> None:
        if not self.closed:
            self._chan.write(data)

    def write_eof(self) -> None:
        if not self.closed:
            self._chan.write_eof()

    def resize(self, cols: int, rows: int) -> None:
        if not self.closed:
            try:
                self._chan.change_terminal_size(cols, rows)
            except (asyncssh.Error, OSError):
                pass  # no PTY on this command

    def pause_reading(self) -> None:
        self._chan.pause_reading()

    def resume_reading(self) -> None:
        self._chan.resume_reading()

    def limit_buffer(self, size: int) -> None:
        """An exec channel keeps the window it opened with (one command, not a long interactive session)."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._chan.close()
        self._conn.close()


class _SFTPChannel(asyncssh.SSHClientSession):
    def __init__(self, proxy: "SFTPUpstream") -> None:
        self.proxy = proxy

    def data_received(self, data: bytes, datatype: Any) -> None:
        self.proxy.from_host(data)

    def pause_writing(self) -> None:
        self.proxy.client.pause_reading()  # the host reads slower than the user sends: hold the user

    def resume_writing(self) -> None:
        self.proxy.client.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.events.on_upstream_closed("exit" if exc is None else "host_lost")


class SFTPUpstream:
    """The host's sftp subsystem, proxied packet by packet through an SFTPFilter (implements Upstream).

    Bytes never go through the session's terminal path: the session only gets a marker per transfer."""

    def __init__(self, events: UpstreamEvents, client: asyncssh.SSHServerChannel, sftp: SFTPFilter,
                 on_activity: Callable[[], None]) -> None:
        self.events = events
        self.on_activity = on_activity
        self.client = client
        self.filter = sftp
        self.closed = False
        self._conn: asyncssh.SSHClientConnection | None = None
        self._chan: asyncssh.SSHClientChannel | None = None

    @classmethod
    async def open(cls, target: Target, host: Host, username: str, events: UpstreamEvents, *,
                   client: asyncssh.SSHServerChannel, sftp: SFTPFilter, trust: HostKeyTrust, timeout: float,
                   keepalive: int, window: int, on_activity: Callable[[], None]) -> "SFTPUpstream":
        """Connect and start the host's sftp subsystem."""
        proxy = cls(events, client, sftp, on_activity)
        conn = await connect_pinned(target, host, username, trust, timeout=timeout, keepalive=keepalive)
        chan = await open_channel(conn, host, "sftp", lambda: _SFTPChannel(proxy), subsystem="sftp", window=window)
        proxy._conn, proxy._chan = conn, chan
        return proxy

    def from_client(self, data: bytes) -> None:
        """Bytes from the user's sftp client: checked, then forwarded (or answered here when refused)."""
        if self.closed or self._chan is None:
            return
        self.on_activity()
        try:
            forward, replies = self.filter.from_client(data)
        except (SFTPProtocolError, IndexError, ValueError) as exc:  # struct errors are ValueError
            log.warning("sftp proxy: malformed request stream (%s)", type(exc).__name__)
            self.events.on_upstream_closed("exit", "the sftp client sent something that is not SFTP")
            return
        if forward:
            self._chan.write(forward)
        if replies:
            self.client.write(replies)

    def from_host(self, data: bytes) -> None:
        try:
            out = self.filter.from_host(data)
        except (SFTPProtocolError, IndexError, ValueError) as exc:
            log.warning("sftp proxy: malformed reply stream (%s)", type(exc).__name__)
            self.events.on_upstream_closed("host_lost", "the host sent something that is not SFTP")
            return
        if out:
            self.client.write(out)

    def client_eof(self) -> None:
        if self._chan is not None and not self.closed:
            self._chan.write_eof()

    def limit_buffer(self, size: int) -> None:
        """Nothing to shrink: SFTP packets are relayed as they come, under the client's own flow control."""

    def write(self, data: bytes) -> None:
        self.from_client(data)

    def resize(self, cols: int, rows: int) -> None:
        pass

    def pause_reading(self) -> None:
        if self._chan is not None:
            self._chan.pause_reading()

    def resume_reading(self) -> None:
        if self._chan is not None:
            self._chan.resume_reading()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.filter.finish()
        if self._chan is not None:
            self._chan.close()
        if self._conn is not None:
            self._conn.close()
