"""SessionEngine: admits and opens live sessions, enforces policy on them, and shuts them down.

Admission is atomic: a slot is reserved in the hub (this node's memory, or Redis across nodes) before the
WebSocket upgrade and released when the session closes, so a burst of opens cannot exceed the per-user limit.
Opening a session writes its document, opens its recording, connects the upstream, and registers it in the hub.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, Iterator

from ..audit import Audit
from ..commands import RuleCache
from ..config import Config
from ..errors import BastionError, Conflict, NotFound
from ..hostkeys import HostKeyTrust
from ..hub import SessionHub
from ..inventory import Inventory, granted
from ..journal import Journal
from ..protocol import control
from ..recorder import AsciicastRecorder, NullRecorder, Recorder, recording_path
from ..ssh import Target
from ..store import AccessLock, Grant, Host, Session, Store, User
from ..vault import derive_key
from .doors import FrontDoor, Upstream
from .replay import REPLAY_WINDOW
from .session import HIGH_WATER, LiveSession, SessionSettings
from .ssh_upstream import SSHUpstream

log = logging.getLogger(__name__)
MIN_SHARE = 64 * 1024  # the smallest SSH window, high water mark and replay window a session gets from the budget


@dataclass(frozen=True)
class OutputShare:
    """What one session may buffer: SSH window, unsent bytes to its door, replay window for late watchers."""

    window: int
    high_water: int
    replay: int
SHUTDOWN_CLOSE_WAIT = 15.0  # seconds shutdown waits for live sessions to close (recordings flushed and fsync'd)
MAX_OPENING_PER_ADDRESS = 20  # terminal opens in flight from one client address (a burst is refused early)
# Connects a session's upstream other than the default PTY shell (SSH gateway exec and sftp): given the session,
# the target (credential opened) and the SSH window, returns a connected Upstream or raises BastionError.
Connector = Callable[[LiveSession, int], Awaitable[Upstream]]  # (session, SSH window) → its upstream


@dataclass
class SessionMetrics:
    """Counters of this node's sessions (for /metrics), counted where they happen, once."""

    started: int = 0
    kicks: int = 0
    bytes_closed: int = 0  # output bytes of sessions already ended


@dataclass
class Admission:
    """A reserved slot for one session of a user (released when the session closes or the open fails)."""

    user_id: str
    address: str
    slot: str
    released: bool = False


