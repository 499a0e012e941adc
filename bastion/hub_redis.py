"""Redis hub backend: the in-memory hub plus Redis pub/sub between nodes (`[hub] url = redis://…`).

The node that owns a session keeps running it exactly as on one node. Another node that wants to watch it
sends a `watch` request on the owner's node channel; the owner attaches a relay monitor (the same bounded,
budgeted Monitor a local watcher gets) whose sink publishes the screen snapshot, output and control frames
on a channel private to that watcher. Kicks and snapshot requests go the same way and are answered on the
asking node's reply channel, with a timeout and a clear error when the owner is gone. Nothing here stores
state: sessions, logins and replay guards live in the shared MongoDB store.

Wire format on Redis: watcher channels carry b"o" + output bytes or b"c" + a JSON control frame; node
channels carry JSON requests {"op", "id", "from", ...}; replies are JSON {"id", "ok", "error"?}.
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .config import Config, redact_url
from .errors import Conflict, NotFound, Unavailable
from .hub import Monitor, SessionHub, Sink
from .protocol import control

if TYPE_CHECKING:
    from .store import Session

log = logging.getLogger(__name__)
REQUEST_TIMEOUT = 2.0


def node_channel(node: str) -> str:
    return f"bastion:node:{node}"


def reply_channel(node: str) -> str:
    return f"bastion:reply:{node}"


class _RelaySink:
    """Owner side: what a relay monitor writes goes to one remote watcher's channel."""

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
            asyncio.ensure_future(self.hub.publish(self.channel, b"c" + text.encode())).add_done_callback(_swallow)

    def close_socket(self) -> None:
        self.closed = True


def _swallow(fut: "asyncio.Future[Any]") -> None:
    if not fut.cancelled():
        fut.exception()


class RemoteWatch:
    """Watcher side: one local monitor socket fed from an owner node through Redis."""

    def __init__(self, hub: "RedisHub", session_id: str, owner: str, sink: Sink, username: str) -> None:
        self.hub = hub
        self.session_id = session_id
        self.owner = owner
        self.sink = sink
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
            fut = self.sink.send_output(body)
            if fut is not None:
                fut.add_done_callback(_swallow)
        elif kind == b"c":
            text = body.decode("utf-8", "replace")
            self.sink.send_control(text)
            try:
                if json.loads(text).get("type") == "closed":
                    self.closed = True
                    self.sink.close_socket()
            except ValueError:
                pass


