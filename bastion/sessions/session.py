"""LiveSession: one live terminal session, whatever its front door and upstream.

It owns the recording, the screen and command gate, its watchers, notices, and the one close path. It
knows nothing about SSH or WebSockets: it talks to a FrontDoor (the user) and an Upstream (the host or pod).

Output path per batch: the user's door (binary frame) → recorder (memory buffer) → gate (screen queue) →
replay window → watchers. Backpressure: while the user's unsent bytes exceed the high water mark the upstream
is paused; it resumes below a quarter of it. We never re-pause from inside resume_reading() (asyncssh flushes its
buffer there); we decide after it returns. Nothing here awaits the store: commands, audit events and the
end of the session go through the journal.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..audit import Audit
from ..commands import Verdict
from ..gate import CommandGate
from ..journal import Journal
from ..protocol import control
from ..recorder import NullRecorder, Recorder
from ..store import Command, Host, Session, User
from .doors import FrontDoor, Upstream
from .reattach import HeldDoor
from .replay import REPLAY_WINDOW, ReplayWindow, SnapshotScreen
from .watchers import Item, Watcher, share_budget

if TYPE_CHECKING:
    from .participants import SessionControls

log = logging.getLogger(__name__)
HIGH_WATER = 1024 * 1024  # unsent bytes to the user's door before the upstream is paused (at most; see engine)
RESIZE_INTERVAL = 0.1  # at most 10 resizes a second reach the host and the recording

REASON_TEXT = {
    "exit": "the remote shell exited",
    "closed": "the session was closed",
    "host_lost": "the connection to the host was lost",
    "idle": "the session was idle for too long",
    "expired": "the session reached its maximum duration",
    "revoked": "access to this host was withdrawn",
    "slow_client": "the terminal stopped reading output",
    "shutdown": "the bastion is shutting down",
    "interrupted": "the bastion stopped unexpectedly",
    "failed": "the session could not start",
    "record_failed": "the session could not be recorded",
}


@dataclass(frozen=True)
class SessionSettings:
    """What a live session needs from the configuration."""

    notify_watched: bool
    on_record_failure: str  # terminate | warn
    watcher_queue_bytes: int


class LiveSession:
    """One live session: the user's door, the upstream, recorder, gate, replay window and watchers."""

    def __init__(self, record: Session, user: User, host: Host, door: FrontDoor, recorder: Recorder, *,
                 settings: SessionSettings, verdict: Callable[[str, User, Host], Awaitable[Verdict]],
                 journal: Journal, audit: Audit, on_closed: Callable[["LiveSession", str], None],
                 io: Executor, high_water: int = HIGH_WATER, replay_limit: int = REPLAY_WINDOW) -> None:
        self.record = record
        self.high_water = high_water
        self.low_water = high_water // 4
        self.id = record.id
        self.user = user
        self.host = host
        self.door = door
        self.recorder = recorder
        self.settings = settings
        self._verdict = verdict
        self._journal = journal
        self._audit = audit
        self._on_closed = on_closed
        self.cols, self.rows = record.cols, record.rows
        self.gate = CommandGate(self.cols, self.rows, write=self._write_upstream, check=self._check,
                                on_command=self._command_decided, notice=self.notice)
        self.screen_for_watchers = SnapshotScreen(self.cols, self.rows)
        self.replay = ReplayWindow(self.cols, self.rows, self._snapshot_now, replay_limit)
        self.watchers: set[Watcher] = set()
        self.upstream: Upstream | None = None
        self.started = time.monotonic()
        self._last_out = self._last_in = self.started
        self._input: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=1000)  # (keys, who typed: "" = owner)
        self.controls: SessionControls | None = None  # four eyes: participants, pause, review (participants.py)
        self._window: int | None = None  # the SSH window this session's share allows (None: as opened)
        self._held: HeldDoor | None = None  # while the user's door is away (see reattach.py)
        self._grace_timer: asyncio.TimerHandle | None = None
        self._feeding = False  # the input pump is deciding something (input must queue behind it)
        self._recorded_ahead = False  # the input at the head of the queue was recorded by send_input
        self._pump: asyncio.Task | None = None
        self.bytes_out = 0
        self.closing = False
        self.expiry_warned = False
        self._done: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._pending = 0
        self._last_drain = self.started
        self._paused = False
        self._resuming = False
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_scheduled = False
        self._want_size = (self.cols, self.rows)
        self._resized_at = 0.0
        self._resize_timer: asyncio.TimerHandle | None = None
        self._io = io
        self._tasks: set[asyncio.Task] = set()
        recorder.on_written = self._try_resume

    def __repr__(self) -> str:
        return f"[session={self.id} user={self.record.username} host={self.record.host_name}]"

    # ---- observables --------------------------------------------------------------------------------
    @property
    def username(self) -> str:
        return self.record.username

    @property
    def last_activity(self) -> float:
        """When output last reached the user or input last reached the host (monotonic)."""
        return max(self._last_out, self._last_in)

    @property
    def paused(self) -> bool:
        """Whether the upstream is paused because the user's door lags."""
        return self._paused

    @property
    def pending_bytes(self) -> int:
        """Output handed to the user's door and not yet written."""
        return self._pending

    def stalled_for(self, now: float) -> float:
        """Seconds the user's door has had output pending without draining any (0 when it keeps up, and while
        the door is away: the reconnect grace bounds that wait)."""
        return now - self._last_drain if self._pending > 0 and self._held is None else 0.0

    @property
    def detached(self) -> bool:
        """The user's door went away and the session waits for it to come back."""
        return self._held is not None

    # ---- the user's door going away and coming back ----------------------------------------------------
    def detach(self, grace: float) -> None:
        """The user's door closed unexpectedly: keep the session for `grace` seconds for it to come back."""
        if self.closing or self._held is not None:
            return
        self._held = HeldDoor()
        self.door = self._held
        self._grace_timer = asyncio.get_running_loop().call_later(
            grace, lambda: self._spawn_close("closed", note=f"the browser did not come back within {grace:g} s"))
        self.recorder.marker("the user's browser disconnected")

    def reattach(self, door: FrontDoor, fresh: bool) -> None:
        """The user's door is back. A fresh terminal gets the recent screen; one that kept its screen gets
        exactly the output it missed."""
        held = self._held
        if held is None or self.closing:
            raise RuntimeError("the session is not waiting for its user")
        self._held = None
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        self._flush_output()
        self.door = door
        door.send_control(control("session", id=self.id, resumed=True))
        if fresh:
            held.release()
            for item in self.replay.frames():
                if isinstance(item, bytes):
                    door.send_output(item)
        else:
            held.hand_over(door)
        door.send_control(control("notice", level="info", message="reconnected to the same session"))
        self.recorder.marker("the user's browser reconnected")

    @property
    def watcher_count(self) -> int:
        return len(self.watchers)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def set_share(self, window: int, high_water: int, replay_limit: int) -> None:
        """This session's part of the process's output budget changed (sessions opened or closed)."""
        self.high_water, self.low_water = high_water, high_water // 4
        self.replay.limit = replay_limit
        self.recorder.limit_buffer(high_water // 2)  # written out at half its share, the host paused past all of it
        self._window = window
        if self.upstream is not None:
            self.upstream.limit_buffer(window)

    # ---- upstream → user ---------------------------------------------------------------------------------
    def attach_upstream(self, upstream: Upstream) -> None:
        """The upstream is connected: input may flow."""
        self.upstream = upstream
        if self._window is not None:  # sessions opened while this one connected: its share changed meanwhile
            upstream.limit_buffer(self._window)
        self._pump = asyncio.get_running_loop().create_task(self._pump_input())

    def on_output(self, data: bytes) -> None:
        """Upstream data: coalesced per loop iteration (asyncssh hands over one ≤32 KiB packet per call)."""
        self._out.append(data)
        self._out_size += len(data)
        if not self._flush_scheduled:
            if self._last_in > self._last_out:  # the answer to the user's input (an echo): no wait to coalesce
                self._flush_output()
            else:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_output)
        if self._over() and not self._paused and not self._resuming and self.upstream is not None:
            self._paused = True
            self.upstream.pause_reading()

    def _over(self) -> bool:
        """Past this session's share: unsent output, or a recording backlog the disk has not taken yet."""
        return self._pending + self._out_size > self.high_water or self.recorder.backlog > self.high_water

    def _flush_output(self) -> None:
        """One step for the whole batch: user door, recorder, screen, replay window, watchers."""
        self._flush_scheduled = False
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        self.bytes_out += len(data)
        self._last_out = time.monotonic()
        fut = self.door.send_output(data)
        if fut is not None:
            if self._pending == 0:
                self._last_drain = self._last_out
            self._pending += len(data)
            fut.add_done_callback(functools.partial(self._sent, len(data)))
        self.recorder.output(data)
        self.gate.observe(data)
        self.screen_for_watchers.feed(data)
        self.replay.output(data)
        for watcher in self.watchers:
            watcher.push(data)

    def _sent(self, size: int, fut: "asyncio.Future[Any]") -> None:
        self._pending -= size
        self._last_drain = time.monotonic()
        if not fut.cancelled():
            fut.exception()  # retrieved: a closed door is handled by its own close path
        self._try_resume()

    def _try_resume(self) -> None:
        """Output was sent or the recording written: resume the upstream once both are below their marks."""
        upstream = self.upstream
        if (self._paused and self._pending <= self.low_water and self.recorder.backlog <= self.high_water // 2
                and upstream is not None and not self.closing):
            self._paused = False
            self._resuming = True
            try:
                upstream.resume_reading()
            finally:
                self._resuming = False
            if self._over() and not self.closing:  # decided after resume_reading() returned
                self._paused = True
                upstream.pause_reading()

    def on_upstream_closed(self, reason: str, note: str = "") -> None:
        if not self.closing:
            self._spawn_close(reason, note=note)

    def _spawn_close(self, reason: str, note: str = "") -> None:
        """Close from a callback: the task is kept by reference until it ends."""
        task = asyncio.get_running_loop().create_task(self.close(reason, note=note))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- user → upstream ---------------------------------------------------------------------------------
    def send_input(self, data: str, by: str = "") -> None:
        """Input from the user's door (or a joined peer, `by`), queued for the input pump (the gate checks commands
        on Enter)."""
        if self.upstream is None or self.closing:
            self.door.send_control(control("notice", message="not connected yet; input dropped"))
            return
        if self.controls is not None and self.controls.refuses_input():
            return
        if self._resize_timer is not None:  # a pending resize reaches the host before the keys typed after it
            self._resize_timer.cancel()
            self._apply_resize()
        if not self._feeding and self._input.empty():  # nothing queued before it: a plain key goes out at once
            self._record_input(data, by)
            try:
                if self.gate.feed_now(data):
                    return
            except Exception:
                self._input_failed()
                return
            self._recorded_ahead = True
        try:
            self._input.put_nowait((data, by))
        except asyncio.QueueFull:
            self.door.send_control(control("notice", message="input is arriving faster than the host reads it; dropped"))

    def _write_upstream(self, data: bytes) -> None:
        if self.upstream is not None and not self.closing:
            self._last_in = time.monotonic()
            self.upstream.write(data)

    async def _pump_input(self) -> None:
        while not self.closing:
            data, by = await self._input.get()
            self._feeding = True
            if self._recorded_ahead:  # send_input recorded it before trying the fast path
                self._recorded_ahead = False
            else:
                self._record_input(data, by)
            try:
                await self.gate.feed(data)
            except Exception:
                self._input_failed()
            finally:
                self._feeding = self._input.qsize() > 0

    def _record_input(self, data: str, by: str) -> None:
        controls = self.controls
        if controls is not None and controls.attributing:  # a shared session: whose keys these are
            controls.typist = by or self.username
            self.recorder.input_by(data, controls.typist)
        else:
            self.recorder.input(data)

    def _input_failed(self) -> None:
        """Fail closed and say so: the keys were not sent."""
        log.exception("input handling failed %r", self)
        self.notice("error", "this input could not be checked and was not sent; press Ctrl-C and retype it")

    async def _check(self, command: str) -> Verdict:
        verdict = await self._verdict(command, self.user, self.host)
        if verdict.action == "review":  # held until an approver decides; without the controls, refused
            return await self.controls.review(command, verdict) if self.controls else Verdict("deny", verdict.rule)
        return verdict

    def _command_decided(self, command: str, verdict: Verdict) -> None:
        """Log, tell watchers and audit a command the gate decided on (never waits for the store)."""
        blocked, flagged = verdict.action == "deny", verdict.action == "warn"
        r = self.record
        self._journal.command(Command(session_id=r.id, user_id=r.user_id, username=r.username, host_id=r.host_id,
                                      host_name=r.host_name, offset=self.elapsed(), text=command, blocked=blocked,
                                      flagged=flagged, rule=verdict.rule, review=verdict.review,
                                      by=self.controls.typist if self.controls and self.controls.attributing else ""))
        if blocked or flagged:
            self._audit.emit("command.blocked" if blocked else "command.flagged", actor=r.username,
                             target=r.host_name, ok=not blocked, session=r.id, command=command[:500], rule=verdict.rule)
        frame = control("command", command=command, blocked=blocked, flagged=flagged, review=verdict.review)
        for watcher in self.watchers:
            watcher.push_control(frame)

    def note_activity(self) -> None:
        """Traffic that bypasses the terminal path (the SSH gateway's sftp proxy) keeps the session from idling."""
        self._last_in = time.monotonic()

    async def decide(self, command: str) -> Verdict:
        """Check a command given whole up front (an SSH gateway exec) and log it like one typed at the prompt."""
        verdict = await self._check(command)
        self._command_decided(command, verdict)
        return verdict

    def notice(self, level: str, message: str) -> None:
        """A notice to the user's door (gate refusals, filter outages, warnings about this session)."""
        frame = control("notice", level=level, message=message)
        self.door.send_control(frame)

    def resize(self, cols: int, rows: int) -> None:
        """The user's terminal changed size: coalesced to at most one change per RESIZE_INTERVAL."""
        if self.closing:
            return
        self._want_size = (cols, rows)
        now = time.monotonic()
        if self._resize_timer is not None:
            return
        wait = self._resized_at + RESIZE_INTERVAL - now
        if wait <= 0:
            self._apply_resize()
        else:
            self._resize_timer = asyncio.get_running_loop().call_later(wait, self._apply_resize)

    def _apply_resize(self) -> None:
        self._resize_timer = None
        cols, rows = self._want_size
        if (cols, rows) == (self.cols, self.rows) or self.closing:
            return
        self._resized_at = time.monotonic()
        self._flush_output()  # output drawn at the old size goes out (and to the replay) before the resize
        self.cols, self.rows = cols, rows
        if self.upstream is not None:
            self.upstream.resize(cols, rows)
        self.recorder.resize(cols, rows)
        self.gate.resize(cols, rows)
        self.screen_for_watchers.resize(cols, rows)
        self.replay.resize(cols, rows)
        frame = control("resize", cols=cols, rows=rows)
        for watcher in self.watchers:
            watcher.push_control(frame)

    # ---- watchers ----------------------------------------------------------------------------------------
    def _snapshot_now(self) -> bytes:
        """The current screen as ANSI, rendered here (a watcher joining after the replay window overflowed)."""
        return self.screen_for_watchers.render(self.screen_for_watchers.cut())

    async def _resync_frames(self) -> list[Item]:
        """What a watcher that fell behind gets: the size and the screen, rendered in the I/O pool."""
        size = control("resize", cols=self.cols, rows=self.rows)
        cut = self.screen_for_watchers.cut()
        shot = await asyncio.get_running_loop().run_in_executor(self._io, self.screen_for_watchers.render, cut)
        return [size, shot]

    def attach_watcher(self, door: FrontDoor, username: str) -> Watcher:
        """A read-only watcher: it first sees the recent output (or the screen), then live output."""
        self._flush_output()
        watcher = Watcher(door, username, self.settings.watcher_queue_bytes, self._resync_frames, self.detach_watcher)
        frames = self.replay.frames()
        frames.insert(1, b"\x1bc")  # after the size, a reset: a re-watch (hub reconnect) redraws from scratch
        watcher.push_initial(frames)
        self.watchers.add(watcher)
        share_budget(self.watchers)
        watcher.start()
        if self.settings.notify_watched:
            self.door.send_control(control("notice", message=f"{username} started watching this session"))
        return watcher

    def detach_watcher(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)
        share_budget(self.watchers)
        watcher.close()

    def record_failed(self, reason: str) -> None:
        """The recorder could not write: end the session or go on unrecorded, as configured."""
        if self.settings.on_record_failure == "terminate":
            self._spawn_close("record_failed", note=reason)
        else:
            self.recorder = NullRecorder()
            self._try_resume()  # output paused on the failed recording's backlog flows again
            self.notice("warn", f"warning: {reason}; this session is no longer recorded")
            for watcher in self.watchers:
                watcher.push_control(control("notice", message=f"warning: {reason}"))

    # ---- the one close path ---------------------------------------------------------------------------
    async def close(self, reason: str, *, by: str = "", note: str = "") -> Session:
        """End the session once, whatever ended it; later calls wait for the first to finish."""
        if self.closing:
            return await asyncio.shield(self._done)
        self.closing = True
        # a task of its own: a caller cancelled half-way (a job stopped at shutdown) must not leave the session
        # half-closed, its recording unsealed and its end never journaled
        task = asyncio.get_running_loop().create_task(self._close(reason, by, note))
        self._tasks.add(task)
        task.add_done_callback(self._close_finished)
        return await asyncio.shield(self._done)

    def _close_finished(self, task: "asyncio.Task[Session]") -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self._done.cancel()
        elif task.exception() is not None:
            self._done.set_exception(task.exception())
        else:
            self._done.set_result(task.result())

    async def _close(self, reason: str, by: str, note: str) -> Session:
        self._flush_output()  # output already read still reaches the user, the recording and watchers
        if self._resize_timer is not None:
            self._resize_timer.cancel()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        text = REASON_TEXT.get(reason, reason)
        if reason == "kicked":
            text = f"ended by {by}" + (f": {note}" if note else "")
        elif note:
            text = f"{text}: {note}"
        frame = control("closed", reason=text, code=reason, by=by)
        self.door.send_control(frame)
        self.door.hang_up()
        for watcher in list(self.watchers):
            watcher.close(frame)
        self.watchers.clear()
        if self._pump is not None:
            self._pump.cancel()
        if self.upstream is not None:
            self.upstream.close()
        self.recorder.marker(f"session ended: {text}")
        result = None
        try:
            result = await self.recorder.close()
        except Exception:
            log.exception("closing recording failed %r", self)
        record = self.record
        record.live = False
        record.ended_at = time.time()
        record.end_reason, record.ended_by, record.reason = reason, by, note
        record.bytes_out = self.bytes_out
        if result is not None:
            record.recording_size, record.recording_sha256, record.recording_chain = result.size, result.sha256, result.chain
        self._journal.end_session(record)
        self._audit.emit("session.kicked" if reason == "kicked" else "session.ended", actor=by or record.username,
                         target=record.host_name, session=self.id, reason=reason, note=note, bytes=self.bytes_out)
        self._on_closed(self, reason)
        log.info("session ended (%s) %r", reason, self)
        return record
