"""Four eyes: access requests, held commands, session participants and pause; the access and join pages, and
the participant's socket. Domain rules (who approves, self-approval, expiry) live in bastion.access,
bastion.review and bastion.sessions.participants."""
from __future__ import annotations

from typing import Any

from tornado.websocket import WebSocketHandler

from bastion import validation as v
from bastion.errors import BastionError, Forbidden, Invalid, NotFound
from bastion.protocol import InputFrame, control, parse_client_frame
from bastion.sessions.participants import check_mode, may_manage
from bastion.store import page_bounds

from .base import APIHandler, BaseHandler, authenticated, role
from .terminal import MAX_BAD_FRAMES, SocketHandler


class FourEyesMixin:
    @property
    def foureyes(self):  # noqa: ANN201 - bastion.foureyes.FourEyes
        return self.services.foureyes  # type: ignore[attr-defined]

    def managed(self, session_id: str) -> Any:
        """A live session of this node the principal manages (its owner, an auditor or an admin), and its controls."""
        session, controls = self.foureyes.live(v.record_id(session_id, "session id"))
        if not may_manage(session, self.principal.user):  # type: ignore[attr-defined]
            raise NotFound("session is not live on this node")
        return session, controls


# ---- access requests ---------------------------------------------------------------------------------------
class AccessRequestsHandler(FourEyesMixin, APIHandler):
    @authenticated
    async def get(self) -> None:
        limit, offset = page_bounds(self.arg("limit"), self.arg("offset"))
        page = await self.foureyes.requests.list(self.principal.user, status=self.arg("status"),
                                                 mine=bool(self.flag_arg("mine")), review=self.arg("review"),
                                                 limit=limit, offset=offset)
        self.send_page(page)

    @authenticated
    async def post(self) -> None:
        request = await self.foureyes.requests.create(self.principal.user, self.body())
        self.send(request.public(), status=201)


class AccessRequestHandler(FourEyesMixin, APIHandler):
    @authenticated
    async def get(self, request_id: str) -> None:
        self.send((await self.foureyes.requests.get(request_id, self.principal.user)).public())


class AccessDecisionHandler(FourEyesMixin, APIHandler):
    @authenticated
    async def post(self, request_id: str) -> None:
        self.send((await self.foureyes.requests.decide(request_id, self.principal.user, self.body())).public())


class AccessCancelHandler(FourEyesMixin, APIHandler):
    @authenticated
    async def post(self, request_id: str) -> None:
        self.send((await self.foureyes.requests.cancel(request_id, self.principal.user)).public())


class AccessReviewHandler(FourEyesMixin, APIHandler):
    @authenticated
    async def post(self, request_id: str) -> None:
        self.send((await self.foureyes.requests.review(request_id, self.principal.user, self.body())).public())


# ---- held commands -------------------------------------------------------------------------------------------
class ReviewsHandler(FourEyesMixin, APIHandler):
    @authenticated
    async def get(self) -> None:
        if not self.foureyes.requests.is_approver(self.principal.user):
            raise Forbidden("only approvers see held commands")
        items = await self.foureyes.held()
        self.send({"items": items, "total": len(items)})


class ReviewDecisionHandler(FourEyesMixin, APIHandler):
    @authenticated
    async def post(self, review_id: str) -> None:
        body = self.body()
        v.only_fields(body, ("decision", "comment"))
        decision = v.text(body, "decision", max_len=10)
        if decision not in ("approve", "deny"):
            raise Invalid("decision must be approve or deny")
        comment = v.text(body, "comment", required=False, max_len=500).strip()
        self.send(await self.foureyes.decide(v.record_id(review_id, "review id"), self.principal.user,
                                             decision == "approve", comment))


# ---- live session controls ------------------------------------------------------------------------------------
class PauseHandler(FourEyesMixin, APIHandler):
    @role("auditor", "admin")
    async def post(self, session_id: str) -> None:
        body = self.body()
        v.only_fields(body, ("reason",))
        reason = v.text(body, "reason", max_len=200).strip()
        await self.foureyes.control_input(v.record_id(session_id, "session id"), "pause", self.actor, reason)
        self.send({"paused": True, "by": self.actor, "reason": reason})


class ResumeHandler(FourEyesMixin, APIHandler):
    @role("auditor", "admin")
    async def post(self, session_id: str) -> None:
        await self.foureyes.control_input(v.record_id(session_id, "session id"), "resume", self.actor)
        self.send({"paused": False, "by": self.actor})


class InvitesHandler(FourEyesMixin, APIHandler):
    @authenticated
    async def post(self, session_id: str) -> None:
        body = self.body()
        v.only_fields(body, ("username", "mode", "minutes"))
        username = v.text(body, "username", max_len=32)
        mode = check_mode(body.get("mode", "observer"))
        top = self.config.access.invite_minutes
        minutes = v.integer(body, "minutes", required=False, minimum=1, maximum=top, default=min(15, top))
        session, _ = self.managed(session_id)
        invitee = await self.store.get_user_by_name(username)
        if invitee is None or invitee.disabled:
            raise NotFound("no such Bastion user")
        if invitee.id == session.record.user_id:
            raise Invalid("the session's own user cannot be invited")
        token, invite = self.foureyes.invites.create(session.id, invitee, mode, minutes, self.actor)
        self.audit.emit("session.invited", actor=self.actor, target=session.record.host_name, session=session.id,
                        invitee=invitee.username, mode=mode, minutes=minutes)
        self.send({"url": f"/join/{token}", "username": invitee.username, "mode": mode,
                   "expires_at": invite.expires_at}, status=201)