class RedisHub(SessionHub):
    """SessionHub shared between nodes through Redis pub/sub."""

    backend = "redis"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.url = config.hub.url
        self.node = config.node_id
        self._redis: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._listener: asyncio.Task | None = None
        self._routes: dict[str, Callable[[bytes], None]] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self._relays: dict[str, Monitor] = {}
        self._watches: dict[str, RemoteWatch] = {}
        self.connected = False
        self.published = 0

    # ---- connection ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._redis = aioredis.from_url(self.url, socket_connect_timeout=3, socket_timeout=None,
                                        health_check_interval=10)
        try:
            await self._redis.ping()
        except (RedisError, OSError):
            raise Unavailable(f"hub {redact_url(self.url)} cannot be reached") from None
        await self._subscribe_all()
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _subscribe_all(self) -> None:
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(node_channel(self.node), reply_channel(self.node), *self._routes)
        self.connected = True

    async def publish(self, channel: str, payload: bytes | str) -> int:
        """Publish; returns how many subscribers received it."""
        if self._redis is None:
            raise Unavailable("hub is not connected")
        receivers = await self._redis.publish(channel, payload)
        self.published += 1
        return receivers

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    backoff = 0.2
                    channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
                    data = message["data"] if isinstance(message["data"], bytes) else str(message["data"]).encode()
                    try:
                        self._dispatch(channel, data)
                    except Exception:
                        log.exception("hub message on %s failed", channel)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.connected = False
                log.warning("hub connection lost (%s); reconnecting", type(exc).__name__)
                self._tell_watchers("the connection between bastion nodes was lost; reconnecting…")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                try:
                    await self._subscribe_all()
                    log.info("hub reconnected")
                    await self._rewatch()
                except (RedisError, OSError):
                    continue

    def _tell_watchers(self, message: str) -> None:
        for watch in list(self._watches.values()):
            watch.sink.send_control(control("notice", message=message))

    async def _rewatch(self) -> None:
        """After a reconnect, ask each owner again (the watcher gets a fresh screen)."""
        for watch in list(self._watches.values()):
            try:
                await self._request(watch.owner, {"op": "watch", "session": watch.session_id, "channel": watch.channel,
                                                  "user": watch.username})
                watch.sink.send_control(control("notice", message="reconnected to the session's node"))
            except Exception as exc:
                watch.sink.send_control(control("closed", reason=f"lost the session's node: {exc}", code="gone"))
                watch.sink.close_socket()
                self._watches.pop(watch.id, None)

    def _dispatch(self, channel: str, data: bytes) -> None:
        if channel == reply_channel(self.node):
            reply = json.loads(data)
            fut = self._pending.pop(reply.get("id", ""), None)
            if fut is not None and not fut.done():
                fut.set_result(reply)
        elif channel == node_channel(self.node):
            asyncio.get_running_loop().create_task(self._serve(json.loads(data)))
        elif channel in self._routes:
            self._routes[channel](data)

    # ---- requests between nodes -------------------------------------------------------------------
    async def _request(self, node: str, body: dict[str, Any]) -> dict[str, Any]:
        request_id = secrets.token_hex(8)
        fut = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            await self.publish(node_channel(node), json.dumps({**body, "id": request_id, "from": self.node}))
            reply = await asyncio.wait_for(fut, REQUEST_TIMEOUT)
        except (asyncio.TimeoutError, RedisError, OSError):
            raise Unavailable(f"node {node} is not answering; the session may be gone") from None
        finally:
            self._pending.pop(request_id, None)
        if not reply.get("ok"):
            raise Conflict(str(reply.get("error", "refused by the owner node")))
        return reply

    async def _serve(self, request: dict[str, Any]) -> None:
        op, sender = request.get("op"), request.get("from", "")
        reply: dict[str, Any] = {"id": request.get("id", ""), "ok": True}
        try:
            if op == "watch":
                relay = self.attach(str(request["session"]), _RelaySink(self, str(request["channel"])),
                                    str(request.get("user", "")))
                self._relays[str(request["channel"])] = relay
            elif op == "unwatch":
                relay = self._relays.pop(str(request.get("channel")), None)
                if relay is not None:
                    self.detach(str(request["session"]), relay)
            elif op == "kick":
                await super().kick(str(request["session"]), str(request.get("reason", "")), str(request.get("by", "")))
            else:
                reply = {"id": reply["id"], "ok": False, "error": f"unknown request {str(op)[:20]!r}"}
        except (NotFound, Conflict) as exc:
            reply = {"id": reply["id"], "ok": False, "error": exc.message}
        if sender:
            try:
                await self.publish(reply_channel(sender), json.dumps(reply))
            except (RedisError, OSError):
                log.warning("could not answer node %s", sender)

    # ---- what handlers use -------------------------------------------------------------------------
    def reachable(self, record: "Session") -> bool:
        return record.id in self.sessions or record.node != self.node

    async def watch(self, record: "Session", sink: Sink, username: str) -> Any:
        if record.id in self.sessions:
            return self.attach(record.id, sink, username)
        watch = RemoteWatch(self, record.id, record.node, sink, username)
        self._routes[watch.channel] = watch.deliver
        await self._pubsub.subscribe(watch.channel)
        try:
            await self._request(record.node, {"op": "watch", "session": record.id, "channel": watch.channel,
                                              "user": username})
        except Exception:
            self._routes.pop(watch.channel, None)
            await self._pubsub.unsubscribe(watch.channel)
            raise
        self._watches[watch.id] = watch
        return watch

    async def unwatch(self, session_id: str, watcher: Any) -> None:
        if not isinstance(watcher, RemoteWatch):
            self.detach(session_id, watcher)
            return
        watcher.closed = True
        self._watches.pop(watcher.id, None)
        self._routes.pop(watcher.channel, None)
        try:
            await self._pubsub.unsubscribe(watcher.channel)
            await self._request(watcher.owner, {"op": "unwatch", "session": session_id, "channel": watcher.channel})
        except Exception:
            pass  # the owner drops relays whose channel has no listener when it next writes

    async def end(self, record: "Session", reason: str, by: str) -> None:
        if record.id in self.sessions:
            await self.kick(record.id, reason, by)
            return
        self.kicks += 1
        await self._request(record.node, {"op": "kick", "session": record.id, "reason": reason, "by": by})

    async def ping(self) -> None:
        if self._redis is None:
            raise Unavailable("hub is not connected")
        try:
            await asyncio.wait_for(self._redis.ping(), 2)
        except (RedisError, OSError, asyncio.TimeoutError):
            raise Unavailable(f"hub {redact_url(self.url)} is not answering") from None

    async def close(self) -> None:
        await self.shutdown()
        if self._listener is not None:
            self._listener.cancel()
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except (RedisError, OSError):
                pass
        if self._redis is not None:
            await self._redis.aclose()
