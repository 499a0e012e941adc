"""Command review: a command matching a `review` rule is held until an approver lets it run or refuses it.

In a terminal the line is held at Enter (the gate awaits the filter's verdict, and this module decides it):
the user sees "waiting for approval", every watcher of the session gets the command in a `review` control frame
next to the live screen, and approvers find it on their dashboard. Module parameters matching a review rule
hold the run request the same way. Nobody answering within `[access] review_timeout` means deny. Everything is
audited; the decision is written on the command in the player's list.

Held commands live in this node's memory, with the session that holds them, and are decided on this node:
approvers on other nodes see them through the hub, which brings their decisions here.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

from .audit import Audit
from .clock import Clock
from .config import Config
from .errors import Conflict, Forbidden, NotFound
from .hub import NOT_WAITING, SessionHub
from .store import User

log = logging.getLogger(__name__)
POLL = 0.2  # seconds between looks at the (movable) access clock while a command is held


@dataclass
class HeldCommand:
    """One command waiting for an approver."""

    id: str
    command: str
    rule: str
    user_id: str  # whose session (or run) it is
    username: str
    by: str  # who typed it (a peer in a shared session, or the user)
    target: str  # host name, or "module <name>"
    session_id: str
    created_at: float
    deadline: float
    status: str = "pending"  # pending | approved | denied | timeout
    decided_by: str = ""
    comment: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "command": self.command, "rule": self.rule, "user": self.username, "by": self.by,
                "target": self.target, "session_id": self.session_id, "created_at": self.created_at,
                "deadline": self.deadline, "status": self.status, "decided_by": self.decided_by,
                "comment": self.comment}

    @property
    def outcome(self) -> str:
        """What the command list says about it."""
        if self.status == "approved":
            return f"approved by {self.decided_by}"
        if self.status == "denied":
            return f"denied by {self.decided_by}"
        return "no answer in time"


class CommandReviews:
    """This node's held commands."""

    def __init__(self, config: Config, audit: Audit, clock: Clock, is_approver: Callable[[User], bool],
                 hub: SessionHub) -> None:
        self.config = config
        self.hub = hub
        self.audit = audit
        self.clock = clock
        self.is_approver = is_approver
        self._held: dict[str, HeldCommand] = {}

    def pending(self) -> list[HeldCommand]:
        return sorted(self._held.values(), key=lambda h: h.created_at)

    async def hold(self, *, command: str, rule: str, user_id: str, username: str, by: str, target: str,
                   session_id: str = "", announce: Callable[[str], None] | None = None,
                   announce_done: Callable[[HeldCommand], None] | None = None) -> HeldCommand:
        """Hold a command until decided or timed out; returns it decided (status approved, denied or timeout)."""
        now = self.clock.now()
        held = HeldCommand(id=secrets.token_hex(8), command=command[:2000], rule=rule, user_id=user_id,
                           username=username, by=by or username, target=target, session_id=session_id,
                           created_at=now, deadline=now + self.config.access.review_timeout)
        self._held[held.id] = held
        self.hub.share_held(held.public(), ttl=self.config.access.review_timeout)
        self.audit.emit("command.held", actor=held.by, target=target, session=session_id, command=held.command[:500],
                        rule=rule, review=held.id)
        try:
            if announce is not None:
                announce(held.id)
            while not held.done.is_set():
                if self.clock.now() >= held.deadline:
                    held.status = "timeout"
                    break
                try:
                    await asyncio.wait_for(held.done.wait(), POLL)
                except asyncio.TimeoutError:
                    pass
        finally:
            self._held.pop(held.id, None)
            self.hub.withdraw_held(held.id)
            if held.status == "pending":  # the session ended while it waited
                held.status, held.comment = "timeout", "the session ended"
        if held.status == "timeout":
            self.audit.emit("command.denied", actor="bastion", target=target, session=session_id, ok=False,
                            command=held.command[:500], rule=rule, review=held.id, why="no answer in time")
        if announce_done is not None:
            announce_done(held)
        return held

    def decide(self, review_id: str, approver: User, approve: bool, comment: str = "") -> HeldCommand:
        """An approver's answer (never about their own command)."""
        if not self.is_approver(approver):
            raise Forbidden("only approvers decide held commands")
        held = self._held.get(review_id)
        if held is None:
            raise NotFound(NOT_WAITING)
        if approver.id == held.user_id or approver.username == held.by:
            raise Forbidden("you cannot approve your own command; another approver must")
        if held.status != "pending":
            raise Conflict(f"this command was already {held.status}")
        held.status = "approved" if approve else "denied"
        held.decided_by, held.comment = approver.username, comment
        held.done.set()
        self.audit.emit("command.approved" if approve else "command.denied", actor=approver.username,
                        target=held.target, session=held.session_id, ok=approve, command=held.command[:500],
                        rule=held.rule, review=held.id, user=held.username, comment=comment)
        return held
