"""CSV exports of the audit log, sessions and commands (what a security team hands to a spreadsheet)."""
from __future__ import annotations

import csv
import io
import json
import time
from typing import Any, Awaitable, Callable, Iterable

from .store import Command, Event, Page, Session

EXPORT_PAGE = 500
EXPORT_MAX = 50_000  # rows in one file; the last row says when more matched
# A cell a spreadsheet would run as a formula (CSV injection) starts with one of these: it is quoted with '.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def iso(t: float) -> str:
    """A time as ISO 8601 in UTC ("" for none): unambiguous in any spreadsheet."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""


def detail_text(detail: dict[str, Any]) -> str:
    """An event's detail as `key: value` pairs (lists joined with commas)."""
    def word(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, (list, tuple)):
            return ", ".join(word(x) for x in value)
        if isinstance(value, dict):
            return json.dumps(value, sort_keys=True)
        return str(value)
    return "; ".join(f"{k.replace('_', ' ')}: {word(val)}" for k, val in detail.items())


Column = tuple[str, Callable[[Any], Any]]
EVENT_COLUMNS: list[Column] = [
    ("time (UTC)", lambda e: iso(e.ts)), ("action", lambda e: e.action), ("code", lambda e: e.code),
    ("actor", lambda e: e.actor), ("target", lambda e: e.target), ("client address", lambda e: e.address),
    ("outcome", lambda e: "ok" if e.ok else "failed"), ("detail", lambda e: detail_text(e.detail)),
    ("id", lambda e: e.id),
]
SESSION_COLUMNS: list[Column] = [
    ("started (UTC)", lambda s: iso(s.started_at)), ("ended (UTC)", lambda s: iso(s.ended_at)),
    ("user", lambda s: s.username), ("host", lambda s: s.host_name), ("client address", lambda s: s.address),
    ("live", lambda s: "yes" if s.live else "no"), ("end reason", lambda s: s.end_reason),
    ("ended by", lambda s: s.ended_by), ("note", lambda s: s.reason), ("bytes out", lambda s: s.bytes_out),
    ("recording sha256", lambda s: s.recording_sha256), ("node", lambda s: s.node), ("id", lambda s: s.id),
]
COMMAND_COLUMNS: list[Column] = [
    ("time (UTC)", lambda c: iso(c.ts)), ("user", lambda c: c.username), ("host", lambda c: c.host_name),
    ("command", lambda c: c.text), ("blocked", lambda c: "yes" if c.blocked else "no"),
    ("flagged", lambda c: "yes" if c.flagged else "no"), ("rule", lambda c: c.rule),
    ("session", lambda c: c.session_id), ("offset (s)", lambda c: round(c.offset, 3)),
]
COLUMNS: dict[type, list[Column]] = {Event: EVENT_COLUMNS, Session: SESSION_COLUMNS, Command: COMMAND_COLUMNS}


def safe_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def header(columns: list[Column]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([name for name, _ in columns])
    return out.getvalue()


def rows(columns: list[Column], records: Iterable[Any]) -> str:
    """CSV lines (RFC 4180 quoting, formula-safe cells) for some records."""
    out = io.StringIO()
    writer = csv.writer(out)
    for record in records:
        writer.writerow([safe_cell(get(record)) for _, get in columns])
    return out.getvalue()


async def pages(fetch: Callable[[int, int], Awaitable[Page]], maximum: int = EXPORT_MAX) -> Any:
    """Every page of a listing, EXPORT_PAGE rows at a time, up to `maximum` rows; yields (items, total)."""
    offset = 0
    while offset < maximum:
        page = await fetch(min(EXPORT_PAGE, maximum - offset), offset)
        if not page.items:
            return
        yield page.items, page.total
        offset += len(page.items)
        if offset >= page.total:
            return
