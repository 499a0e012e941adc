"""Access requests (just in time): a user asks for a host or a category for a while, with a reason; an approver
grants or refuses it; an approved request becomes a grant that ends by itself.

The grant is an ordinary `Grant` carrying `expires_at` and `request_id`, so every check that already reads grants
(opening a terminal, module runs, the periodic policy re-check) treats it like any other. The expiry job removes
it at its time and tells every node through the hub, whose policy re-check ends the sessions that depended on it;
the sessions are warned `[access] expiry_warning` seconds before.

Break-glass: a member of `[access] break_glass_roles` may approve their own request. That is loud (an audit event,
a notice to every auditor in a live session, a banner on the dashboard) and leaves a review to do, tracked on the
request until an approver marks it reviewed.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from . import validation as v
from .audit import Audit
from .clock import Clock
from .config import Config
from .errors import Conflict, Forbidden, Invalid, NotFound
from .hub import SessionHub
from .inventory import granted
from .protocol import control
from .store import Grant, Host, Store, User
from .store.base import Page
from .store.records import AccessRequest

log = logging.getLogger(__name__)
STATUSES = ("pending", "approved", "denied", "expired", "cancelled")


def when(ts: float) -> str:
    """A time for people (UTC, minutes)."""
    return time.strftime("%H:%M UTC", time.gmtime(ts))


class AccessRequests:
    """Requests, decisions, break-glass, reviews and the expiry of the grants they create."""

    def __init__(self, config: Config, store: Store, audit: Audit, hub: SessionHub, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self.hub = hub
        self.clock = clock
        self._warned: set[tuple[str, str]] = set()  # (request id, session id) already warned on this node

    # ---- who may do what ----------------------------------------------------------------------------------
    def is_approver(self, user: User) -> bool:
        """Members of the approver roles, and the named approvers."""
        acfg = self.config.access
        return user.username in acfg.approvers or any(r in user.roles for r in acfg.approver_roles)

    def may_break_glass(self, user: User) -> bool:
        return any(r in user.roles for r in self.config.access.break_glass_roles)

    # ---- requests -----------------------------------------------------------------------------------------
    async def create(self, user: User, body: dict[str, Any]) -> AccessRequest:
        """A new request (pending), or an approved one when the requester breaks the glass."""
        v.only_fields(body, ("host_id", "app_id", "minutes", "reason", "break_glass"))
        host_id = v.text(body, "host_id", required=False, max_len=64)
        app_id = v.text(body, "app_id", required=False, max_len=64)
        if bool(host_id) == bool(app_id):
            raise Invalid("choose a host or a category (one of them, not both)")
        top = self.config.access.max_request_minutes
        minutes = v.integer(body, "minutes", minimum=1, maximum=top)
        reason = v.text(body, "reason", max_len=500)
        break_glass = v.boolean(body, "break_glass")
        request = AccessRequest(user_id=user.id, username=user.username, minutes=minutes, reason=reason.strip(),
                                created_at=self.clock.now())
        grants = await self.store.grants_of_user(user.id)
        if host_id:
            host = await self.store.get_host(v.record_id(host_id, "host_id"))
            if host is None:
                raise NotFound("host not found")
            request.host_id, request.host_name = host.id, host.name
            if granted(grants, host):
                raise Conflict(f"you already have access to {host.name}")
        else:
            app = await self.store.get_app(v.record_id(app_id, "app_id"))
            if app is None:
                raise NotFound("category not found")
            request.app_id, request.app_name = app.id, app.name
            if any(g.app_id == app.id for g in grants):
                raise Conflict(f"you already have access to the category {app.name}")
        if break_glass and not self.may_break_glass(user):
            raise Forbidden("your roles may not approve their own access request (break-glass)")
        for other in (await self.store.list_access_requests(status="pending", user_id=user.id, limit=500)).items:
            if (other.host_id, other.app_id) == (request.host_id, request.app_id):
                raise Conflict("you already have a pending request for this; wait for an approver or withdraw it")
        await self.store.create_access_request(request)
        await self.audit.record("access.requested", actor=user.username, target=request_target(request),
                                request=request.id, minutes=minutes, reason=request.reason, break_glass=break_glass)
        if break_glass:
            request.break_glass = True
            request.review_status = "pending"
            request = await self._approve(request, user, "break-glass: approved by the requester")
            await self.audit.record("access.break_glass", actor=user.username, target=request_target(request),
                                    request=request.id, minutes=minutes, reason=request.reason, ok=False)
            self._tell_auditors(f"BREAK-GLASS: {user.username} gave themselves access to {request_target(request)} "
                                f"for {minutes} min: {request.reason[:200]}")
        return request

    async def get(self, request_id: str, viewer: User) -> AccessRequest:
        """One request: its requester and approvers may see it."""
        request = await self.store.get_access_request(v.record_id(request_id, "request id"))
        if request is None or (request.user_id != viewer.id and not self.is_approver(viewer)):
            raise NotFound("access request not found")
        return request

    async def list(self, viewer: User, *, status: str | None, mine: bool, review: str | None,
                   limit: int, offset: int) -> Page:
        """Requests the viewer may see: their own, or (approvers) everyone's."""
        if status and status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}")
        if review and review not in ("pending", "done"):
            raise Invalid("review must be pending or done")
        user_id = viewer.id if mine or not self.is_approver(viewer) else None
        return await self.store.list_access_requests(status=status, user_id=user_id, review_status=review,
                                                     limit=limit, offset=offset)

    async def decide(self, request_id: str, approver: User, body: dict[str, Any]) -> AccessRequest:
        """Approve or deny a pending request (approvers only, never their own)."""
        v.only_fields(body, ("decision", "comment"))
        decision = v.text(body, "decision", max_len=10)
        if decision not in ("approve", "deny"):
            raise Invalid("decision must be approve or deny")
        comment = v.text(body, "comment", required=False, max_len=500).strip()
        if not self.is_approver(approver):
            raise Forbidden("only approvers decide access requests")
        request = await self.get(request_id, approver)
        if request.user_id == approver.id:
            raise Forbidden("you cannot decide your own request; another approver must (or use break-glass)")
        if request.status != "pending":
            raise Conflict(f"this request is already {request.status}")
        if decision == "deny":
            request.status, request.decided_by, request.comment = "denied", approver.username, comment
            request.decided_at = self.clock.now()
            await self.store.save(request)
            await self.audit.record("access.denied", actor=approver.username, target=request_target(request),
                                    request=request.id, user=request.username, comment=comment)
            return request
        return await self._approve(request, approver, comment)

    async def _approve(self, request: AccessRequest, approver: User, comment: str) -> AccessRequest:
        """Claim the decision (a concurrent decision gets Conflict), then create the temporary grant."""
        now = self.clock.now()
        request.status, request.decided_by, request.comment, request.decided_at = "approved", approver.username, comment, now
        request.expires_at = now + request.minutes * 60
        await self.store.save(request)
        grant = Grant(user_id=request.user_id, app_id=request.app_id, host_id=request.host_id,
                      expires_at=request.expires_at, request_id=request.id)
        try:
            await self.store.create_grant(grant)
        except Conflict:  # a standing grant appeared meanwhile: nothing temporary to add
            request.status, request.comment = "cancelled", "the user already has this access"
            await self.store.save(request)
            raise Conflict("the user already has this access; nothing to approve") from None
        request.grant_id = grant.id
        await self.store.save(request)
        if not request.break_glass:
            await self.audit.record("access.approved", actor=approver.username, target=request_target(request),
                                    request=request.id, user=request.username, minutes=request.minutes,
                                    until=request.expires_at, comment=comment)
        return request

    async def cancel(self, request_id: str, user: User) -> AccessRequest:
        """The requester withdraws a pending request."""
        request = await self.get(request_id, user)
        if request.user_id != user.id:
            raise Forbidden("only the requester may withdraw a request")
        if request.status != "pending":
            raise Conflict(f"this request is already {request.status}")
        request.status, request.decided_at = "cancelled", self.clock.now()
        await self.store.save(request)
        await self.audit.record("access.cancelled", actor=user.username, target=request_target(request), request=request.id)
        return request

    async def review(self, request_id: str, reviewer: User, body: dict[str, Any]) -> AccessRequest:
        """Close the review a break-glass access needs (an approver other than the requester)."""
        v.only_fields(body, ("comment",))
        comment = v.text(body, "comment", max_len=500).strip()
        if not self.is_approver(reviewer):
            raise Forbidden("only approvers review break-glass access")
        request = await self.get(request_id, reviewer)
        if not request.break_glass:
            raise Conflict("only break-glass access needs a review")
        if request.user_id == reviewer.id:
            raise Forbidden("someone else must review your break-glass access")
        if request.review_status == "done":
            raise Conflict(f"already reviewed by {request.reviewed_by}")
        request.review_status, request.reviewed_by, request.review_comment = "done", reviewer.username, comment
        request.reviewed_at = self.clock.now()
        await self.store.save(request)
        await self.audit.record("access.reviewed", actor=reviewer.username, target=request_target(request),
                                request=request.id, user=request.username, comment=comment)
        return request

    # ---- expiry ---------------------------------------------------------------------------------------------
    async def tick(self) -> int:
        """Warn the live sessions of access about to end; end access whose time is up. Returns how many ended."""
        now = self.clock.now()
        ended = 0
        live = {s.id for s in self.hub.live()}
        self._warned = {w for w in self._warned if w[1] in live}
        approved = (await self.store.list_access_requests(status="approved", limit=500)).items
        for request in approved:
            try:
                if request.expires_at <= now:
                    ended += await self._expire(request)
                elif request.expires_at - now <= self.config.access.expiry_warning:
                    await self._warn(request, now)
            except Exception:
                log.exception("access expiry failed [request=%s]", request.id)
        return ended

    async def _expire(self, request: AccessRequest) -> int:
        request.status = "expired"
        try:
            await self.store.save(request)  # one node wins; the others see a Conflict and leave it
        except Conflict:
            return 0
        if request.grant_id and await self.store.get_grant(request.grant_id) is not None:
            await self.store.delete_grant(request.grant_id)
        await self.audit.record("access.expired", actor="bastion", target=request_target(request), request=request.id,
                                user=request.username)
        await self.hub.policy_changed(request.user_id, by="access expiry",
                                      why=f"temporary access to {request_target(request)} ended")
        return 1

    async def _warn(self, request: AccessRequest, now: float) -> None:
        sessions = [s for s in self.hub.live() if s.record.user_id == request.user_id and not s.closing
                    and (request.id, s.id) not in self._warned]
        if not sessions:
            return
        others = [g for g in await self.store.grants_of_user(request.user_id) if g.id != request.grant_id
                  and (not g.expires_at or g.expires_at > request.expires_at)]
        for session in sessions:
            if not covers(request, session.host) or granted(others, session.host):
                continue  # this session does not depend on the access that ends
            self._warned.add((request.id, session.id))
            left = max(1, round((request.expires_at - now) / 60))
            session.notice("warn", f"your temporary access to {request_target(request)} ends in about {left} "
                                   f"minute{'s' if left != 1 else ''} (at {when(request.expires_at)}); "
                                   "this session will end then")

    def _tell_auditors(self, message: str) -> None:
        """A notice in every live terminal of an auditor on this node and on every monitor socket (only auditors and
        admins watch); the dashboard shows a banner as well, on every node, until the access is reviewed."""
        frame = control("notice", level="error", message=message)
        for session in self.hub.live():
            if session.closing:
                continue
            if "auditor" in session.user.roles:
                session.notice("error", message)
            joined = set(session.controls.participants) if session.controls is not None else set()
            for watcher in session.watchers:
                if watcher.username not in joined:  # invited participants may be anyone: they are not told
                    watcher.push_control(frame)


def covers(request: AccessRequest, host: Host) -> bool:
    """Whether a request's access reaches this host."""
    return request.host_id == host.id or bool(request.app_id and request.app_id == host.app_id)


def request_target(request: AccessRequest) -> str:
    return request.host_name if request.host_id else f"category {request.app_name}"
