"""Small jobs around live sessions: crash recovery at start-up, and the periodic reapers.

Each periodic job iterates a snapshot and isolates every item with log.exception, so one bad session
never stops the loop.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from concurrent.futures import Executor

from ..audit import Audit
from ..config import Config
from ..hub import SessionHub
from ..protocol import control
from ..store import Store
from .engine import SessionEngine

log = logging.getLogger(__name__)
EXPIRY_WARNING = 60.0  # seconds before the maximum duration when the user is warned (half of a shorter one)


async def recover_interrupted(config: Config, store: Store, audit: Audit, hub: SessionHub, io: Executor) -> int:
    """At start-up: sessions this node left live (a crash) become `interrupted`; hashing runs off the loop."""
    count = 0
    loop = asyncio.get_running_loop()
    for record in await store.live_sessions_of_node(config.node_id):
        if hub.get(record.id) is not None:
            continue
        try:
            size, digest = await loop.run_in_executor(io, file_facts, record.recording_path)
            await store.end_session(record, "interrupted", size=size, sha256=digest)
            await audit.record("session.interrupted", target=record.host_name, session=record.id,
                               user=record.username)
            count += 1
        except Exception:
            log.exception("marking session %s interrupted failed", record.id)
    return count


def file_facts(path: str) -> tuple[int, str]:
    """Size and SHA-256 of a file ((0, "") when it is missing)."""
    if not path or not os.path.exists(path):
        return 0, ""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


async def reap_sessions_once(config: Config, hub: SessionHub, now: float | None = None) -> None:
    """End idle, expired and stalled sessions of this node; warn a minute before the maximum duration."""
    tcfg = config.terminal
    now = time.monotonic() if now is None else now
    for session in hub.live():
        if session.closing:
            continue
        try:
            if tcfg.idle_timeout and now - session.last_activity > tcfg.idle_timeout:
                await session.close("idle")
            elif tcfg.max_session_duration and now - session.started >= tcfg.max_session_duration:
                await session.close("expired")
            elif session.stalled_for(now) > tcfg.slow_client_timeout:
                await session.close("slow_client")
            elif (tcfg.max_session_duration and not session.expiry_warned
                  and now - session.started >= tcfg.max_session_duration - min(EXPIRY_WARNING,
                                                                               tcfg.max_session_duration / 2)):
                session.expiry_warned = True
                left = max(1, int(tcfg.max_session_duration - (now - session.started)))
                session.door.send_control(control("notice", level="warn",
                                                  message=f"this session ends in {left} seconds (maximum duration)"))
        except Exception:
            log.exception("session reaper failed %r", session)


async def reap_sessions(config: Config, hub: SessionHub) -> None:
    """The periodic reaper (every second: warnings and limits are meant in seconds)."""
    while True:
        await asyncio.sleep(1.0)
        await reap_sessions_once(config, hub)


async def recheck_policy(config: Config, engine: SessionEngine) -> None:
    """Re-check users, grants and locks of live sessions (a missed revocation event still ends them)."""
    while True:
        await asyncio.sleep(config.terminal.policy_recheck_interval)
        try:
            await engine.recheck_all()
        except Exception:
            log.exception("policy re-check failed")
