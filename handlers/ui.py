"""Issue 13's additions: host connection test, an audit event's detail (API and page), CSV exports."""
from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from bastion import editing, export, reports
from bastion import validation as v
from bastion.errors import NotFound
from bastion.store import Page

from .base import APIHandler, BaseHandler, role


class ExportMixin:
    """`?format=csv` on a listing: every matching row (up to export.EXPORT_MAX) as a CSV download, audited."""

    async def send_listing(self, fetch: Callable[[int, int], Awaitable[Page]], record_type: type, name: str,
                           limit: int, offset: int, convert: Callable[[Any], Any] | None = None) -> None:
        handler: Any = self
        if (handler.get_query_argument("format", "") or "json") not in ("json", "csv"):
            raise v.Invalid("format must be json or csv")
        if handler.get_query_argument("format", "") != "csv":
            handler.send_page(await fetch(limit, offset), convert)
            return
        columns = export.COLUMNS[record_type]
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        handler.set_header("Content-Type", "text/csv; charset=UTF-8")
        handler.set_header("Content-Disposition", f'attachment; filename="bastion-{name}-{stamp}.csv"')
        handler.write(export.header(columns))
        written = total = 0
        async for items, total in export.pages(fetch):
            handler.write(export.rows(columns, items))
            written += len(items)
            await handler.flush()
        if total > written:
            handler.write(f"# {total - written} more rows matched; narrow the filter to export them\n")
        await handler.audit.record("report.exported", actor=handler.actor, target=name, rows=written,
                                   filters={k[:40]: handler.get_query_argument(k)[:100]  # bounded: it is the client's text
                                            for k in list(handler.request.arguments)[:12]
                                            if k not in ("format", "limit", "offset")})
        handler.finish()


class HostTestHandler(APIHandler):
    @role("admin")
    async def post(self, host_id: str) -> None:
        result = await editing.test_host(self.inventory, self.services.trust, host_id, self.actor,
                                         timeout=self.config.terminal.connect_timeout)
        self.send(result.public())


async def load_event(handler: BaseHandler, event_id: str) -> Any:
    event = await handler.store.get_event(v.record_id(event_id, "event id"))
    if event is None:
        raise NotFound("event not found")
    return event


class EventHandler(APIHandler):
    @role("auditor", "admin")
    async def get(self, event_id: str) -> None:
        self.send((await load_event(self, event_id)).public())


class EventPage(BaseHandler):
    @role("auditor", "admin")
    async def get(self, event_id: str) -> None:
        from bastion.audit import ACTIONS
        event = await load_event(self, event_id)
        action = ACTIONS.get(event.action)
        # the session an event is about, when it names one: a link to its recording
        session_id = event.detail.get("session") if isinstance(event.detail.get("session"), str) else ""
        session = await self.store.get_session(session_id) if session_id and v.ID_RE.match(session_id) else None
        self.page("event.html", event=event, description=action.description if action else "",
                  session=session)


class StatsHandler(APIHandler):
    @role("auditor", "admin")
    async def get(self) -> None:
        raw = self.get_query_argument("days", "14")
        days = v.integer({"days": int(raw) if raw.isdigit() and len(raw) < 4 else -1}, "days", minimum=1, maximum=90)
        self.send(await reports.dashboard_stats(self.store, days))


default_handlers = [
    (r"/api/stats", StatsHandler),
    (r"/api/hosts/([^/]+)/test", HostTestHandler),
    (r"/api/events/([^/]+)", EventHandler),
    (r"/audit/([^/]+)", EventPage),
]
