"""Journal: what the keystroke and close paths write, without ever awaiting the store.

Commands, audit events and session ends are appended to a bounded in-memory queue and, in batches, to an
append-only file under `<data_dir>/journal/` that is fsync'd (in the I/O pool) before the batch is applied to
the store. Applying is idempotent (records carry their id; a clash means "already stored", a session that is
no longer live is already ended), so replaying the file after a crash or an outage stores nothing twice.
While the store does not answer, the writer retries with backoff and the file keeps growing; memory stays
bounded because past `max_memory` entries the queue keeps only what the file holds and reloads it later.
Once everything in the file has reached the store it is emptied, lazily (past TRUNCATE_AT bytes, and when the
journal closes): replaying a drained file is harmless, and skipping a truncate and its fsync per command keeps
that work away from busy sessions.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import Conflict
from .store import Command, Event, Session, Store
from .tasks import stop_tasks

log = logging.getLogger(__name__)
# A wake-up is acted on this much later: the command just decided is forwarded first, and its output and the next
# prompt reach the user before the journal's fsync and store insert compete with them for the loop and the GIL
# (bench_keystroke: Enter p50 1.03–1.26 → 0.88–0.97 ms, first key after a prompt 0.80–0.94 → 0.57–0.63 ms);
# entries arriving meanwhile share one write. The window a crash can lose grows by as much. A session's end is
# written at once (the session list should not show a kicked session live).
JOURNAL_DELAY = 0.01
BATCH = 500
TRUNCATE_AT = 256 * 1024  # bytes in a fully applied file before it is emptied (it always is at close)


@dataclass
class Entry:
    """One journaled write: `kind` is command | event | session_end; `doc` is the record as stored."""

    kind: str
    doc: dict[str, Any]

    def line(self) -> bytes:
        return json.dumps({"kind": self.kind, "doc": self.doc}, separators=(",", ":")).encode() + b"\n"


class Journal:
    """Bounded queue + fsync'd append-only file in front of the store, for writes that must not be awaited."""

    def __init__(self, directory: Path, node: str, store: Store, io: Executor, *, max_memory: int = 50_000) -> None:
        self.path = directory / f"{node}.jsonl"
        self.store = store
        self.io = io
        self.max_memory = max_memory
        self._queue: deque[Entry] = deque()
        self._unwritten: list[Entry] = []  # appended but not yet in the file
        self._spilled = False  # entries were dropped from memory: reload from the file once memory drains
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._urgent = asyncio.Event()  # a session's end waits for no one: readers of the session list expect it
        self._file_bytes = 0  # appended since the file was last emptied (by this process)
        self.retries = 0

    # ---- the non-blocking side --------------------------------------------------------------------------
    def command(self, command: Command) -> None:
        self._append(Entry("command", command.to_doc()))

    def event(self, event: Event) -> None:
        self._append(Entry("event", event.to_doc()))

    def end_session(self, session: Session) -> None:
        """`session` already carries live=False and its end fields."""
        self._urgent.set()
        self._append(Entry("session_end", session.to_doc()))

    def _append(self, entry: Entry) -> None:
        self._unwritten.append(entry)
        if len(self._queue) < self.max_memory:
            self._queue.append(entry)
        else:
            self._spilled = True
        self._wake.set()

    @property
    def pending(self) -> int:
        """Entries not yet in the store (in memory; more may wait in the file after a spill)."""
        return len(self._queue)

    # ---- lifecycle ----------------------------------------------------------------------------------------
    async def open(self) -> int:
        """Create the folder (0700), load what a previous run left unapplied, start the writer."""
        def load() -> list[Entry]:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.path.parent, 0o700)
            if not self.path.exists():
                return []
            return _read(self.path)
        left = await asyncio.get_running_loop().run_in_executor(self.io, load)
        for entry in left[: self.max_memory]:
            self._queue.append(entry)
        self._spilled = len(left) > self.max_memory
        self._task = asyncio.get_running_loop().create_task(self._run())
        if left:
            log.info("journal: %d writes left by a previous run will be applied", len(left))
        return len(left)

    async def close(self, timeout: float = 5.0) -> None:
        """Write the file, try to drain into the store for up to `timeout` s; what is left stays in the file."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                # bounded too: a cancellation lost inside a store call would leave the writer running, this wait endless
                await stop_tasks([self._task], timeout, "journal writers")
        await self._write_file()
        if not self._queue and not self._spilled:
            await self._after_drain(force=True)

    async def drained(self, timeout: float) -> bool:
        """Wait until everything reached the store (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._queue or self._unwritten:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # ---- the writer ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self._queue and not self._unwritten:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                if not self._closing:
                    try:  # asyncio.timeout, not wait_for: a cancellation at shutdown must not be lost here
                        async with asyncio.timeout(JOURNAL_DELAY):
                            await self._urgent.wait()
                    except TimeoutError:
                        pass
            self._urgent.clear()
            await self._write_file()
            batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
            done = 0
            try:
                for entry in batch:
                    await self._apply(entry)
                    done += 1
                backoff = 0.1
            except Exception as exc:
                self.retries += 1
                if self.retries in (1, 10) or self.retries % 100 == 0:
                    log.warning("journal: the store does not answer (%s); %d writes wait, retrying",
                                type(exc).__name__, len(self._queue))
                if self._closing:
                    for _ in range(done):
                        self._queue.popleft()
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            for _ in range(done):
                self._queue.popleft()
            if not self._queue:
                await self._after_drain()

    async def _write_file(self) -> None:
        if not self._unwritten:
            return
        data = b"".join(e.line() for e in self._unwritten)
        self._unwritten.clear()

        def append() -> None:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        try:
            await asyncio.get_running_loop().run_in_executor(self.io, append)
            self._file_bytes += len(data)
        except OSError:
            log.exception("journal: cannot write %s; writes stay in memory only", self.path)

    async def _after_drain(self, force: bool = False) -> None:
        """Memory is empty: reload a spill from the file, or empty the file when it holds nothing new (once it
        is big enough to be worth it, or `force`)."""
        if self._unwritten:
            return
        if self._spilled:
            self._spilled = False
            entries = await asyncio.get_running_loop().run_in_executor(self.io, _read, self.path)
            for entry in entries[: self.max_memory]:
                self._queue.append(entry)
            self._spilled = len(entries) > self.max_memory
            return

        if self._file_bytes < TRUNCATE_AT and not force:
            return
        self._file_bytes = 0

        def truncate() -> None:
            with open(self.path, "r+b") as fh:
                fh.truncate(0)
                os.fsync(fh.fileno())
        try:
            if self.path.exists():
                await asyncio.get_running_loop().run_in_executor(self.io, truncate)
        except OSError:
            log.exception("journal: cannot empty %s", self.path)

    async def _apply(self, entry: Entry) -> None:
        """Store one entry; a record already present counts as stored (replays store nothing twice)."""
        try:
            if entry.kind == "command":
                await self.store.add_command(Command.from_doc(entry.doc))
            elif entry.kind == "event":
                await self.store.add_event(Event.from_doc(entry.doc))
            elif entry.kind == "session_end":
                ended = Session.from_doc(entry.doc)
                await self.store.end_session(ended, ended.end_reason, ended_by=ended.ended_by, note=ended.reason,
                                             size=ended.recording_size, sha256=ended.recording_sha256,
                                             bytes_out=ended.bytes_out, chain=ended.recording_chain,
                                             ended_at=ended.ended_at)
            else:
                log.error("journal: unknown entry kind %r skipped", entry.kind[:20])
        except Conflict:
            pass


def _read(path: Path) -> list[Entry]:
    entries: list[Entry] = []
    if not path.exists():
        return entries
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                item = json.loads(raw)
                entries.append(Entry(str(item["kind"]), dict(item["doc"])))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash: everything before it is intact
    return entries
