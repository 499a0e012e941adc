"""Four eyes: access requests, command review, joined sessions and pause, built together from one clock.

`FourEyes` is what the composition root builds and handlers reach (`services.foureyes`); it attaches the
per-session controls (`sessions.participants.SessionControls`) to every new live session through the engine's
session hook, and runs the access expiry job.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .access import AccessRequests
from .audit import Audit
from .clock import Clock
from .config import Config
from .errors import NotFound
from .hub import NOT_WAITING, SessionHub
from .review import CommandReviews
from .sessions.participants import Invites, SessionControls
from .store import Store, User

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
        self.store = store
        self.audit = audit
        self.clock = Clock(config.access.clock_file)
        self.requests = AccessRequests(config, store, audit, hub, self.clock)
        self.reviews = CommandReviews(config, audit, self.clock, self.requests.is_approver, hub)
        hub.serve("decide", self._decide_for_another_node)
        for op in ("pause", "resume"):
            hub.serve(op, self._control_input_for_another_node)
        self.invites = Invites(self.clock)
        engine.session_hooks.append(self.attach)

    def attach(self, session: "LiveSession") -> None:
        """Give a new live session its four-eyes controls."""
        session.controls = SessionControls(session=session, reviews=self.reviews, audit=self.audit, clock=self.clock)

    async def held(self) -> list[dict[str, Any]]:
        """Commands waiting for an approver on every node, oldest first."""
        here = [{**h.public(), "node": self.hub.node} for h in self.reviews.pending()]
        return sorted(here + await self.hub.held_elsewhere(), key=lambda h: h["created_at"])

    async def decide(self, review_id: str, approver: User, approve: bool, comment: str) -> dict[str, Any]:
        """An approver's answer, wherever the command is held (this node, or the one the hub names)."""
        try:
            return self.reviews.decide(review_id, approver, approve, comment).public()
        except NotFound:  # an approver (checked first), and the command is not held here
            node = await self.hub.held_on(review_id)
            if node is None:
                raise
        approver_doc = {"id": approver.id, "username": approver.username, "roles": list(approver.roles)}
        answer = await self.hub.ask(node, "decide", {"review": review_id, "approver": approver_doc, "approve": approve,
                                                     "comment": comment}, unreachable=NOT_WAITING, missing_is_404=True,
                                    gone="the command waits there until it times out (no answer means deny)")
        return answer["held"]

    async def _decide_for_another_node(self, request: dict[str, Any]) -> dict[str, Any]:
        """A decision another node sent (that node authenticated the approver); checked again here."""
        approver = request["approver"]
        if not isinstance(approver, dict):
            raise TypeError("approver")  # a malformed request
        roles = approver.get("roles")
        user = User(id=str(approver.get("id", "")), username=str(approver.get("username", "")),
                    roles=[r for r in roles if isinstance(r, str)] if isinstance(roles, list) else [])
        held = self.reviews.decide(str(request["review"]), user, request.get("approve") is True,
                                   str(request.get("comment", ""))[:500])
        return {"held": held.public()}

    async def control_input(self, session_id: str, op: str, by: str, reason: str = "") -> None:
        """Pause (`op` "pause", with a reason) or resume the input of a live session, on whichever node runs it."""
        try:
            self._control_input_here(session_id, op, by, reason)
        except NotFound:
            record = await self.store.get_session(session_id)
            if record is None or not record.live or record.node == self.hub.node:
                raise
            await self.hub.ask(record.node, op, {"session": session_id, "by": by, "reason": reason},
                               unreachable=self.hub.unreachable_error(record).message, gone="the session may be gone",
                               missing_is_404=True)

    async def _control_input_for_another_node(self, request: dict[str, Any]) -> dict[str, Any]:
        self._control_input_here(str(request["session"]), str(request["op"]), str(request.get("by", "")),
                                 str(request.get("reason", ""))[:200])
        return {}

    def _control_input_here(self, session_id: str, op: str, by: str, reason: str) -> None:
        _, controls = self.live(session_id)
        if op == "pause":
            controls.pause(by, reason)
        else:
            controls.resume(by)

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



