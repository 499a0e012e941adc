"""Embedded SQLite store (the default): one table per collection holding JSON documents.

WAL journal, aiosqlite (a worker thread per connection, so the loop never blocks), numbered
migrations recorded in `schema_migrations`. Field names come from code only (checked by
Query.check); values are always bound parameters.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import aiosqlite

from ..errors import Unavailable
from .base import Query, Store, unique_conflict
from .records import INDEXED_FIELDS, UNIQUE_FIELDS

log = logging.getLogger(__name__)
T = TypeVar("T")


def _tables(collections: tuple[str, ...]) -> list[str]:
    sql = []
    for c in collections:
        sql.append(f"CREATE TABLE IF NOT EXISTS {c} (id TEXT PRIMARY KEY, version INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL)")
        for f in UNIQUE_FIELDS.get(c, ()):
            sql.append(f"CREATE UNIQUE INDEX IF NOT EXISTS u_{c}_{f} ON {c} (json_extract(doc, '$.{f}'))")
        for f in INDEXED_FIELDS.get(c, ()):
            sql.append(f"CREATE INDEX IF NOT EXISTS i_{c}_{f} ON {c} (json_extract(doc, '$.{f}'))")
    return sql


# Each migration is a list of statements; append new ones, never edit old ones.
MIGRATIONS: list[Callable[[], list[str]]] = [
    lambda: _tables(("users", "apps", "credentials", "hosts", "grants", "tokens", "logins", "failures", "events",
                     "sessions", "nodes")),
    lambda: _tables(("commands", "command_rules")),
    lambda: _tables(("modules", "runs", "envelopes")),
    lambda: _tables(("settings", "login_rules")),
    lambda: _tables(("access_locks",)),
    lambda: _tables(("clusters", "pod_grants")),
    lambda: _tables(("sso_states", "passkeys", "passkey_challenges")),
    lambda: _tables(("access_requests",)),

    lambda: _tables(("ssh_keys",)),
]



def _where(query: Query) -> tuple[str, list[Any]]:
    parts: list[str] = []
    args: list[Any] = []
    for name, value in query.eq.items():
        expr = "id" if name == "id" else f"json_extract(doc, '$.{name}')"
        if value is None:
            parts.append(f"{expr} IS NULL")
        else:
            parts.append(f"{expr} = ?")
            args.append(value)
    for name, (lo, hi) in query.ranges.items():
        expr = f"json_extract(doc, '$.{name}')"
        if lo is not None:
            parts.append(f"{expr} >= ?")
            args.append(lo)
        if hi is not None:
            parts.append(f"{expr} < ?")
            args.append(hi)
    if query.contains:
        name, text = query.contains
        parts.append(f"instr(lower(json_extract(doc, '$.{name}')), ?) > 0")
        args.append(text.lower())
    return (" WHERE " + " AND ".join(parts)) if parts else "", args


class SQLiteStore(Store):
    """Store on an embedded SQLite file."""

    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.url_for_display = f"sqlite:///{path}"
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()  # one writer transaction at a time on the shared connection

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file 0600 before SQLite does: its -wal and -shm files take the database file's mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = await aiosqlite.connect(str(self.path), timeout=self.timeout, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.execute("PRAGMA busy_timeout=%d" % int(self.timeout * 1000))
            await self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"database {self.url_for_display} cannot be opened: {exc}") from None
        for suffix in ("", "-wal", "-shm", "-journal"):  # files of an older install made under a looser umask
            try:
                Path(str(self.path) + suffix).chmod(0o600)
            except OSError:
                pass

    async def _migrate(self) -> None:
        db = self._require()
        await db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
        async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations") as cur:
            (current,) = await cur.fetchone()
        for number, migration in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            await db.execute("BEGIN IMMEDIATE")
            try:
                for statement in migration():
                    await db.execute(statement)
                await db.execute("INSERT INTO schema_migrations VALUES (?, strftime('%s','now'))", (number,))
                await db.execute("COMMIT")
            except Exception:
                await db.execute("ROLLBACK")
                raise
            log.info("database migrated to schema version %d", number)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    def _require(self) -> aiosqlite.Connection:
        if self._db is None:
            raise Unavailable(f"database {self.url_for_display} is not open")
        return self._db

    async def _run(self, op: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        db = self._require()
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that arrives as the query
            # completes, and a cancelled caller (a job stopped at shutdown) then runs on as if never cancelled
            async with asyncio.timeout(self.timeout):
                return await op(db)
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.Error, asyncio.TimeoutError, ValueError) as exc:
            log.error("database error: %s", exc)
            raise Unavailable("the database is not answering; try again shortly") from None

    async def ping(self) -> None:
        async def op(db: aiosqlite.Connection) -> None:
            async with db.execute("SELECT 1") as cur:
                await cur.fetchone()
        await self._run(op)

    async def _insert(self, collection: str, doc: dict[str, Any]) -> None:
        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(f"INSERT INTO {collection} (id, version, doc) VALUES (?, ?, ?)",
                             (doc["id"], doc.get("version", 0), json.dumps(doc)))
        try:
            await self._run(op)
        except sqlite3.IntegrityError as exc:
            text = str(exc)
            for f in UNIQUE_FIELDS.get(collection, ()):
                if f in text or "index" in text:
                    raise unique_conflict(collection, f) from None
            raise unique_conflict(collection, "id") from None

    async def _get(self, collection: str, id: str) -> dict[str, Any] | None:
        async def op(db: aiosqlite.Connection) -> dict[str, Any] | None:
            async with db.execute(f"SELECT doc FROM {collection} WHERE id = ?", (id,)) as cur:
                row = await cur.fetchone()
            return json.loads(row[0]) if row else None
        return await self._run(op)

    async def _find(self, collection: str, query: Query) -> list[dict[str, Any]]:
        where, args = _where(query)
        name, desc = query.sort
        order = "id" if name == "id" else f"json_extract(doc, '$.{name}')"
        sql = f"SELECT doc FROM {collection}{where} ORDER BY {order} {'DESC' if desc else 'ASC'}, id"
        if query.limit:
            sql += " LIMIT ? OFFSET ?"
            args = args + [query.limit, query.offset]

        async def op(db: aiosqlite.Connection) -> list[dict[str, Any]]:
            async with db.execute(sql, args) as cur:
                return [json.loads(r[0]) for r in await cur.fetchall()]
        return await self._run(op)

    async def _count(self, collection: str, query: Query) -> int:
        where, args = _where(query)

        async def op(db: aiosqlite.Connection) -> int:
            async with db.execute(f"SELECT COUNT(*) FROM {collection}{where}", args) as cur:
                return (await cur.fetchone())[0]
        return await self._run(op)

    async def _replace(self, collection: str, doc: dict[str, Any], expected_version: int) -> bool:
        async def op(db: aiosqlite.Connection) -> bool:
            cur = await db.execute(f"UPDATE {collection} SET doc = ?, version = ? WHERE id = ? AND version = ?",
                                   (json.dumps(doc), doc["version"], doc["id"], expected_version))
            return cur.rowcount == 1
        try:
            return await self._run(op)
        except sqlite3.IntegrityError:
            raise unique_conflict(collection, (UNIQUE_FIELDS.get(collection) or ("id",))[0]) from None

    async def _delete(self, collection: str, id: str) -> bool:
        async def op(db: aiosqlite.Connection) -> bool:
            cur = await db.execute(f"DELETE FROM {collection} WHERE id = ?", (id,))
            return cur.rowcount == 1
        return await self._run(op)

    async def _delete_where(self, collection: str, query: Query) -> int:
        query.check()
        where, args = _where(query)

        async def op(db: aiosqlite.Connection) -> int:
            cur = await db.execute(f"DELETE FROM {collection}{where}", args)
            return cur.rowcount
        return await self._run(op)