class SessionEngine:
    """Opens sessions (limits, documents, recordings, upstreams) and applies user/grant policy to them."""

    def __init__(self, config: Config, store: Store, audit: Audit, journal: Journal, hub: SessionHub,
                 inventory: Inventory, trust: HostKeyTrust, rules: RuleCache, io: Executor) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self.journal = journal
        self.hub = hub
        self.inventory = inventory
        self.trust = trust
        self.rules = rules
        self.io = io
        self.metrics = SessionMetrics()
        # set by the pod-terminal service: (user or None, pod session records) → {session id: why it must end}
        self.pod_policy: Callable[[User | None, list[Session]], Awaitable[dict[str, str]]] | None = None
        self.record_key = derive_key(config.secret, b"bastion recordings v1")
        self._opening: dict[str, int] = {}
        self._tasks: set[asyncio.Task] = set()
        tcfg = config.terminal
        self.settings = SessionSettings(notify_watched=tcfg.notify_monitored, on_record_failure=tcfg.on_record_failure,
                                        watcher_queue_bytes=tcfg.monitor_queue_bytes)
        hub.on_policy_changed(self.enforce_user)
        self.session_hooks: list[Callable[[LiveSession], None]] = []  # run on each new session (four eyes' controls)

    # ---- admission --------------------------------------------------------------------------------------
    async def admit(self, user: User, host: Host, address: str) -> Admission:
        """Check grant and locks, then reserve one of the user's session slots (before the upgrade)."""
        if not await self.inventory.may_open(user, host):
            raise NotFound("host not found")
        lock = await self.store.active_lock(user.id, host.id)
        if lock is not None:
            raise Conflict(f"you are locked out of this host until {time.strftime('%H:%M UTC', time.gmtime(lock.until))}"
                           + (f": {lock.reason}" if lock.reason else ""))
        return await self.reserve(user, address)

    async def reserve(self, user: User, address: str) -> Admission:
        """Reserve one of the user's session slots (the caller has checked the grant; pod terminals do so)."""
        with self._opening_from(address):
            slot = await self.hub.reserve(user.id, self.config.terminal.max_sessions_per_user)
        return Admission(user_id=user.id, address=address, slot=slot)

    @contextmanager
    def _opening_from(self, address: str) -> Iterator[None]:
        if self._opening.get(address, 0) >= MAX_OPENING_PER_ADDRESS:
            raise Conflict("too many terminals are being opened from your address at once; try again")
        self._opening[address] = self._opening.get(address, 0) + 1
        try:
            yield
        finally:
            self._opening[address] -= 1
            if not self._opening[address]:
                del self._opening[address]

    def resumable(self, session_id: str, user: User, host_id: str) -> LiveSession:
        """The user's own session on this host, waiting on this node for its browser to come back."""
        session = self.hub.get(session_id) if len(session_id) <= 64 else None
        if (session is None or session.closing or not session.detached or session.record.user_id != user.id
                or session.record.host_id != host_id):
            raise NotFound("that session can no longer be resumed; open a new one")
        return session

    def release(self, admission: Admission) -> None:
        """Give the slot back (idempotent)."""
        if not admission.released:
            admission.released = True
            self.hub.release(admission.user_id, admission.slot)

    # ---- opening ----------------------------------------------------------------------------------------
    async def open_session(self, admission: Admission, user: User, host: Host, cols: int, rows: int,
                           door: FrontDoor, address: str, *, via: str = "", command: str = "",
                           connect: Connector | None = None, fields: dict[str, str] | None = None) -> LiveSession:
        """Create the session document and recording, connect, and register it in the hub.

        `via` names a front door other than the browser (the SSH gateway: ssh, exec, sftp) and `command` an exec
        session's command; `connect(session, window)` opens another kind of upstream (a pod, a gateway exec or
        sftp channel); the default is the host's SSH shell. `fields` are extra Session fields (a pod session's
        cluster, namespace, pod and container)."""
        now = time.time()
        record = Session(host_id=host.id, host_name=host.name, user_id=user.id, username=user.username,
                         group=f"{host.name}-{user.username}-{int(now)}", cols=cols, rows=rows, live=True,
                         node=self.config.node_id, started_at=now, address=address, via=via, command=command[:2000],
                         **(fields or {}))
        path = recording_path(self.config.records_dir, record.id, now)
        record.recording_path = str(path)
        try:
            await self.store.create_session(record)
        except BaseException:
            self.release(admission)
            raise
        door.send_control(control("session", id=record.id))
        holder: dict[str, LiveSession] = {}
        recorder: Recorder = AsciicastRecorder(
            path, cols=cols, rows=rows, title=f"{user.username}@{host.name}", key=self.record_key, io=self.io,
            record_input=self.config.terminal.record_input,
            on_failure=lambda why: holder["s"].record_failed(why) if "s" in holder else None)

        def closed(session: LiveSession, reason: str) -> None:
            self.release(admission)
            self.hub.unregister(session)
            self._rebalance()
            self.metrics.bytes_closed += session.bytes_out
            if reason == "kicked":
                self.metrics.kicks += 1

        share = self._output_share(len(self.hub.live()) + 1)
        session = LiveSession(record, user, host, door, recorder, settings=self.settings, verdict=self.rules.verdict,
                              journal=self.journal, audit=self.audit, on_closed=closed, io=self.io,
                              high_water=share.high_water, replay_limit=share.replay)
        holder["s"] = session
        for hook in self.session_hooks:
            hook(session)
        self.hub.register(session)
        self._rebalance()
        try:
            await recorder.open()  # type: ignore[attr-defined]
        except OSError as exc:
            why = f"recording cannot be created: {exc.strerror or type(exc).__name__}"
            log.error("%s %r", why, session)
            if self.config.terminal.on_record_failure == "terminate":
                await session.close("record_failed", note=why)
                return session
            session.recorder = NullRecorder()
            door.send_control(control("notice", message=f"warning: {why}; this session is not recorded"))
        try:
            upstream = await (connect or self._connect_ssh)(session, share.window)
            if session.closing:
                upstream.close()
                return session
            session.attach_upstream(upstream)
            await self.rules.current()  # warm the rules cache before the first Enter
        except BastionError as exc:
            self.audit.emit("session.refused", actor=user.username, target=host.name, ok=False, session=record.id,
                            why=exc.message, address=address)
            await session.close("failed", note=exc.message)
            return session
        if not session.closing:
            self.metrics.started += 1
            self.audit.emit("session.started", actor=user.username, target=host.name, address=address,
                            session=record.id)
            log.info("session started %r", session)
        return session

    async def ssh_target(self, host: Host) -> Target:
        """Where and as whom to reach a host over SSH (its credential opened, its pinned key)."""
        cred = await self.store.get_credential(host.credential_id)
        if cred is None:
            raise BastionError(f"{host.name} has no usable credential; ask an admin")
        return Target(name=host.name, address=host.address, port=host.port, username=cred.username,
                      kind=cred.kind, secret=self.inventory.open_secret(cred), pinned_key=host.host_key)

    async def _connect_ssh(self, session: LiveSession, window: int) -> Upstream:
        """The host's interactive SSH shell (pinned host key, the host's credential)."""
        host, cols, rows = session.host, session.cols, session.rows
        target = await self.ssh_target(host)
        tcfg = self.config.terminal
        return await SSHUpstream.open(
            target, host, session.username, session, cols=cols, rows=rows, trust=self.trust,
            connect_timeout=tcfg.connect_timeout, keepalive=tcfg.keepalive_interval, window=window,
            env=self._environment(host))

    def _output_share(self, sessions: int) -> "OutputShare":
        """One session's part of the process's output budget when `sessions` are live.

        A session buffers at most its SSH window (in asyncssh), its high water mark (unsent socket data) and its
        replay window (for late watchers): half, a quarter and a quarter of an equal share of `output_budget`,
        so memory stays within the budget as sessions multiply (never below 64 KiB each)."""
        tcfg = self.config.terminal
        share = tcfg.output_budget // max(1, sessions)
        return OutputShare(window=max(MIN_SHARE, min(tcfg.ssh_window, share // 2)),
                           high_water=max(MIN_SHARE, min(HIGH_WATER, share // 4)),
                           replay=max(MIN_SHARE, min(REPLAY_WINDOW, share // 4)))

    def _rebalance(self) -> None:
        """Sessions opened or closed: every live session's buffers follow the new share (an SSH window shrinks
        but never grows past the size it opened with)."""
        share = self._output_share(len(self.hub.live()))
        for session in self.hub.live():
            session.set_share(share.window, share.high_water, share.replay)

    def _environment(self, host: Host) -> dict[str, str]:
        """The user's locale as SSH environment (hosts that do not AcceptEnv it simply ignore it)."""
        locale = host.locale or self.config.terminal.locale
        return {"LANG": locale, "LC_CTYPE": locale} if locale else {}

    # ---- policy -----------------------------------------------------------------------------------------
    async def enforce_user(self, user_id: str, by: str = "", why: str = "") -> int:
        """End this node's sessions of a user who is disabled, lost the grant, or is locked out of the host.

        A few queries per user whatever the number of sessions (user, grants, locks, each distinct host once):
        this runs for every user with a live session every `policy_recheck_interval` seconds."""
        sessions = [s for s in self.hub.live() if s.record.user_id == user_id and not s.closing]
        if not sessions:
            return 0
        user = await self.store.get_user(user_id)
        grants = await self.store.grants_of_user(user_id) if user is not None else []
        locks = await self.store.locks_of_user(user_id) if user is not None else []
        hosts: dict[str, Host | None] = {}
        for host_id in {s.record.host_id for s in sessions if not s.record.cluster}:
            hosts[host_id] = await self.store.get_host(host_id)
        pod_refusals = await self.pod_policy(user, [s.record for s in sessions if s.record.cluster]) \
            if self.pod_policy is not None else {}
        ended = 0
        for session in sessions:
            if session.record.cluster:  # a pod session: its cluster's grants decide (bastion/k8s)
                note = pod_refusals.get(session.id, "")
            else:
                note = _refusal(user, hosts[session.record.host_id], grants, locks)
            if note and not session.closing:
                try:
                    await session.close("revoked", by=by or "policy", note=why or note)
                    ended += 1
                except Exception:
                    log.exception("ending a revoked session failed %r", session)
        return ended

    async def lock_out(self, record: Session, *, minutes: int, every_host: bool, reason: str, by: str) -> AccessLock:
        """Keep a user out of a session's host (or every host) for a while; their other affected sessions end."""
        lock = AccessLock(user_id=record.user_id, username=record.username, host_id="" if every_host else record.host_id,
                          host_name="" if every_host else record.host_name, until=time.time() + minutes * 60,
                          reason=reason, created_by=by)
        await self.store.create_lock(lock)
        await self.audit.record("access.locked", actor=by, target=record.username, host=lock.host_name or "all",
                                minutes=minutes, reason=reason, session=record.id)
        await self.hub.policy_changed(record.user_id, by=by, why="locked out by " + by)
        return lock

    async def recheck_all(self) -> int:
        """Re-check every live session of this node (catches policy changes whose event was missed)."""
        ended = 0
        for user_id in {s.record.user_id for s in self.hub.live() if not s.closing}:
            try:
                ended += await self.enforce_user(user_id)
            except Exception:
                log.exception("policy re-check failed [user=%s]", user_id)
        return ended

    # ---- tasks and shutdown -------------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> "asyncio.Task[Any]":
        """Run a coroutine from a callback (socket closed, watcher left), kept by reference, awaited at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed", exc_info=task.exception())

    async def shutdown(self) -> None:
        """End every live session of this node (reason `shutdown`), waiting (bounded) for recordings to close."""
        # Closing a session never awaits its sockets (a peer that stops reading cannot hold it), but it does await
        # its recording's last write: the wait is bounded so a wedged disk cannot hold shutdown forever either.
        closes = [self.spawn(s.close("shutdown")) for s in self.hub.live()]
        if closes:
            _, pending = await asyncio.wait(closes, timeout=SHUTDOWN_CLOSE_WAIT)
            if pending:
                log.warning("%d sessions did not finish closing within %g s of shutdown", len(pending),
                            SHUTDOWN_CLOSE_WAIT)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)


def _refusal(user: User | None, host: Host | None, grants: list[Grant], locks: list[AccessLock]) -> str:
    """Why a session may no longer run ("" when it may)."""
    if user is None:
        return "the user was deleted"
    if user.disabled:
        return "the user was disabled"
    if host is None:
        return "the host was deleted"
    if not granted(grants, host):
        return "access to this host was revoked"
    if any(lock.host_id in ("", host.id) for lock in locks):
        return "the user is locked out of this host"
    return ""
