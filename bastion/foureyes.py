"""Four eyes: access requests, command review, joined sessions and pause, built together from one clock.

`FourEyes` is what the composition root builds and handlers reach (`services.foureyes`); it attaches the
per-session controls (`sessions.participants.SessionControls`) to every new live session through the engine's
session hook, and runs the access expiry job.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .access import AccessRequests
from .audit import Audit
from .clock import Clock
from .config import Config
from .errors import NotFound
from .hub import SessionHub
from .review import CommandReviews
from .sessions.participants import Invites, SessionControls
from .store import Store

if TYPE_CHECKING:
    from .sessions.engine import SessionEngine
    from .sessions.session import LiveSession

log = logging.getLogger(__name__)
TICK = 1.0  # seconds between expiry checks (warnings and ends are meant in minutes; a second is plenty)


class FourEyes:
    """Access requests, held commands, invitations, and the controls of each live session."""

    def __init__(self, config: Config, store: Store, audit: Audit, hub: SessionHub, engine: "SessionEngine") -> None:
        self.config = config
        self.hub = hub
        self.audit = audit
        self.clock = Clock(config.access.clock_file)
        self.requests = AccessRequests(config, store, audit, hub, self.clock)
        self.reviews = CommandReviews(config, audit, self.clock, self.requests.is_approver)
        self.invites = Invites(self.clock)
        engine.session_hooks.append(self.attach)

    def attach(self, session: "LiveSession") -> None:
        """Give a new live session its four-eyes controls."""
        session.controls = SessionControls(session=session, reviews=self.reviews, audit=self.audit, clock=self.clock)

    def live(self, session_id: str) -> "tuple[LiveSession, SessionControls]":
        """A live session of this node and its controls (NotFound when it runs elsewhere or has ended)."""
        session = self.hub.get(session_id)
        if session is None or session.closing or session.controls is None:
            raise NotFound("session is not live on this node")
        return session, session.controls

    async def run(self) -> None:
        """The expiry job: warn, then end temporary access at its time (every node runs it; one wins each end)."""
        while True:
            await asyncio.sleep(TICK)
            try:
                await self.requests.tick()
            except Exception:
                log.exception("access expiry check failed")



