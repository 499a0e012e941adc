"""Redis hub: the in-memory hub plus Redis between nodes (`[hub] url = redis://…`).

The node that owns a session keeps running it exactly as on one node. Another node that wants to watch it
sends a `watch` request on the owner's node channel; the owner attaches a relay watcher (the same bounded,
budgeted Watcher a local socket gets) whose door publishes the output and control frames on a channel private
to that watcher. Kicks go the same way and are answered on the asking node's reply channel, with a timeout and
a clear error when the owner is gone; so do pause and resume of a session's input, cancels of module runs and
approvers' decisions on held commands (each held command is also a key that expires by itself, so approvers on
every node see it). Policy changes are broadcast on one channel every node listens to.
Session slots are a sorted set per user (member: slot, score: lease expiry), reserved by one Lua script so a
burst across nodes cannot exceed the limit; each node renews its leases, so a dead node's slots expire.

Outages: the listener never spins and never blocks the loop. On a lost link it tells remote watchers, closes
the old PubSub, reconnects with backoff, resubscribes, and asks each owner again: the watcher's screen is reset
and redrawn from the owner's replay window.

Wire format on Redis: watcher channels carry b"o" + output bytes or b"c" + a JSON control frame; node
channels carry JSON requests {"op", "id", "from", ...}; replies are JSON {"id", "ok", "error"?}.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .config import Config, redact_url
from .errors import Conflict, Forbidden, NotFound, Unavailable
from .hub import SessionHub, WatchHandle
from .protocol import control

if TYPE_CHECKING:
    from .sessions.doors import FrontDoor
    from .store import Session

log = logging.getLogger(__name__)
REQUEST_TIMEOUT = 2.0
REWATCH_PATIENCE = 30.0  # seconds a remote watcher waits for the owner node after the hub came back
POLICY_CHANNEL = "bastion:policy"
HELD_PREFIX = "bastion:held:"  # + review id: a held command's public view and node, for approvers on other nodes
MAX_HELD_LISTED = 500
RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""


def node_channel(node: str) -> str:
    return f"bastion:node:{node}"


def reply_channel(node: str) -> str:
    return f"bastion:reply:{node}"


def slots_key(user_id: str) -> str:
    return f"bastion:slots:{user_id}"


def _swallow(fut: "asyncio.Future[Any]") -> None:
    if not fut.cancelled():
        fut.exception()


class _RelayDoor:
    """Owner side: what a relay watcher writes goes to one remote watcher's channel."""

    def __init__(self, hub: "RedisHub", channel: str) -> None:
        self.hub = hub
        self.channel = channel
        self.closed = False

    def send_output(self, data: bytes) -> "asyncio.Future[Any] | None":
        if self.closed or not self.hub.connected:
            return None
        return asyncio.ensure_future(self._publish(b"o" + data))

    async def _publish(self, payload: bytes) -> None:
        if not await self.hub.publish(self.channel, payload):
            self.closed = True  # nobody listens any more (the watcher's node went away): stop relaying
            raise ConnectionError("remote watcher gone")

    def send_control(self, text: str) -> None:
        if not self.closed and self.hub.connected:
            self.hub.spawn(self.hub.publish(self.channel, b"c" + text.encode()))

    def hang_up(self) -> None:
        self.closed = True


