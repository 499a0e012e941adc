"""TerminalSession (one live browser SSH session) and TerminalManager (opens, limits, recovers, shuts down).

Output path per chunk: user socket (binary frame) → recorder (memory buffer) → screen queue → monitors.
Backpressure: while the user's unsent bytes exceed HIGH_WATER the SSH channel is paused; it resumes
below LOW_WATER. We never re-pause from inside resume_reading() (asyncssh flushes its buffer there);
we decide after it returns.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import asyncssh

from .commands import CommandFilter, Verdict
from .config import Config
from .errors import BastionError, Conflict
from .gate import CommandGate
from .hub import Monitor, Sink
from .protocol import control
from .recorder import AsciicastRecorder, NullRecorder, Recorder, recording_path
from .ssh import HostKeyChanged, Target, connect, fingerprint
from .store import Command, Host, Session, User
from .vault import derive_key

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024

REASON_TEXT = {
    "exit": "the remote shell exited",
    "closed": "the session was closed",
    "host_lost": "the connection to the host was lost",
    "idle": "the session was idle for too long",
    "shutdown": "the bastion is shutting down",
    "interrupted": "the bastion stopped unexpectedly",
    "failed": "the session could not start",
    "record_failed": "the session could not be recorded",
}


class _SSHOutput(asyncssh.SSHClientSession):
    """asyncssh session callbacks → TerminalSession."""

    def __init__(self, session: "TerminalSession") -> None:
        self.session = session

    def data_received(self, data: bytes, datatype: Any) -> None:
        self.session.on_output(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.on_channel_closed(exc)


class TerminalSession:
    """One live session: owns the SSH connection, the user's socket, the recorder, the screen and monitors."""

    def __init__(self, manager: "TerminalManager", record: Session, sink: Sink, recorder: Recorder) -> None:
        self.manager = manager
        self.record = record
        self.id = record.id
        self.sink = sink
        self.recorder = recorder
        self.cols, self.rows = record.cols, record.rows
        self.gate = CommandGate(record.cols, record.rows, write=self._write_bytes, check=self._check_command,
                                on_command=self._command_decided, notice=self._notice)
        self.screen = self.gate.screen
        self._recording_commands: set[asyncio.Task] = set()
        self.host: Host | None = None
        self.user: User | None = None
        self._started_mono = time.monotonic()
        self._last_out = self._last_in = time.monotonic()  # last output to the user / input to the host
        self._input: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)
        self._pump: asyncio.Task | None = None
        self._snapshot: tuple[float, bytes] | None = None
        self.monitors: set[Monitor] = set()
        self.bytes_out = 0
        self.closing = False
        self._done = asyncio.get_running_loop().create_future()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._chan: asyncssh.SSHClientChannel | None = None
        self._pending = 0
        self._paused = False
        self._resuming = False
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_scheduled = False

    # ---- identity for logs -------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"[session={self.id} user={self.record.username} host={self.record.host_name}]"

    @property
    def last_activity(self) -> float:
        """When output last reached the user or input last reached the host (idle timeout, settling)."""
        return max(self._last_out, self._last_in)

    @property
    def username(self) -> str:
        return self.record.username

    # ---- SSH → user --------------------------------------------------------------------------------
    def on_output(self, data: bytes) -> None:
        """SSH data: coalesced per loop iteration (asyncssh hands over one ≤32 KiB packet per call)."""
        self._out.append(data)
        self._out_size += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_output)
        if (self._pending + self._out_size > HIGH_WATER and not self._paused and not self._resuming
                and self._chan is not None):
            self._paused = True
            self._chan.pause_reading()

    def _flush_output(self) -> None:
        """One step for the whole batch: user socket, recorder, screen, monitors."""
        self._flush_scheduled = False
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        self.bytes_out += len(data)
        self._last_out = time.monotonic()
        fut = self.sink.send_output(data)
        if fut is not None:
            self._pending += len(data)
            fut.add_done_callback(functools.partial(self._sent, len(data)))
        self.recorder.output(data)
        self.gate.observe(data)
        for monitor in self.monitors:
            monitor.push(data)

    def _sent(self, size: int, fut: "asyncio.Future[Any]") -> None:
        self._pending -= size
        if not fut.cancelled():
            fut.exception()  # retrieved: a closed socket is handled by on_close
        if self._paused and self._pending <= LOW_WATER and self._chan is not None and not self.closing:
            self._paused = False
            self._resuming = True
            try:
                self._chan.resume_reading()
            finally:
                self._resuming = False
            if self._pending > HIGH_WATER and not self.closing:  # decided after resume_reading() returned
                self._paused = True
                self._chan.pause_reading()

    def on_channel_closed(self, exc: Exception | None) -> None:
        if self.closing:
            return
        asyncio.get_running_loop().create_task(self.close("exit" if exc is None else "host_lost"))

    # ---- user → SSH --------------------------------------------------------------------------------
    def send_input(self, data: str) -> None:
        """Input from the user's socket: queued for the input pump (which checks commands on Enter)."""
        if self._chan is None or self.closing:
            self.sink.send_control(control("notice", message="not connected yet; input dropped"))
            return
        try:
            self._input.put_nowait(data)
        except asyncio.QueueFull:
            self.sink.send_control(control("notice", message="input is arriving faster than the host reads it; dropped"))

    def _write_bytes(self, data: bytes) -> None:
        if self._chan is not None and not self.closing:
            self._last_in = time.monotonic()
            self._chan.write(data)

    async def _pump_input(self) -> None:
        while not self.closing:
            data = await self._input.get()
            try:
                await self._handle_input(data)
            except Exception:
                log.exception("input handling failed %r", self)

    async def _handle_input(self, data: str) -> None:
        self.recorder.input(data)
        await self.gate.feed(data)

    async def _check_command(self, command: str) -> Verdict:
        """The gate's filter: the current rules for this user and host (BastionError when unavailable)."""
        return (await self.manager.command_filter()).check(command, self.user, self.host)

    def _notice(self, level: str, message: str) -> None:
        self.sink.send_control(control("notice", level=level, message=message))

    def _command_decided(self, command: str, verdict: Verdict) -> None:
        """A command the gate let through or refused: to the watchers now, to the store in the background."""
        blocked, flagged = verdict.action == "deny", verdict.action == "warn"
        frame = control("command", command=command, blocked=blocked, flagged=flagged)
        for monitor in self.monitors:
            monitor.sink.send_control(frame)
        task = asyncio.get_running_loop().create_task(self.manager.record_command(
            self, command, blocked=blocked, flagged=flagged, rule=verdict.rule, offset=self.elapsed()))
        self._recording_commands.add(task)  # keep a reference until stored
        task.add_done_callback(self._recording_commands.discard)

    def elapsed(self) -> float:
        return round(time.monotonic() - self._started_mono, 3)

    def resize(self, cols: int, rows: int) -> None:
        if (cols, rows) == (self.cols, self.rows) or self.closing:
            return
        self.cols, self.rows = cols, rows
        if self._chan is not None:
            self._chan.change_terminal_size(cols, rows)
        self.recorder.resize(cols, rows)
        self.gate.resize(cols, rows)
        frame = control("resize", cols=cols, rows=rows)
        for monitor in self.monitors:
            monitor.sink.send_control(frame)

    # ---- monitors ----------------------------------------------------------------------------------
    def shared_snapshot(self, max_age: float = 0.2) -> bytes:
        """The current screen as ANSI; one rendering serves every monitor resyncing at about the same time."""
        now = time.monotonic()
        if self._snapshot is None or now - self._snapshot[0] > max_age:
            self._snapshot = (now, self.screen.snapshot())
        return self._snapshot[1]

    def monitor_joined(self, username: str) -> None:
        if self.manager.config.terminal.notify_monitored:
            self.sink.send_control(control("notice", message=f"{username} started watching this session"))

    def monitor_left(self, username: str) -> None:
        pass

    # ---- lifecycle -----------------------------------------------------------------------------------
    async def start(self, target: Target, host: Host, user: User) -> None:
        """Connect, pin or check the host key, open the PTY; raise BastionError on failure."""
        tcfg = self.manager.config.terminal
        self.host, self.user = host, user
        try:
            connected = await connect(target, timeout=tcfg.connect_timeout, keepalive=tcfg.keepalive_interval)
        except HostKeyChanged as exc:
            await self.manager.key_mismatch(host, getattr(exc, "offered_key", ""), self.record.username)
            raise
        self._conn = connected.conn
        if connected.newly_seen and connected.offered_key:
            await self.manager.pin_key(host, connected.offered_key, self.record.username)
        if self.closing:
            self._conn.close()
            return
        try:
            self._chan, _ = await self._conn.create_session(
                lambda: _SSHOutput(self), term_type="xterm-256color", term_size=(self.cols, self.rows),
                encoding=None, window=tcfg.ssh_window)
        except (asyncssh.Error, OSError) as exc:
            self._conn.close()
            raise BastionError(f"{host.name}: the host refused a terminal: {getattr(exc, 'reason', exc)}") from None
        self._pump = asyncio.get_running_loop().create_task(self._pump_input())

    def record_failed(self, reason: str) -> None:
        """Called by the recorder when the recording cannot be written."""
        if self.manager.config.terminal.on_record_failure == "terminate":
            asyncio.get_running_loop().create_task(self.close("record_failed", note=reason))
        else:
            self.sink.send_control(control("notice", message=f"warning: {reason}; this session is no longer recorded"))
            for monitor in self.monitors:
                monitor.sink.send_control(control("notice", message=f"warning: {reason}"))

    async def close(self, reason: str, *, by: str = "", note: str = "") -> Session:
        """End the session once, whatever ended it; later calls wait for the first to finish."""
        if self.closing:
            return await asyncio.shield(self._done)
        self.closing = True
        try:
            record = await self._close(reason, by, note)
            self._done.set_result(record)
            return record
        except BaseException as exc:
            self._done.set_exception(exc)
            raise

    async def _close(self, reason: str, by: str, note: str) -> Session:
        self._flush_output()  # output already read from SSH still reaches the user, the recording and monitors
        text = REASON_TEXT.get(reason, reason)
        if reason == "kicked":
            text = f"ended by {by}" + (f": {note}" if note else "")
        elif note:
            text = f"{text}: {note}"
        frame = control("closed", reason=text, code=reason, by=by)
        self.sink.send_control(frame)
        self.sink.close_socket()
        for monitor in list(self.monitors):
            monitor.close(frame)
        self.monitors.clear()
        if self._pump is not None:
            self._pump.cancel()
        if self._chan is not None:
            self._chan.close()
        if self._conn is not None:
            self._conn.close()
        self.recorder.marker(f"session ended: {text}")
        result = None
        try:
            result = await self.recorder.close()
        except Exception:
            log.exception("closing recording failed %r", self)
        record = self.record
        try:
            record = await self.manager.store.end_session(
                self.record, reason, ended_by=by, note=note, size=result.size if result else 0,
                sha256=result.sha256 if result else "", bytes_out=self.bytes_out,
                chain=result.chain if result else "")
            await self.manager.audit.record("session.kicked" if reason == "kicked" else "session.ended",
                                            actor=by or self.record.username, target=self.record.host_name,
                                            session=self.id, reason=reason, note=note, bytes=self.bytes_out)
        except Exception:
            log.exception("recording the end of the session failed %r", self)
        finally:
            self.manager.bytes_closed += self.bytes_out
            self.manager.hub.unregister(self)
        log.info("session ended (%s) %r", reason, self)
        return record


