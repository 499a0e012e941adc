"""The audit log (auditor, admin)."""
from __future__ import annotations

from bastion import validation as v
from bastion.audit import ACTIONS
from bastion.errors import Invalid
from bastion.store import Event, page_bounds

from .base import APIHandler, role
from .ui import ExportMixin


class EventsHandler(ExportMixin, APIHandler):
    @role("auditor", "admin")
    async def get(self) -> None:
        action = self.get_query_argument("action", None) or None
        if action and action not in ACTIONS:
            raise Invalid(f"unknown action; known: {', '.join(sorted(ACTIONS))}")
        actor = self.get_query_argument("actor", None) or None
        if actor is not None and (len(actor) > 64 or "\x00" in actor):
            raise Invalid("actor must be at most 64 characters")
        since = v.query_float(self.get_query_argument("since", None), "since")
        until = v.query_float(self.get_query_argument("until", None), "until")
        limit, offset = page_bounds(self.get_query_argument("limit", None), self.get_query_argument("offset", None))
        await self.send_listing(lambda lim, off: self.store.list_events(action=action, actor=actor, since=since,
                                                                         until=until, limit=lim, offset=off),
                                Event, "audit", limit, offset)


default_handlers = [(r"/api/events", EventsHandler)]