class RemoteWatch:
    """Watcher side: one local monitor socket fed from an owner node through Redis."""

    def __init__(self, session_id: str, owner: str, door: "FrontDoor", username: str,
                 on_relink: Callable[["RemoteWatch"], None]) -> None:
        self.on_relink = on_relink
        self.session_id = session_id
        self.owner = owner
        self.door = door
        self.username = username
        self.id = secrets.token_hex(8)
        self.channel = f"bastion:watch:{self.id}"
        self.refused_inputs = 0
        self.closed = False

    def deliver(self, payload: bytes) -> None:
        if self.closed:
            return
        kind, body = payload[:1], payload[1:]
        if kind == b"o":
            fut = self.door.send_output(body)
            if fut is not None:
                fut.add_done_callback(_swallow)
        elif kind == b"c":
            text = body.decode("utf-8", "replace")
            try:
                kind_of = json.loads(text).get("type")
            except ValueError:
                kind_of = None
            if kind_of == "relink":  # the owner lost its link and is back: ask again for a fresh screen
                self.on_relink(self)
                return
            self.door.send_control(text)
            if kind_of == "closed":
                self.closed = True
                self.door.hang_up()

    def close(self, frame: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        if frame:
            self.door.send_control(frame)
        self.door.hang_up()


class RedisHub(SessionHub):
    """SessionHub shared between nodes through Redis."""

    backend = "redis"

    def __init__(self, config: Config) -> None:
        super().__init__(config.node_id)
        self.url = config.hub.url
        self.lease = config.hub.node_timeout
        self._redis: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._listener: asyncio.Task | None = None
        self._renewer: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._routes: dict[str, Callable[[bytes], None]] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self._relays: dict[str, Any] = {}
        self._watches: dict[str, RemoteWatch] = {}
        self._held: dict[str, dict[str, str]] = {}  # user_id -> {slot: ""}: leases this node renews
        self._reserve: Any = None
        self.connected = False
        self.published = 0

    def spawn(self, coro: Any) -> None:
        """Run a fire-and-forget coroutine, keeping a reference until it ends (errors retrieved)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_swallow)

    # ---- connection ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._redis = aioredis.from_url(self.url, socket_connect_timeout=3, socket_timeout=5,
                                        health_check_interval=10)
        try:
            await self._redis.ping()
        except (RedisError, OSError):
            await self._redis.aclose()
            raise Unavailable(f"hub {redact_url(self.url)} cannot be reached") from None
        self._reserve = self._redis.register_script(RESERVE)
        await self._subscribe_all()
        loop = asyncio.get_running_loop()
        self._listener = loop.create_task(self._listen())
        self._renewer = loop.create_task(self._renew_leases())

    async def _subscribe_all(self) -> None:
        assert self._redis is not None
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(node_channel(self.node), reply_channel(self.node), POLICY_CHANNEL, *self._routes)
        except BaseException:
            await _close_pubsub(pubsub)
            raise
        self._pubsub = pubsub
        self.connected = True

    async def publish(self, channel: str, payload: bytes | str) -> int:
        """Publish; returns how many subscribers received it."""
        if self._redis is None:
            raise Unavailable("hub is not connected")
        try:
            receivers = await self._redis.publish(channel, payload)
        except (RedisConnectionError, OSError):
            # after a Redis restart the pool still holds dead connections: the first use of each fails once
            receivers = await self._redis.publish(channel, payload)
        self.published += 1
        return int(receivers)

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
                backoff = 0.2
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
                data = message["data"] if isinstance(message["data"], bytes) else str(message["data"]).encode()
                try:
                    self._dispatch(channel, data)
                except Exception:
                    log.exception("hub message on %s failed", channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # RedisError, OSError, and redis-py's internal errors on a dead socket
                if self.connected:
                    self.connected = False
                    log.warning("hub connection lost (%s); reconnecting", type(exc).__name__)
                    self._tell_watchers("the link between bastion nodes was lost; reconnecting…")
                await _close_pubsub(self._pubsub)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                try:
                    await self._subscribe_all()
                except Exception:
                    continue
                log.info("hub reconnected")
                self.spawn(self._rewatch())
                self.spawn(self._relink_relays())

    async def _relink_relays(self) -> None:
        """Owner side, after a reconnect: what the relays wrote while the link was down is lost, so each remote
        watcher is asked to watch again (and gets a reset and a fresh screen)."""
        relays, self._relays = self._relays, {}
        for channel, relay in relays.items():
            for session in self.sessions.values():
                if relay in session.watchers:
                    session.detach_watcher(relay)
            try:
                await self.publish(channel, b"c" + control("relink").encode())
            except (RedisError, OSError, Unavailable):
                pass

    def _tell_watchers(self, message: str) -> None:
        for watch in list(self._watches.values()):
            watch.door.send_control(control("notice", level="warn", message=message))

    async def _rewatch(self, watches: "list[RemoteWatch] | None" = None) -> None:
        """After a reconnect, ask each owner again: the watcher's screen is reset and redrawn.

        The owner may still be reconnecting itself, so "not answering" is retried for REWATCH_PATIENCE s; an owner
        that answers "ended" closes the watcher at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REWATCH_PATIENCE
        waiting = list(self._watches.values()) if watches is None else watches
        delay = 0.2
        while waiting:
            left = []
            for watch in waiting:
                if watch.closed or watch.id not in self._watches:
                    continue
                try:
                    await self._request(watch.owner, {"op": "watch", "session": watch.session_id,
                                                      "channel": watch.channel, "user": watch.username})
                    watch.door.send_control(control("notice", message="reconnected to the session's node"))
                except Conflict as exc:
                    watch.close(control("closed", reason=f"the session ended: {exc.message}", code="gone"))
                    self._forget_watch(watch)
                except Unavailable as exc:
                    if loop.time() >= deadline:
                        watch.close(control("closed", reason=f"lost the session's node: {exc.message}", code="gone"))
                        self._forget_watch(watch)
                    else:
                        left.append(watch)
            waiting = left
            if waiting:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _dispatch(self, channel: str, data: bytes) -> None:
        if channel == reply_channel(self.node):
            reply = json.loads(data)
            fut = self._pending.pop(reply.get("id", ""), None)
            if fut is not None and not fut.done():
                fut.set_result(reply)
        elif channel == node_channel(self.node):
            self.spawn(self._serve(json.loads(data)))
        elif channel == POLICY_CHANNEL:
            event = json.loads(data)
            if event.get("from") != self.node:
                self.spawn(self._run_listeners(str(event.get("user", "")), str(event.get("by", "")),
                                               str(event.get("why", ""))))
        elif channel in self._routes:
            self._routes[channel](data)

    # ---- requests between nodes -------------------------------------------------------------------
    async def _request(self, node: str, body: dict[str, Any], gone: str = "the session may be gone",
                       missing_is_404: bool = False) -> dict[str, Any]:
        request_id = secrets.token_hex(8)
        fut = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            await self.publish(node_channel(node), json.dumps({**body, "id": request_id, "from": self.node}))
            reply = await asyncio.wait_for(fut, REQUEST_TIMEOUT)
        except (asyncio.TimeoutError, RedisError, OSError):
            raise Unavailable(f"node {node} is not answering; {gone}") from None
        finally:
            self._pending.pop(request_id, None)
        if not reply.get("ok"):
            error = str(reply.get("error", "refused by the owner node"))
            if reply.get("kind") == "forbidden":
                raise Forbidden(error)
            raise NotFound(error) if missing_is_404 and reply.get("kind") == "not_found" else Conflict(error)
        return reply

    async def _serve(self, request: dict[str, Any]) -> None:
        op, sender = request.get("op"), str(request.get("from", ""))
        reply: dict[str, Any] = {"id": request.get("id", ""), "ok": True}
        try:
            session_id = str(request.get("session", ""))
            if op == "watch":
                channel = str(request["channel"])
                old = self._relays.pop(channel, None)
                session = self.sessions.get(session_id)
                if session is not None and old is not None:
                    session.detach_watcher(old)
                if session is None or session.closing:
                    raise NotFound("the session has ended")
                self._relays[channel] = session.attach_watcher(_RelayDoor(self, channel), str(request.get("user", "")))
            elif op == "unwatch":
                relay = self._relays.pop(str(request.get("channel")), None)
                session = self.sessions.get(session_id)
                if relay is not None and session is not None:
                    session.detach_watcher(relay)
            elif op == "kick":
                if await self.end_local(session_id, str(request.get("reason", "")), str(request.get("by", ""))) is None:
                    raise NotFound("the session is not live on its node")
            elif op in self._handlers:
                reply["answer"] = await self._handlers[op](request)
            else:
                reply = {"id": reply["id"], "ok": False, "error": f"unknown request {str(op)[:20]!r}"}
        except NotFound as exc:
            reply = {"id": reply["id"], "ok": False, "error": exc.message, "kind": "not_found"}
        except Conflict as exc:
            reply = {"id": reply["id"], "ok": False, "error": exc.message}
        except Forbidden as exc:
            reply = {"id": reply["id"], "ok": False, "error": exc.message, "kind": "forbidden"}
        except (KeyError, TypeError, ValueError):
            reply = {"id": reply["id"], "ok": False, "error": "malformed request"}
        if sender:
            try:
                await self.publish(reply_channel(sender), json.dumps(reply))
            except (RedisError, OSError, Unavailable):
                log.warning("could not answer node %s", sender)

    # ---- session slots ------------------------------------------------------------------------------
    async def reserve(self, user_id: str, limit: int) -> str:
        slot = f"{self.node}:{secrets.token_hex(8)}"
        now = time.time()
        try:
            ok = await self._reserve(keys=[slots_key(user_id)], args=[now, now + self.lease, limit, slot])
        except (RedisError, OSError):
            raise Unavailable("the hub is not answering; new sessions cannot start right now") from None
        if not ok:
            raise Conflict(f"you already have {limit} live sessions; the limit is {limit}")
        self._held.setdefault(user_id, {})[slot] = ""
        return slot

    def release(self, user_id: str, slot: str) -> None:
        held = self._held.get(user_id)
        if held is not None:
            held.pop(slot, None)
            if not held:
                del self._held[user_id]
        if self._redis is not None:
            self.spawn(self._redis.zrem(slots_key(user_id), slot))

    def slots_held(self, user_id: str) -> int:
        return len(self._held.get(user_id, ()))

    async def _renew_leases(self) -> None:
        """Keep this node's slots alive; a node that stops renewing loses them after the lease."""
        while True:
            await asyncio.sleep(max(0.5, self.lease / 3))
            expiry = time.time() + self.lease
            for user_id, held in list(self._held.items()):
                try:
                    await self._redis.zadd(slots_key(user_id), {slot: expiry for slot in held}, xx=True)  # type: ignore[union-attr]
                except (RedisError, OSError):
                    break
                except Exception:
                    log.exception("renewing session slots failed")

    # ---- what handlers use -------------------------------------------------------------------------
    def reachable(self, record: "Session") -> bool:
        return record.id in self.sessions or record.node != self.node

    async def watch(self, record: "Session", door: "FrontDoor", username: str) -> WatchHandle:
        if record.id in self.sessions or record.node == self.node:
            return await super().watch(record, door, username)
        if not self.connected or self._pubsub is None:
            raise Unavailable("the link between bastion nodes is down; try again shortly")
        watch = RemoteWatch(record.id, record.node, door, username,
                            on_relink=lambda w: self.spawn(self._rewatch([w])))
        self._routes[watch.channel] = watch.deliver
        try:
            await self._pubsub.subscribe(watch.channel)
            await self._request(record.node, {"op": "watch", "session": record.id, "channel": watch.channel,
                                              "user": username})
        except (RedisError, OSError):
            self._forget_watch(watch)
            raise Unavailable("the link between bastion nodes is down; try again shortly") from None
        except BaseException:
            self._forget_watch(watch)
            raise
        self._watches[watch.id] = watch
        return watch

    def _forget_watch(self, watch: RemoteWatch) -> None:
        self._watches.pop(watch.id, None)
        self._routes.pop(watch.channel, None)
        if self._pubsub is not None and self.connected:
            self.spawn(self._pubsub.unsubscribe(watch.channel))

    async def unwatch(self, session_id: str, handle: Any) -> None:
        if not isinstance(handle, RemoteWatch):
            await super().unwatch(session_id, handle)
            return
        handle.closed = True
        self._forget_watch(handle)
        try:
            await self._request(handle.owner, {"op": "unwatch", "session": session_id, "channel": handle.channel})
        except (Unavailable, Conflict):
            pass  # the owner drops relays whose channel has no listener when it next writes

    async def end_remote(self, record: "Session", reason: str, by: str) -> None:
        await self._request(record.node, {"op": "kick", "session": record.id, "reason": reason, "by": by})

    async def ask(self, node: str, op: str, body: dict[str, Any], *, unreachable: str, gone: str,
                  missing_is_404: bool = False) -> dict[str, Any]:
        reply = await self._request(node, {**body, "op": op}, gone=gone, missing_is_404=missing_is_404)
        return reply.get("answer") or {}

    # ---- held commands: one key per command, expiring by itself if its node dies -------------------------
    def share_held(self, held: dict[str, Any], ttl: float) -> None:
        if self._redis is not None:
            self.spawn(self._redis.set(HELD_PREFIX + held["id"], json.dumps({**held, "node": self.node}),
                                       ex=max(1, int(ttl) + 5)))

    def withdraw_held(self, review_id: str) -> None:
        if self._redis is not None:
            self.spawn(self._redis.delete(HELD_PREFIX + review_id))

    async def _read_held(self, keys: list[Any]) -> list[dict[str, Any]]:
        if self._redis is None or not keys:
            return []
        try:
            values = await self._redis.mget(keys)
        except (RedisError, OSError):
            log.warning("held commands of other nodes cannot be read (hub down)")
            return []
        docs = []
        for raw in values:
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("node") != self.node:
                docs.append(doc)
        return docs

    async def held_elsewhere(self) -> list[dict[str, Any]]:
        if self._redis is None:
            return []
        keys: list[Any] = []
        try:
            async for key in self._redis.scan_iter(match=HELD_PREFIX + "*", count=200):
                keys.append(key)
                if len(keys) >= MAX_HELD_LISTED:
                    break
        except (RedisError, OSError):
            log.warning("held commands of other nodes cannot be listed (hub down)")
            return []
        return sorted(await self._read_held(keys), key=lambda d: d.get("created_at", 0))

    async def held_on(self, review_id: str) -> str | None:
        held = await self._read_held([HELD_PREFIX + review_id])
        return str(held[0]["node"]) if held else None

    async def policy_changed(self, user_id: str, *, by: str, why: str) -> None:
        await self._run_listeners(user_id, by, why)
        try:
            await self.publish(POLICY_CHANNEL, json.dumps({"user": user_id, "by": by, "why": why, "from": self.node}))
        except (RedisError, OSError, Unavailable):
            log.warning("policy change for user %s not broadcast (hub down); other nodes re-check periodically", user_id)

    async def ping(self) -> None:
        if self._redis is None:
            raise Unavailable("hub is not connected")
        try:
            await asyncio.wait_for(self._redis.ping(), 2)
        except (RedisError, OSError, asyncio.TimeoutError):
            raise Unavailable(f"hub {redact_url(self.url)} is not answering") from None

    async def close(self) -> None:
        for task in (self._listener, self._renewer):
            if task is not None:
                task.cancel()
        for task in (self._listener, self._renewer, *self._tasks):
            if task is not None:
                try:
                    await asyncio.wait_for(task, 2)
                except (asyncio.CancelledError, asyncio.TimeoutError, Exception):
                    pass
        await _close_pubsub(self._pubsub)
        if self._redis is not None:
            try:
                await self._redis.aclose()
            except (RedisError, OSError):
                pass


async def _close_pubsub(pubsub: Any) -> None:
    if pubsub is None:
        return
    try:
        await asyncio.wait_for(pubsub.aclose(), 2)
    except Exception:
        pass
