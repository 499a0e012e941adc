"""SessionHub: the registry and router of live sessions — this node's in memory (the default, one node).

It finds a session, attaches a watcher to it, ends sessions by id, and carries policy changes ("user X's
access changed") to every node's engine. It also reserves session slots per user, so a burst of opens cannot
exceed the limit. `hub_redis.RedisHub` does the same across nodes. Live control (watch, end) never waits on
the database.
"""
from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from .errors import Conflict, NotFound

if TYPE_CHECKING:
    from .sessions.doors import FrontDoor
    from .sessions.session import LiveSession
    from .store import Session

log = logging.getLogger(__name__)
PolicyListener = Callable[[str, str, str], Awaitable[Any]]  # (user_id, by, why)
# Answers one kind of request from another node: gets the request's fields, returns the answer's; refuses by raising
# NotFound, Conflict or Forbidden (the asking node raises the same).
RequestHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
NOT_WAITING = "this command is no longer waiting (decided, timed out, or its session ended)"


class WatchHandle(Protocol):
    """What `watch` returns: counts refused inputs; `unwatch` takes it back."""

    refused_inputs: int


class SessionHub:
    """This node's live sessions."""

    backend = "memory"

    def __init__(self, node: str) -> None:
        self.node = node
        self.sessions: dict[str, "LiveSession"] = {}
        self._listeners: list[PolicyListener] = []
        self._slots: dict[str, set[str]] = {}
        self._handlers: dict[str, RequestHandler] = {}

    async def start(self) -> None:
        """Connect to whatever the hub needs (nothing for the in-memory hub)."""

    async def close(self) -> None:
        """Disconnect (nothing for the in-memory hub)."""

    async def ping(self) -> None:
        """Raise Unavailable when the hub cannot be used (never for the in-memory hub)."""

    # ---- registry -----------------------------------------------------------------------------------
    def register(self, session: "LiveSession") -> None:
        self.sessions[session.id] = session

    def unregister(self, session: "LiveSession") -> None:
        self.sessions.pop(session.id, None)

    def get(self, session_id: str) -> "LiveSession | None":
        return self.sessions.get(session_id)

    def live(self) -> list["LiveSession"]:
        return list(self.sessions.values())

    # ---- session slots ------------------------------------------------------------------------------
    async def reserve(self, user_id: str, limit: int) -> str:
        """Reserve one of a user's `limit` session slots, atomically; raise Conflict when none is free."""
        held = self._slots.setdefault(user_id, set())
        if len(held) >= limit:
            raise Conflict(f"you already have {len(held)} live sessions; the limit is {limit}")
        slot = secrets.token_hex(8)
        held.add(slot)
        return slot

    def release(self, user_id: str, slot: str) -> None:
        held = self._slots.get(user_id)
        if held is not None:
            held.discard(slot)
            if not held:
                del self._slots[user_id]

    def slots_held(self, user_id: str) -> int:
        """How many session slots a user holds on this node."""
        return len(self._slots.get(user_id, ()))

    # ---- routing ------------------------------------------------------------------------------------
    def reachable(self, record: "Session") -> bool:
        """Whether this node can watch and end a live session."""
        return record.id in self.sessions

    def unreachable_error(self, record: "Session") -> Conflict:
        return Conflict(f"session is live on node {record.node}, which this node cannot reach (no shared hub)")

    async def watch(self, record: "Session", door: "FrontDoor", username: str) -> WatchHandle:
        """Attach a read-only watcher to a live session."""
        session = self.sessions.get(record.id)
        if session is None or session.closing:
            raise self.unreachable_error(record) if record.node != self.node else NotFound("session has ended")
        return session.attach_watcher(door, username)

    async def unwatch(self, session_id: str, handle: Any) -> None:
        session = self.sessions.get(session_id)
        if session is not None:
            session.detach_watcher(handle)
        else:
            handle.close()

    async def end_local(self, session_id: str, reason: str, by: str) -> "Session | None":
        """End a session of this node (kick); None when it does not run here."""
        session = self.sessions.get(session_id)
        if session is None:
            return None
        if session.closing:
            raise Conflict("session has already ended")
        return await session.close("kicked", by=by, note=reason)

    async def end(self, record: "Session", reason: str, by: str) -> "Session | None":
        """Kick a live session wherever it runs; returns the ended record when it ran here."""
        ended = await self.end_local(record.id, reason, by)
        if ended is not None:
            return ended
        if record.node == self.node:  # ours and gone: it ended, and its end is on its way to the store
            raise Conflict("session has already ended")
        await self.end_remote(record, reason, by)
        return None

    async def end_remote(self, record: "Session", reason: str, by: str) -> None:
        """End a session another node runs (this hub cannot reach other nodes)."""
        raise self.unreachable_error(record)

    # ---- requests to other nodes (cancel a run, decide a held command, pause input) -------------------
    def serve(self, op: str, handler: RequestHandler) -> None:
        """Answer requests `op` from other nodes with `handler`."""
        self._handlers[op] = handler

    async def ask(self, node: str, op: str, body: dict[str, Any], *, unreachable: str, gone: str,
                  missing_is_404: bool = False) -> dict[str, Any]:
        """Send request `op` to `node` and return its answer. `unreachable`: the refusal when no hub links the nodes
        (this one); `gone`: what to add when the node does not answer; `missing_is_404`: its NotFound stays one."""
        raise Conflict(unreachable)

    # ---- held commands of other nodes -----------------------------------------------------------------
    def share_held(self, held: dict[str, Any], ttl: float) -> None:
        """Show a held command (its public view) to approvers on other nodes for at most `ttl` seconds."""

    def withdraw_held(self, review_id: str) -> None:
        """The command was decided, timed out, or its session ended."""

    async def held_elsewhere(self) -> list[dict[str, Any]]:
        """Commands held on other nodes (public views with their `node`), oldest first."""
        return []

    async def held_on(self, review_id: str) -> str | None:
        """The node holding a command shared by another node (None: not shared, or held here)."""
        return None

    # ---- policy -------------------------------------------------------------------------------------
    def on_policy_changed(self, listener: PolicyListener) -> None:
        """`listener(user_id, by, why)` runs on every node when a user's access changes."""
        self._listeners.append(listener)

    async def policy_changed(self, user_id: str, *, by: str, why: str) -> None:
        """A user was disabled, lost a grant or was locked: every node re-checks that user's sessions."""
        await self._run_listeners(user_id, by, why)

    async def _run_listeners(self, user_id: str, by: str, why: str) -> None:
        for listener in self._listeners:
            try:
                await listener(user_id, by, why)
            except Exception:
                log.exception("policy listener failed [user=%s]", user_id)