class TerminalManager:
    """Creates sessions (limits, records, recordings), pins host keys, recovers after crashes, shuts down."""

    def __init__(self, config: Config, services: "Services") -> None:
        self.config = config
        self.services = services
        self.store = services.store
        self.audit = services.audit
        self.hub = services.hub
        self.io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bastion-rec")
        self._record_key = derive_key(config.secret, b"bastion recordings v1")
        self._idle_task: asyncio.Task | None = None
        self._filter: CommandFilter | None = None
        self._filter_at = 0.0
        self._filter_refresh: asyncio.Task | None = None
        self.bytes_closed = 0  # output bytes of sessions already ended (for /metrics)

    @property
    def record_key(self) -> bytes:
        return self._record_key

    async def check_limit(self, user: User) -> None:
        live = await self.store.list_sessions(live=True, user_id=user.id, limit=1)
        limit = self.config.terminal.max_sessions_per_user
        if live.total >= limit:
            raise Conflict(f"you already have {live.total} live sessions; the limit is {limit}")

    async def open_session(self, user: User, host: Host, cols: int, rows: int, sink: Sink, address: str) -> TerminalSession:
        """Create the session document and recording, connect, and register it in the hub."""
        now = time.time()
        record = Session(host_id=host.id, host_name=host.name, user_id=user.id, username=user.username,
                         group=f"{host.name}-{user.username}-{int(now)}", cols=cols, rows=rows, live=True,
                         node=self.config.node_id, started_at=now, address=address)
        path = recording_path(self.config.records_dir, record.id, now)
        record.recording_path = str(path)
        await self.store.create_session(record)
        sink.send_control(control("session", id=record.id))
        session_ref: dict[str, TerminalSession] = {}
        recorder: Recorder = AsciicastRecorder(
            path, cols=cols, rows=rows, title=f"{user.username}@{host.name}", key=self._record_key, io=self.io,
            record_input=self.config.terminal.record_input,
            on_failure=lambda why: session_ref["s"].record_failed(why) if "s" in session_ref else None)
        session = TerminalSession(self, record, sink, recorder)
        session_ref["s"] = session
        self.hub.register(session)
        try:
            await recorder.open()  # type: ignore[union-attr]
        except OSError as exc:
            why = f"recording cannot be created: {exc.strerror or type(exc).__name__}"
            log.error("%s %r", why, session)
            if self.config.terminal.on_record_failure == "terminate":
                await session.close("record_failed", note=why)
                return session
            session.recorder = NullRecorder()
            sink.send_control(control("notice", message=f"warning: {why}; this session is not recorded"))
        try:
            cred = await self.store.get_credential(host.credential_id)
            if cred is None:
                raise BastionError(f"{host.name} has no usable credential; ask an admin")
            target = Target(name=host.name, address=host.address, port=host.port, username=cred.username,
                            kind=cred.kind, secret=self.services.inventory.open_secret(cred), pinned_key=host.host_key)
            await session.start(target, host, user)
            await self.command_filter()  # warm the rules cache before the first Enter
        except BastionError as exc:
            await self.audit.record("session.refused", actor=user.username, target=host.name, ok=False,
                                    session=record.id, why=exc.message)
            await session.close("failed", note=exc.message)
            return session
        if not session.closing:
            await self.audit.record("session.started", actor=user.username, target=host.name, address=address,
                                    session=record.id)
            log.info("session started %r", session)
        return session

    async def command_filter(self) -> CommandFilter:
        """The current rules, cached for a few seconds and refreshed by one query at a time (never one per
        session): while a refresh runs, sessions keep using the previous rules."""
        if self._filter is not None and time.monotonic() - self._filter_at <= 5:
            return self._filter
        if self._filter_refresh is None or self._filter_refresh.done():
            self._filter_refresh = asyncio.get_running_loop().create_task(self._load_filter())
        if self._filter is not None:
            return self._filter
        return await asyncio.shield(self._filter_refresh)

    async def _load_filter(self) -> CommandFilter:
        loaded = CommandFilter(await self.store.list_rules())
        self._filter, self._filter_at = loaded, time.monotonic()
        return loaded

    def rules_changed(self) -> None:
        self._filter = None

    async def record_command(self, session: "TerminalSession", text: str, *, blocked: bool, flagged: bool,
                             rule: str, offset: float | None = None) -> None:
        r = session.record
        try:
            await self.store.add_command(Command(session_id=r.id, user_id=r.user_id, username=r.username,
                                                 host_id=r.host_id, host_name=r.host_name,
                                                 offset=session.elapsed() if offset is None else offset,
                                                 text=text, blocked=blocked, flagged=flagged, rule=rule))
            if blocked or flagged:
                await self.audit.record("command.blocked" if blocked else "command.flagged", actor=r.username,
                                        target=r.host_name, ok=not blocked, session=r.id, command=text[:500], rule=rule)
        except Exception:
            log.exception("storing a command failed %r", session)

    async def pin_key(self, host: Host, key_line: str, username: str) -> None:
        current = await self.store.get_host(host.id)
        if current is None or current.host_key:
            return
        current.host_key, current.host_key_fingerprint = key_line, fingerprint(key_line)
        try:
            await self.store.save(current)
        except Conflict:
            return
        await self.audit.record("host.key_pinned", actor=username, target=host.name, fingerprint=current.host_key_fingerprint)

    async def key_mismatch(self, host: Host, offered: str, username: str) -> None:
        current = await self.store.get_host(host.id)
        if current is None:
            return
        if offered and current.offered_key != offered:
            current.offered_key, current.offered_key_fingerprint = offered, fingerprint(offered)
            try:
                await self.store.save(current)
            except Conflict:
                pass
        await self.audit.record("host.key_mismatch", actor=username, target=host.name, ok=False,
                                pinned=current.host_key_fingerprint, offered=current.offered_key_fingerprint)

    async def recover_interrupted(self) -> int:
        """At start-up: sessions this node left live (crash) become `interrupted`."""
        count = 0
        for record in await self.store.live_sessions_of_node(self.config.node_id):
            if self.hub.get(record.id) is not None:
                continue
            try:
                size, digest = _file_facts(record.recording_path)
                await self.store.end_session(record, "interrupted", size=size, sha256=digest)
                await self.audit.record("session.interrupted", target=record.host_name, session=record.id,
                                        user=record.username)
                count += 1
            except Exception:
                log.exception("marking session %s interrupted failed", record.id)
        self._start_idle_reaper()
        return count

    def _start_idle_reaper(self) -> None:
        if self._idle_task is None and self.config.terminal.idle_timeout:
            self._idle_task = asyncio.get_running_loop().create_task(self._reap_idle())

    async def _reap_idle(self) -> None:
        limit = self.config.terminal.idle_timeout
        while True:
            await asyncio.sleep(min(5.0, limit / 4))
            now = time.monotonic()
            for session in self.hub.live():
                try:
                    if not session.closing and now - session.last_activity > limit:
                        await session.close("idle")
                except Exception:
                    log.exception("idle check failed %r", session)

    async def end_sessions_of_user(self, user_id: str, *, by: str, reason: str) -> int:
        """Kick every live session of a user on this node (user disabled)."""
        ended = 0
        for session in self.hub.live():
            if session.record.user_id == user_id and not session.closing:
                self.hub.kicks += 1
                await session.close("kicked", by=by, note=reason)
                ended += 1
        return ended

    async def enforce_grants(self, user_id: str, *, by: str) -> int:
        """After a grant is revoked: end the user's sessions to hosts they may no longer open."""
        user = await self.store.get_user(user_id)
        ended = 0
        for session in self.hub.live():
            if session.record.user_id != user_id or session.closing:
                continue
            host = await self.store.get_host(session.record.host_id)
            if user is None or host is None or not await self.services.inventory.may_open(user, host):
                self.hub.kicks += 1
                await session.close("kicked", by=by, note="access revoked")
                ended += 1
        return ended

    async def shutdown(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        await self.hub.shutdown()
        self.io.shutdown(wait=True)


def _file_facts(path: str) -> tuple[int, str]:
    import hashlib
    import os
    if not path or not os.path.exists(path):
        return 0, ""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()
