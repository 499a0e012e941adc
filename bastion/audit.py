"""Audit log: every security-relevant act is a registered, typed event written to the store."""
from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .journal import Journal
from .store import Event, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditAction:
    """A stable event name and numeric code (like Teleport's event codes)."""

    name: str
    code: str
    description: str


_ACTIONS = (
    AuditAction("login.ok", "B1000", "A user logged in"),
    AuditAction("login.failed", "B1001", "A login attempt failed"),
    AuditAction("login.locked", "B1002", "An account or address was locked after failed logins"),
    AuditAction("login.totp_failed", "B1003", "A wrong TOTP code was given"),
    AuditAction("logout", "B1004", "A user logged out"),
    AuditAction("lock.cleared", "B1005", "An admin cleared a lock"),
    AuditAction("totp.enrolled", "B1010", "A user enrolled TOTP"),
    AuditAction("totp.disabled", "B1011", "TOTP was turned off for a user"),
    AuditAction("user.created", "B1100", "A user was created"),
    AuditAction("user.updated", "B1101", "A user's roles or state changed"),
    AuditAction("user.password", "B1102", "A user's password was changed"),
    AuditAction("token.issued", "B1200", "An API token was issued"),
    AuditAction("token.revoked", "B1201", "An API token was revoked"),
    AuditAction("app.created", "B1300", "A category was created"),
    AuditAction("app.deleted", "B1301", "A category was deleted"),
    AuditAction("credential.created", "B1310", "A credential was created"),
    AuditAction("credential.deleted", "B1311", "A credential was deleted"),
    AuditAction("host.created", "B1320", "A host was created"),
    AuditAction("host.updated", "B1321", "A host was changed"),
    AuditAction("host.deleted", "B1322", "A host was deleted"),
    AuditAction("host.key_pinned", "B1323", "A host key was trusted on first use"),
    AuditAction("host.key_mismatch", "B1324", "A host offered a different key; connection refused"),
    AuditAction("host.key_accepted", "B1325", "An admin accepted a host's new key"),
    AuditAction("grant.created", "B1330", "Access was granted"),
    AuditAction("grant.deleted", "B1331", "Access was revoked"),
    AuditAction("session.started", "B2000", "A terminal session started"),
    AuditAction("session.ended", "B2001", "A terminal session ended"),
    AuditAction("session.refused", "B2002", "A terminal session could not start"),
    AuditAction("session.kicked", "B2003", "A session was ended by an auditor or admin"),
    AuditAction("session.interrupted", "B2004", "A session was found live after a crash"),
    AuditAction("access.locked", "B2005", "A user was locked out of a host (or every host) for a while"),
    AuditAction("access.unlocked", "B2006", "An admin removed a user's lock-out"),
    AuditAction("monitor.joined", "B2100", "Someone started watching a session"),
    AuditAction("monitor.left", "B2101", "Someone stopped watching a session"),
    AuditAction("monitor.input_refused", "B2102", "A monitor tried to send input or resize"),
    AuditAction("recording.opened", "B2200", "A recording was played or downloaded"),
    AuditAction("recording.purged", "B2201", "Recordings older than the retention period were deleted"),
    AuditAction("command.blocked", "B2300", "A command was denied by the command filter"),
    AuditAction("command.flagged", "B2301", "A command matched a warn rule"),
    AuditAction("rule.created", "B2310", "A command filter rule was created"),
    AuditAction("rule.deleted", "B2311", "A command filter rule was deleted"),
    AuditAction("module.run_started", "B3000", "A module run was accepted"),
    AuditAction("module.run_finished", "B3001", "A module run finished"),
    AuditAction("module.run_refused", "B3002", "A module run or command envelope was refused"),
    AuditAction("module.updated", "B3010", "An admin changed a module's availability"),
    AuditAction("module.reserved", "B3011", "An admin reserved a new module id"),
    AuditAction("module.run_cancelled", "B3003", "A user or an admin cancelled a module run"),
    AuditAction("login.malformed", "B1006", "A login request was malformed"),
    AuditAction("websocket.refused_origin", "B1009", "A WebSocket from another site's page was refused"),
    AuditAction("login.refused", "B1007", "A login was refused by a login rule"),
    AuditAction("login.expired", "B1008", "A login ended after it was idle too long"),
    AuditAction("login_rule.created", "B1020", "A login rule was created"),
    AuditAction("login_rule.updated", "B1021", "A login rule was changed"),
    AuditAction("login_rule.deleted", "B1022", "A login rule was deleted"),
    AuditAction("token.refused", "B1202", "An API token was refused (unknown, expired or lacking a scope)"),
    AuditAction("cluster.created", "B1450", "A Kubernetes cluster was added"),
    AuditAction("cluster.updated", "B1451", "A Kubernetes cluster was changed"),
    AuditAction("cluster.deleted", "B1452", "A Kubernetes cluster was deleted"),
    AuditAction("pod_grant.created", "B1453", "Access to a cluster namespace was granted"),
    AuditAction("pod_grant.deleted", "B1454", "Access to a cluster namespace was withdrawn"),
    AuditAction("user.deleted", "B1103", "A user was deleted"),
    AuditAction("credential.updated", "B1312", "A credential was renamed or its secret rotated"),
    AuditAction("host.tested", "B1326", "An admin tested the connection to a host"),
    AuditAction("rule.updated", "B2312", "A command filter rule was changed, enabled or disabled"),
    AuditAction("app.updated", "B1302", "A category was renamed or described"),
    AuditAction("report.exported", "B2600", "The audit log, sessions or commands were exported as CSV"),
    AuditAction("sso.failed", "B1031", "A single sign-on attempt failed (provider, token, directory or mapping)"),
    AuditAction("sso.user_created", "B1032", "A user was created at their first single sign-on"),
    AuditAction("sso.mapping_applied", "B1033", "A user's roles or grants changed from their groups at sign-in"),
    AuditAction("sso.mapping_changed", "B1034", "A provider's group mapping changed in the configuration"),
    AuditAction("sso.deprovisioned", "B1035", "A directory user was disabled: the directory no longer lists them as enabled"),
    AuditAction("passkey.enrolled", "B1012", "A user enrolled a passkey"),
    AuditAction("passkey.removed", "B1013", "A passkey was removed"),
    AuditAction("login.passkey_failed", "B1014", "A passkey assertion was refused (unknown key, bad signature, or a counter that went back)"),
    AuditAction("access.requested", "B2400", "A user asked for temporary access to a host or category"),
    AuditAction("access.approved", "B2401", "An approver granted an access request"),
    AuditAction("access.denied", "B2402", "An approver refused an access request"),
    AuditAction("access.expired", "B2403", "Temporary access ended by itself"),
    AuditAction("access.break_glass", "B2404", "A user approved their own access request through a break-glass role"),
    AuditAction("access.reviewed", "B2405", "A break-glass access was reviewed afterwards"),
    AuditAction("access.cancelled", "B2406", "A user withdrew their pending access request"),
    AuditAction("command.held", "B2320", "A command matched a review rule and waits for an approver"),
    AuditAction("command.approved", "B2321", "An approver let a held command run"),
    AuditAction("command.denied", "B2322", "An approver refused a held command, or nobody answered in time"),
    AuditAction("session.invited", "B2500", "Someone was invited to join a live session"),
    AuditAction("session.joined", "B2501", "An invited user joined a live session"),
    AuditAction("session.left", "B2502", "A participant left a live session"),
    AuditAction("session.participant_removed", "B2503", "A participant was removed from a live session"),
    AuditAction("session.paused", "B2504", "An auditor paused a live session's input"),
    AuditAction("session.resumed", "B2505", "An auditor resumed a paused session's input"),

    AuditAction("gateway.login", "B4000", "A user logged in to the SSH gateway"),
    AuditAction("gateway.login_refused", "B4001", "An SSH gateway login was refused"),
    AuditAction("gateway.forward_refused", "B4002", "An SSH gateway port forward or ProxyJump was refused"),
    AuditAction("gateway.transfer", "B4003", "A file was uploaded or downloaded (SSH gateway or file panel)"),
    AuditAction("gateway.transfer_refused", "B4004", "A file transfer was refused"),
    AuditAction("ssh_key.added", "B4010", "A user registered an SSH public key"),
    AuditAction("ssh_key.removed", "B4011", "An SSH public key was removed"),
    AuditAction("gateway.jump", "B4005", "A ProxyJump connection was terminated at the gateway (recorded)"),
)
ACTIONS: dict[str, AuditAction] = {a.name: a for a in _ACTIONS}
SECRET_KEYS = ("password", "secret", "token", "private_key", "totp", "code")
# The address of the client whose request is being handled, set by the HTTP handlers for their own task, so that
# every event written while serving it (an admin's change as much as a login) names who it came from.
request_client: ContextVar[str] = ContextVar("request_client", default="")