class ParticipantsHandler(FourEyesMixin, APIHandler):
    @authenticated
    async def get(self, session_id: str) -> None:
        session, controls = self.managed(session_id)
        paused = controls.paused
        self.send({"owner": session.username, "items": controls.listing(),
                   "paused": {"by": paused[0], "reason": paused[1]} if paused else None})


class ParticipantHandler(FourEyesMixin, APIHandler):
    @authenticated
    async def delete(self, session_id: str, username: str) -> None:
        _, controls = self.managed(session_id)
        if not controls.leave(username[:32], removed_by=self.actor):
            raise NotFound("no such participant")
        self.set_status(204)
        self.finish()


# ---- pages ----------------------------------------------------------------------------------------------------
class AccessPage(FourEyesMixin, BaseHandler):
    @authenticated
    async def get(self) -> None:
        user = self.principal.user
        requests = self.foureyes.requests
        approver = requests.is_approver(user)
        mine = await requests.list(user, status=None, mine=True, review=None, limit=50, offset=0)
        pending = await requests.list(user, status="pending", mine=False, review=None, limit=100, offset=0)
        reviews = await requests.list(user, status=None, mine=False, review="pending", limit=100, offset=0)
        self.page("access.html", approver=approver, break_glass=requests.may_break_glass(user),
                  hosts=await self.store.all_hosts(), apps=(await self.store.list_apps(limit=500)).items,
                  max_minutes=self.config.access.max_request_minutes, mine=mine.items,
                  pending=[r for r in pending.items if r.user_id != user.id] if approver else [],
                  to_review=[r for r in reviews.items if r.user_id != user.id] if approver else [],
                  held=await self.foureyes.held() if approver else [])


class JoinPage(FourEyesMixin, BaseHandler):
    xterm_styles = True

    @authenticated
    async def get(self, token: str) -> None:
        invite = self.foureyes.invites.claim(token, self.principal.user)
        session, _ = self.foureyes.live(invite.session_id)
        self.page("join.html", invite=invite, session=session.record, token=token)


class JoinSocket(FourEyesMixin, SocketHandler):
    """/ws/join/<token>: an invited participant (observer or peer) of a live session."""

    participant = None
    controls = None
    bad_frames = 0
    read_scope = "terminal"  # the upgrade is a GET, but a peer types: an API token needs the terminal scope

    @authenticated
    async def get(self, token: str) -> None:
        self.invite = self.foureyes.invites.claim(token, self.principal.user)
        self.foureyes.live(self.invite.session_id)
        await WebSocketHandler.get(self, token)

    async def open(self, token: str) -> None:
        self.set_nodelay(True)
        try:
            session, controls = self.foureyes.live(self.invite.session_id)
            self.send_control(control("session", id=session.id, user=session.username, host=session.record.host_name,
                                      mode=self.invite.mode))
            self.participant = controls.join(self, self.principal.user, self.invite.mode)
            self.controls = controls
        except BastionError as exc:
            self.send_control(control("closed", reason=exc.message, code="gone"))
            self.hang_up()

    def on_message(self, message: str | bytes) -> None:
        if self.controls is None:
            return
        try:
            frame = parse_client_frame(message)
        except Invalid as exc:
            self.bad_frames += 1
            if self.bad_frames >= MAX_BAD_FRAMES:
                self.hang_up()
                return
            self.send_control(control("notice", message=exc.message))
            return
        if isinstance(frame, InputFrame):
            self.controls.peer_input(self.principal.user.username, frame.data)
        # resize frames are ignored: the owner's terminal decides the size

    def on_close(self) -> None:
        controls, participant = self.controls, self.participant
        self.controls = self.participant = None
        if controls is not None and participant is not None and controls.participants.get(participant.username) is participant:
            controls.leave(participant.username)


default_handlers = [
    (r"/api/access-requests", AccessRequestsHandler),
    (r"/api/access-requests/([^/]+)", AccessRequestHandler),
    (r"/api/access-requests/([^/]+)/decision", AccessDecisionHandler),
    (r"/api/access-requests/([^/]+)/cancel", AccessCancelHandler),
    (r"/api/access-requests/([^/]+)/review", AccessReviewHandler),
    (r"/api/reviews", ReviewsHandler),
    (r"/api/reviews/([^/]+)", ReviewDecisionHandler),
    (r"/api/sessions/([^/]+)/pause", PauseHandler),
    (r"/api/sessions/([^/]+)/resume", ResumeHandler),
    (r"/api/sessions/([^/]+)/invites", InvitesHandler),
    (r"/api/sessions/([^/]+)/participants", ParticipantsHandler),
    (r"/api/sessions/([^/]+)/participants/([^/]+)", ParticipantHandler),
    (r"/access", AccessPage),
    (r"/join/([A-Za-z0-9_-]{1,100})", JoinPage),
    (r"/ws/join/([A-Za-z0-9_-]{1,100})", JoinSocket),
]
