"""Four-eyes controls of one live session: joined participants, pause, and held commands.

- *Participants.* The owner or an auditor invites another Bastion user through a link with an expiry, as an
  observer (reads) or a peer (reads and types). A participant is a watcher of the session (same snapshot,
  budget and backpressure as a monitor); a peer's input enters the session's input queue tagged with its
  username. From the first peer on, every input event is written to the recording with the typist's username
  (`[t, "i", data, "bob"]`, data only when `[terminal] record_input` is on) and commands carry `by`.
- *Pause.* An auditor stops the session's input with a reason shown to everyone in it, and resumes it.
- *Review.* A command matching a `review` rule is held (bastion.review); watchers see it beside the screen.

The session calls in through four small hooks (review, refuses_input, typist, attributing); everything else
lives here.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..audit import Audit
from ..clock import Clock
from ..commands import Verdict
from ..errors import Conflict, Invalid, NotFound
from ..protocol import control
from ..review import CommandReviews, HeldCommand
from ..store import User
from .doors import FrontDoor
from .watchers import Watcher

if TYPE_CHECKING:
    from .session import LiveSession

log = logging.getLogger(__name__)
APPROVAL_REUSE = 30.0  # seconds an approved line stays approved (the gate checks a pasted line before and at Enter)
MODES = ("observer", "peer")
PAUSED_NOTICE_INTERVAL = 2.0  # seconds between "input is paused" notices while keys keep arriving


@dataclass
class Participant:
    """Someone who joined the session through an invitation."""

    username: str
    user_id: str
    mode: str  # observer | peer
    joined_at: float
    watcher: Watcher
    door: FrontDoor

    def public(self) -> dict[str, Any]:
        return {"username": self.username, "mode": self.mode, "joined_at": self.joined_at}


@dataclass
class Invite:
    """A link to join one live session, for one named user, until a time."""

    session_id: str
    user_id: str
    username: str
    mode: str
    expires_at: float
    by: str
    digest: str = ""


class Invites:
    """This node's invitation links (kept as digests: the link itself is shown once, to who created it)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._by_digest: dict[str, Invite] = {}

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    def create(self, session_id: str, invitee: User, mode: str, minutes: int, by: str) -> tuple[str, Invite]:
        now = self.clock.now()
        self._by_digest = {d: i for d, i in self._by_digest.items() if i.expires_at > now}
        token = secrets.token_urlsafe(32)
        invite = Invite(session_id=session_id, user_id=invitee.id, username=invitee.username, mode=mode,
                        expires_at=now + minutes * 60, by=by, digest=self._digest(token))
        self._by_digest[invite.digest] = invite
        return token, invite

    def claim(self, token: str, user: User) -> Invite:
        """The invitation behind a link, for the user it names, while it lasts."""
        invite = self._by_digest.get(self._digest(token)) if isinstance(token, str) and len(token) < 100 else None
        if invite is None or invite.user_id != user.id:
            raise NotFound("this invitation does not exist or is not for you")
        if invite.expires_at <= self.clock.now():
            raise Conflict("this invitation has expired; ask for a new one")
        return invite

    def drop_session(self, session_id: str) -> None:
        self._by_digest = {d: i for d, i in self._by_digest.items() if i.session_id != session_id}


