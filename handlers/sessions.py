"""Sessions: list, detail, kick, recording download; the terminal, sessions and watch pages."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from bastion import validation as v
from bastion.errors import Conflict
from bastion.playback import recording_file
from bastion.store import Session, page_bounds

from .base import APIHandler, BaseHandler, authenticated, role
from .ui import ExportMixin

END_REASONS = ("exit", "closed", "host_lost", "idle", "expired", "revoked", "slow_client", "kicked", "shutdown",
               "interrupted", "failed", "record_failed")
LOCK_SCOPES = ("host", "all")


class SessionsMixin:
    def session_view(self, s: Session) -> dict[str, Any]:
        doc = s.public()
        doc.pop("recording_path", None)
        doc.pop("recording_chain", None)
        live = self.hub.get(s.id) if s.live else None  # type: ignore[attr-defined]
        doc["watchers"] = live.watcher_count if live else None  # unknown for another node's session
        if live:
            doc["bytes_out"] = live.bytes_out
            doc["cols"], doc["rows"] = live.cols, live.rows
        doc["local"] = live is not None
        return doc


class SessionsHandler(ExportMixin, SessionsMixin, APIHandler):
    @role("auditor", "admin")
    async def get(self) -> None:
        arg = self.arg
        live = self.flag_arg("live")
        user_id = await self.user_filter()
        host_id = v.record_id(arg("host_id"), "host_id") if arg("host_id") else None
        reason = arg("reason")
        if reason and reason not in END_REASONS:
            raise v.Invalid(f"reason must be one of {', '.join(END_REASONS)}")
        limit, offset = page_bounds(arg("limit"), arg("offset"))
        since, until = v.query_float(arg("since"), "since"), v.query_float(arg("until"), "until")
        await self.send_listing(lambda lim, off: self.store.list_sessions(
            live=live, user_id=user_id, host_id=host_id, end_reason=reason, since=since, until=until, limit=lim,
            offset=off), Session, "sessions", limit, offset, self.session_view)


class SessionHandler(SessionsMixin, APIHandler):
    @role("auditor", "admin")
    async def get(self, session_id: str) -> None:
        self.send(self.session_view(await self.load_session(session_id)))


class SessionKillHandler(SessionsMixin, APIHandler):
    @role("auditor", "admin")
    async def post(self, session_id: str) -> None:
        body = self.body()
        v.only_fields(body, ("reason", "lock_minutes", "lock_scope"))
        reason = v.text(body, "reason", max_len=200)
        lock_minutes = v.integer(body, "lock_minutes", required=False, minimum=1, maximum=30 * 24 * 60)
        lock_scope = body.get("lock_scope", "host")
        if lock_scope not in LOCK_SCOPES:
            raise v.Invalid("the lock applies to this host or to every host")
        session_id = v.record_id(session_id, "session id")
        # a session of this node ends from the hub alone: no database round trip before the kick
        ended = await self.hub.end_local(session_id, reason, self.actor)
        if ended is None:
            record = await self.load_session(session_id)
            if not record.live:
                raise Conflict(f"session has already ended ({record.end_reason})")
            ended = await self.hub.end(record, reason, self.actor)
        if ended is None:
            ended = await self.load_session(session_id)
        if lock_minutes:  # "end and lock": the user cannot reopen (this host, or any) for a while
            await self.services.sessions.lock_out(ended, minutes=lock_minutes, every_host=lock_scope == "all",
                                                  reason=reason, by=self.actor)
        self.send(self.session_view(ended))


class AccessLocksHandler(APIHandler):
    @role("auditor", "admin")
    async def get(self) -> None:
        locks = await self.store.list_locks()
        self.send({"items": [lock.public() for lock in locks], "total": len(locks)})


class AccessLockHandler(APIHandler):
    @role("admin")
    async def delete(self, lock_id: str) -> None:
        lock = await self.store.delete_lock(v.record_id(lock_id, "lock id"))
        await self.audit.record("access.unlocked", actor=self.actor, target=lock.username, host=lock.host_name or "all")
        self.set_status(204)
        self.finish()


class RecordingHandler(SessionsMixin, APIHandler):
    @role("auditor", "admin")
    async def get(self, session_id: str) -> None:
        record = await self.load_session(session_id)
        path = recording_file(self.config, record)
        await self.audit.record("recording.opened", actor=self.actor, target=record.host_name, session=record.id,
                                user=record.username)
        self.set_header("Content-Type", "application/x-asciicast")
        self.set_header("Content-Disposition", f'attachment; filename="{record.id}.cast"')
        self.set_header("X-Content-Type-Options", "nosniff")
        loop = asyncio.get_running_loop()
        with open(path, "rb") as fh:  # reads go to the I/O pool: a large recording never blocks the loop
            while chunk := await loop.run_in_executor(self.services.cpu, fh.read, 256 * 1024):
                self.write(chunk)
                await self.flush()
        self.finish()


class TerminalPage(BaseHandler):
    xterm_styles = True

    @authenticated
    async def get(self, host_id: str) -> None:
        host = await self.inventory.openable_host(self.principal.user, host_id, address=self.client_address)
        self.page("terminal.html", host=host)


class SessionsPage(BaseHandler):
    @role("auditor", "admin")
    async def get(self) -> None:
        self.page("sessions.html", reasons=END_REASONS, users=(await self.store.list_users(limit=500)).items,
                  hosts=await self.store.all_hosts())


class WatchPage(BaseHandler):
    xterm_styles = True

    @role("auditor", "admin")
    async def get(self, session_id: str) -> None:
        record = await self.load_session(session_id)
        self.page("watch.html", session=record, started=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started_at)))


class DashboardPage(BaseHandler):
    @role("auditor", "admin")
    async def get(self) -> None:
        day = time.time() - 86400
        live = await self.store.list_sessions(live=True, limit=100)
        today = await self.store.list_sessions(since=day, limit=1)
        kicks = await self.store.list_events(action="session.kicked", limit=10)
        failed = await self.store.list_events(action="login.failed", limit=10)
        self.page("dashboard.html", live=live, today=today.total, kicks=kicks, failed=failed,
                  watchers={s.id: h.watcher_count if (h := self.hub.get(s.id)) else "—" for s in live.items})


default_handlers = [
    (r"/api/sessions", SessionsHandler),
    (r"/api/sessions/([^/]+)", SessionHandler),
    (r"/api/sessions/([^/]+)/kill", SessionKillHandler),
    (r"/api/sessions/([^/]+)/recording", RecordingHandler),
    (r"/api/access-locks", AccessLocksHandler),
    (r"/api/access-locks/([^/]+)", AccessLockHandler),
    (r"/terminal/([^/]+)", TerminalPage),
    (r"/sessions", SessionsPage),
    (r"/watch/([^/]+)", WatchPage),
    (r"/dashboard", DashboardPage),
]