class Audit:
    """Writes audit events; a failure to write is logged loudly but never hides the original act.

    `record` awaits the store (request handlers: the act and its audit succeed or fail together); `emit` goes
    through the journal and never waits (live-session paths: keystrokes, kicks, session ends).
    """

    # Rate-limited events: at most LIMIT_PER_MINUTE per (action, key) a minute, so a flood of bad requests
    # cannot flood the audit log; the next event written says how many were left out.
    LIMIT_PER_MINUTE = 20
    MAX_KEYS = 10000

    def __init__(self, store: Store, journal: Journal) -> None:
        self.store = store
        self.journal = journal
        self._windows: dict[tuple[str, str], list[float]] = {}  # (action, key) -> [window start, count, left out]

    def _admit(self, action: str, key: str, per_minute: int) -> tuple[bool, int]:
        """Whether one more (action, key) event fits this minute; and how many were left out before it."""
        now = time.monotonic()
        if len(self._windows) > self.MAX_KEYS:  # many addresses: forget old windows rather than grow
            self._windows = {k: w for k, w in self._windows.items() if now - w[0] < 60}
            if len(self._windows) > self.MAX_KEYS:
                self._windows.clear()
        window = self._windows.get((action, key))
        if window is None or now - window[0] >= 60:
            left_out = int(window[2]) if window else 0
            self._windows[(action, key)] = [now, 1, 0]
            return True, left_out
        if window[1] >= per_minute:
            window[2] += 1
            return False, 0
        window[1] += 1
        return True, 0

    async def record_limited(self, action: str, key: str, *, per_minute: int = 0, actor: str = "", target: str = "",
                             address: str = "", ok: bool = False, **detail: Any) -> Event | None:
        """Like record(), but at most per_minute events per (action, key) a minute (key: usually the address)."""
        admitted, left_out = self._admit(action, key, per_minute or self.LIMIT_PER_MINUTE)
        if not admitted:
            return None
        if left_out:
            detail["left_out"] = left_out
        return await self.record(action, actor=actor, target=target, address=address, ok=ok, **detail)

    @staticmethod
    def build(action: str, *, actor: str = "", target: str = "", address: str = "", ok: bool = True,
              **detail: Any) -> Event:
        """A registered, secret-free event (raises for an unregistered action name)."""
        spec = ACTIONS.get(action)
        if spec is None:
            raise ValueError(f"unregistered audit action {action!r}")
        clean = {k: v for k, v in detail.items() if not any(s in k.lower() for s in SECRET_KEYS)}
        return Event(action=action, code=spec.code, actor=actor, target=target,
                     address=address or request_client.get(), ok=ok, detail=clean)

    def emit(self, action: str, **fields: Any) -> Event:
        """Journal an event (never awaits the store; stored exactly once when the store answers)."""
        event = self.build(action, **fields)
        self.journal.event(event)
        return event

    async def record(self, action: str, *, actor: str = "", target: str = "", address: str = "",
                     ok: bool = True, **detail: Any) -> Event:
        event = self.build(action, actor=actor, target=target, address=address, ok=ok, **detail)
        try:
            await self.store.add_event(event)
        except Exception:
            log.exception("audit event %s could not be written [actor=%s target=%s]", action, actor, target)
            raise
        return event
