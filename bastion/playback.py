"""Recordings after the fact: safe path lookup, verification, retention purge, terminal replay."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from .audit import Audit
from .config import Config
from .errors import NotFound
from .recorder import Verification, chain_path, verify_recording
from .store import Session, Store
from .vault import derive_key

log = logging.getLogger(__name__)


def recording_file(config: Config, record: Session) -> Path:
    """The recording of a session, only if it lies inside records_dir (never a path from a request)."""
    root = Path(config.records_dir).resolve()
    if not record.recording_path:
        raise NotFound("this session has no recording")
    path = Path(record.recording_path).resolve()
    if root not in path.parents or not path.is_file():
        raise NotFound("recording not found (purged or never written)")
    return path


def verify_session(config: Config, record: Session) -> Verification:
    key = derive_key(config.secret, b"bastion recordings v1")
    return verify_recording(recording_file(config, record), key, record.recording_chain)


async def purge(config: Config, store: Store, audit: Audit, retention_days: int, *, dry_run: bool,
                actor: str = "retention") -> list[Session]:
    """Delete recordings of sessions that started more than retention_days ago; keep metadata (purged flag)."""
    cutoff = time.time() - retention_days * 86400
    victims = [s for s in await store.sessions_started_before(cutoff, limit=5000) if s.recording_path and not s.purged]
    if dry_run or not victims:
        return victims
    removed = []
    for record in victims:
        try:
            for p in (Path(record.recording_path), chain_path(Path(record.recording_path))):
                if Path(config.records_dir).resolve() in p.resolve().parents and p.exists():
                    await asyncio.get_running_loop().run_in_executor(None, os.unlink, p)
            record.purged = True
            await store.save(record)
            removed.append(record)
        except Exception:
            log.exception("purging recording of session %s failed", record.id)
    await audit.record("recording.purged", actor=actor, sessions=len(removed), retention_days=retention_days,
                       ids=[r.id for r in removed][:100])
    return removed


def replay(path: Path, out: TextIO = sys.stdout, speed: float = 1.0, max_wait: float = 2.0) -> None:
    """Write a recording to a terminal with its timing (idle gaps capped at max_wait)."""
    last = 0.0
    with open(path, encoding="utf-8") as fh:
        header = json.loads(fh.readline())
        out.write(f"\x1b[8;{header.get('height', 24)};{header.get('width', 80)}t")
        for line in fh:
            try:
                at, kind, data = json.loads(line)[:3]  # a shared session's input carries a 4th field: who typed it
            except (ValueError, TypeError):
                break
            if kind == "o":
                time.sleep(min(max(0.0, at - last), max_wait) / speed)
                last = at
                out.write(data)
                out.flush()
