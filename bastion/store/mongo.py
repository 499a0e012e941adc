"""MongoDB store through PyMongo's async API (`pymongo.AsyncMongoClient`).

The production store and the one several nodes share. Written in patterns that are correct both on
MongoDB and on the nx-27017 wire server that CI uses. nx-27017 deviations met and worked around:

- `$set` of a bool stores 0/1 and `$set` of a datetime stores a string: every change is a whole-document
  `replace_one` guarded by a `version` field (optimistic concurrency), times are float epoch seconds.
- An equality filter on an array field does not match its elements (`{"roles": "admin"}` finds nothing):
  the app never queries array membership; role checks happen on loaded records.
- `replace_one` with `{"version": None}` matches a document that lacks the field: every record is written
  with an explicit integer version from the start.
- Transactions and change streams are unsafe: none are used; each write is one document.
- Field names reach its SQL: field names are fixed ASCII identifiers from our code (Query.check).
Ids are strings in `_id`. The client is bound to the event loop and never used from threads.
"""
from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Awaitable, TypeVar

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from ..config import redact_url
from ..errors import Unavailable
from .base import Query, Store, unique_conflict
from .records import ALL_RECORDS, INDEXED_FIELDS, UNIQUE_FIELDS

log = logging.getLogger(__name__)
T = TypeVar("T")


def _filter(query: Query) -> dict[str, Any]:
    flt: dict[str, Any] = {}
    for name, value in query.eq.items():
        flt["_id" if name == "id" else name] = value
    for name, (lo, hi) in query.ranges.items():
        cond: dict[str, Any] = {}
        if lo is not None:
            cond["$gte"] = lo
        if hi is not None:
            cond["$lt"] = hi
        if cond:
            flt[name] = cond
    if query.contains:
        name, text = query.contains
        flt[name] = {"$regex": re.escape(text), "$options": "i"}
    return flt


def _to_doc(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    out["_id"] = out.pop("id")
    return out


def _from_doc(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    out["id"] = str(out.pop("_id"))
    return out


class MongoStore(Store):
    """Store on MongoDB (or a MongoDB-wire server)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self.url_for_display = redact_url(url)
        self._client: AsyncMongoClient | None = None
        self._db: Any = None

    async def open(self) -> None:
        ms = int(self.timeout * 1000)
        self._client = AsyncMongoClient(self.url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms,
                                        socketTimeoutMS=ms * 2, tz_aware=False)
        try:
            self._db = self._client.get_default_database(default="bastion")
            await self._db.command("ping")
            for cls in ALL_RECORDS:
                coll = self._db[cls.collection]
                for f in UNIQUE_FIELDS.get(cls.collection, ()):
                    await coll.create_index([(f, ASCENDING)], unique=True, name=f"u_{f}")
                for f in INDEXED_FIELDS.get(cls.collection, ()):
                    await coll.create_index([(f, ASCENDING)], name=f"i_{f}")
        except PyMongoError as exc:
            await self.close()
            raise Unavailable(f"database {self.url_for_display} cannot be reached: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _run(self, op: Awaitable[T]) -> T:
        if self._client is None:
            raise Unavailable(f"database {self.url_for_display} is not open")
        # The call runs in a task of its own, awaited through asyncio.wait: PyMongo can swallow a cancellation
        # delivered inside it (its asyncio.wait_for on Python 3.11 returns the result when the cancel arrives as the
        # reply does), and a cancelled caller (a job stopped at shutdown) would then run on as if never cancelled.
        call = asyncio.ensure_future(op)
        try:
            try:
                done, _ = await asyncio.wait([call], timeout=self.timeout * 2)
            finally:
                if not call.done():  # timed out, or the caller was cancelled: the call is abandoned
                    call.cancel()
                    call.add_done_callback(_retrieve)
            if not done:
                raise asyncio.TimeoutError
            return call.result()
        except DuplicateKeyError:
            raise
        except (PyMongoError, asyncio.TimeoutError) as exc:
            log.error("database error: %s", type(exc).__name__)
            raise Unavailable("the database is not answering; try again shortly") from None

    async def ping(self) -> None:
        await self._run(self._db.command("ping"))

    async def _insert(self, collection: str, doc: dict[str, Any]) -> None:
        try:
            await self._run(self._db[collection].insert_one(_to_doc(doc)))
        except DuplicateKeyError as exc:
            text = str(exc)
            for f in UNIQUE_FIELDS.get(collection, ()):
                if f in text:
                    raise unique_conflict(collection, f) from None
            raise unique_conflict(collection, (UNIQUE_FIELDS.get(collection) or ("id",))[0]) from None

    async def _get(self, collection: str, id: str) -> dict[str, Any] | None:
        doc = await self._run(self._db[collection].find_one({"_id": id}))
        return _from_doc(doc) if doc else None

    async def _find(self, collection: str, query: Query) -> list[dict[str, Any]]:
        name, desc = query.sort
        cursor = self._db[collection].find(_filter(query)).sort(
            [("_id" if name == "id" else name, DESCENDING if desc else ASCENDING), ("_id", ASCENDING)])
        if query.offset:
            cursor = cursor.skip(query.offset)
        if query.limit:
            cursor = cursor.limit(query.limit)
        return [_from_doc(d) for d in await self._run(cursor.to_list(None))]

    async def _count(self, collection: str, query: Query) -> int:
        return await self._run(self._db[collection].count_documents(_filter(query)))

    async def _replace(self, collection: str, doc: dict[str, Any], expected_version: int) -> bool:
        body = _to_doc(doc)
        body.pop("_id")
        try:
            result = await self._run(self._db[collection].replace_one({"_id": doc["id"], "version": expected_version}, body))
        except DuplicateKeyError:
            raise unique_conflict(collection, (UNIQUE_FIELDS.get(collection) or ("id",))[0]) from None
        return result.matched_count == 1

    async def _delete(self, collection: str, id: str) -> bool:
        result = await self._run(self._db[collection].delete_one({"_id": id}))
        return result.deleted_count == 1

    async def _delete_where(self, collection: str, query: Query) -> int:
        query.check()
        result = await self._run(self._db[collection].delete_many(_filter(query)))
        return result.deleted_count


def _retrieve(fut: "asyncio.Future[Any]") -> None:
    """Collect the outcome of an abandoned call (so asyncio does not report it as never retrieved)."""
    if not fut.cancelled():
        fut.exception()