@dataclass
class SessionControls:
    """Participants, pause and held commands of one live session."""

    session: "LiveSession"
    reviews: CommandReviews
    audit: Audit
    clock: Clock
    participants: dict[str, Participant] = field(default_factory=dict)
    attributing: bool = False  # a peer joined once: every input event is attributed from then on
    typist: str = ""  # who sent the input being handled (set by the session's input pump)
    paused: tuple[str, str] | None = None  # (by, reason)
    _approved: dict[str, float] = field(default_factory=dict)
    _paused_told: float = 0.0  # when the user was last told input is paused (one notice per burst of keys)

    # ---- review --------------------------------------------------------------------------------------------
    async def review(self, command: str, verdict: Verdict) -> Verdict:
        """Hold a command matching a review rule until an approver decides (or the timeout denies it)."""
        now = self.clock.now()
        self._approved = {c: t for c, t in self._approved.items() if now - t < APPROVAL_REUSE}
        if command in self._approved:
            return Verdict("allow", verdict.rule, review="approved")
        s = self.session
        r = s.record
        held = await self.reviews.hold(command=command, rule=verdict.rule, user_id=r.user_id, username=r.username,
                                       by=self.typist or r.username, target=r.host_name, session_id=r.id,
                                       announce=lambda review_id: self._announce(review_id, command, verdict.rule),
                                       announce_done=self._announce_done)
        if held.status == "approved":
            self._approved[command] = self.clock.now()
            return Verdict("allow", verdict.rule, review=held.outcome)
        return Verdict("deny", verdict.rule, review=held.outcome)

    def _announce(self, review_id: str, command: str, rule: str) -> None:
        s = self.session
        timeout = int(self.reviews.config.access.review_timeout)
        s.notice("warn", f"waiting for approval: {command[:200]} (rule {rule}); an approver has {timeout} s to allow it")
        frame = control("review", id=review_id, command=command, rule=rule, by=self.typist or s.username,
                        timeout=timeout)
        for watcher in s.watchers:
            watcher.push_control(frame)
        s.recorder.marker(f"held for approval: {command[:200]}")

    def _announce_done(self, held: HeldCommand) -> None:
        s = self.session
        if s.closing:
            return
        if held.status == "approved":
            s.notice("info", f"approved by {held.decided_by}: {held.command[:200]}")
        else:
            why = f"denied by {held.decided_by}" if held.status == "denied" else "nobody approved it in time"
            s.notice("error", f"not run, {why}: {held.command[:200]}" + (f" ({held.comment})" if held.comment else ""))
        frame = control("review_done", id=held.id, status=held.status, decided_by=held.decided_by)
        for watcher in s.watchers:
            watcher.push_control(frame)
        s.recorder.marker(f"{held.outcome}: {held.command[:200]}")

    # ---- input ---------------------------------------------------------------------------------------------
    def refuses_input(self) -> bool:
        """While paused, input is dropped and the sender told why."""
        if self.paused is None:
            return False
        now = time.monotonic()
        if now - self._paused_told >= PAUSED_NOTICE_INTERVAL:
            self._paused_told = now
            by, reason = self.paused
            self.session.notice("warn", f"input is paused by {by}: {reason}")
        return True

    def peer_input(self, username: str, data: str) -> None:
        """Input from a joined participant: peers type, observers are refused."""
        participant = self.participants.get(username)
        if participant is None:
            return
        if participant.mode != "peer":
            participant.door.send_control(control("notice", message="observers are read-only: input is refused"))
            return
        if self.paused is not None:
            by, reason = self.paused
            participant.door.send_control(control("notice", level="warn", message=f"input is paused by {by}: {reason}"))
            return
        self.session.send_input(data, by=username)

    # ---- participants --------------------------------------------------------------------------------------
    def join(self, door: FrontDoor, user: User, mode: str) -> Participant:
        s = self.session
        if s.closing:
            raise Conflict("session has ended")
        if user.id == s.record.user_id:
            raise Conflict("this is your own session")
        old = self.participants.pop(user.username, None)
        if old is not None:  # joined again (a reload): the new socket replaces the old one
            s.detach_watcher(old.watcher)
        watcher = s.attach_watcher(door, user.username)
        participant = Participant(username=user.username, user_id=user.id, mode=mode, joined_at=self.clock.now(),
                                  watcher=watcher, door=door)
        self.participants[user.username] = participant
        if mode == "peer" and not self.attributing:
            self.attributing = True
        s.recorder.marker(f"{user.username} joined as {mode}")
        s.notice("info", f"{user.username} joined this session as {'a peer (may type)' if mode == 'peer' else 'an observer'}")
        self.audit.emit("session.joined", actor=user.username, target=s.record.host_name, session=s.id, mode=mode,
                        owner=s.username)
        self.tell_participants()
        return participant

    def leave(self, username: str, *, removed_by: str = "") -> bool:
        """A participant left (socket closed) or was removed (by the owner or an auditor)."""
        s = self.session
        participant = self.participants.pop(username, None)
        if participant is None:
            return False
        if removed_by:
            participant.watcher.close(control("closed", reason=f"removed from the session by {removed_by}",
                                              code="removed", by=removed_by))
        s.detach_watcher(participant.watcher)
        if s.closing:
            return True
        s.recorder.marker(f"{username} left" + (f" (removed by {removed_by})" if removed_by else ""))
        s.notice("info", f"{username} left this session" + (f" (removed by {removed_by})" if removed_by else ""))
        if removed_by:
            self.audit.emit("session.participant_removed", actor=removed_by, target=s.record.host_name, session=s.id,
                            participant=username)
        else:
            self.audit.emit("session.left", actor=username, target=s.record.host_name, session=s.id)
        self.tell_participants()
        return True

    def listing(self) -> list[dict[str, Any]]:
        return [p.public() for p in self.participants.values()]

    def tell_participants(self) -> None:
        """The owner's terminal (and every participant) learns who is in the session."""
        frame = control("participants", owner=self.session.username, items=self.listing())
        self.session.door.send_control(frame)
        for p in self.participants.values():
            p.door.send_control(frame)

    # ---- pause ---------------------------------------------------------------------------------------------
    def pause(self, by: str, reason: str) -> None:
        s = self.session
        if self.paused is not None:
            raise Conflict(f"input is already paused by {self.paused[0]}")
        self.paused = (by, reason)
        frame = control("paused", by=by, reason=reason)
        s.door.send_control(frame)
        s.notice("warn", f"input is paused by {by}: {reason}")
        for watcher in s.watchers:
            watcher.push_control(frame)
        s.recorder.marker(f"input paused by {by}: {reason}")
        self.audit.emit("session.paused", actor=by, target=s.record.host_name, session=s.id, user=s.username,
                        reason=reason)

    def resume(self, by: str) -> None:
        s = self.session
        if self.paused is None:
            raise Conflict("input is not paused")
        self.paused = None
        frame = control("resumed", by=by)
        s.door.send_control(frame)
        s.notice("info", f"input was resumed by {by}")
        for watcher in s.watchers:
            watcher.push_control(frame)
        s.recorder.marker(f"input resumed by {by}")
        self.audit.emit("session.resumed", actor=by, target=s.record.host_name, session=s.id, user=s.username)


def may_manage(session: "LiveSession", user: User) -> bool:
    """The owner, auditors and admins manage a session's participants."""
    return user.id == session.record.user_id or any(r in user.roles for r in ("auditor", "admin"))


def check_mode(mode: Any) -> str:
    """An invitation's mode from a request."""
    if mode not in MODES:
        raise Invalid("mode must be observer or peer")
    return mode
