"""The Kubernetes pod connector: an interactive shell through the exec WebSocket (implements Upstream).

Subprotocol `v5.channel.k8s.io`, falling back to `v4.channel.k8s.io`; every binary frame starts with its channel
(0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize; v5 adds 255 CLOSE). The shell is probed: bash, then sh. When
the stream ends, the status channel's `Status` gives the exit code; without one (or when the pod went away) the
pod is looked up to tell a deleted pod or a lost cluster from an exit.

Backpressure: Tornado's WebSocket client reads the next frame only when we ask for it, so pausing is simply not
asking; the pod's output then waits in TCP buffers and the API server.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, WebSocketError, websocket_connect

from ..errors import BastionError, NotFound
from ..sessions.doors import UpstreamEvents
from .api import UNREACHABLE, ClusterAccess, KubeClient, connection_failure, http_failure, status_message

log = logging.getLogger(__name__)
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
SHELLS = (["bash"], ["sh"])
PROBE_WAIT = 3.0  # seconds to wait for a shell's first output before taking it as started
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class PodTarget:
    """One container of one pod."""

    namespace: str
    pod: str
    container: str


def _swallow(fut: "asyncio.Future[Any]") -> None:
    if not fut.cancelled():
        fut.exception()


def parse_status(payload: bytes) -> dict[str, Any]:
    """The Status object of the status channel ({} when unreadable)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def exit_code(status: dict[str, Any]) -> int | None:
    """The exit code a Status reports (0 for Success, None when it does not say)."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message", ""))
                except ValueError:
                    return None
    return None


def not_found_executable(status: dict[str, Any]) -> bool:
    """Whether a failed exec Status says the command does not exist in the container."""
    text = str(status.get("message", ""))
    return exit_code(status) in (126, 127) or "executable file not found" in text or "no such file or directory" in text.lower()


def _close_late(fut: "asyncio.Future[WebSocketClientConnection]") -> None:
    """A connection that completed after we stopped waiting for it: close it (nobody will read it)."""
    if not fut.cancelled() and fut.exception() is None:
        fut.result().close()


async def connect(access: ClusterAccess, target: PodTarget, command: list[str],
                  timeout: float = CONNECT_TIMEOUT) -> WebSocketClientConnection:
    """Open the exec WebSocket (v5, else v4) within `timeout` seconds or raise a BastionError naming the cause."""
    query = [("command", c) for c in command] + [("container", target.container), ("stdin", "true"),
                                                   ("stdout", "true"), ("stderr", "false"), ("tty", "true")]
    path = (f"/api/v1/namespaces/{quote(target.namespace, safe='')}/pods/{quote(target.pod, safe='')}/exec?"
            + urlencode(query))
    url = access.api_url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1) + path
    # no redirects: Tornado's WebSocket client cannot follow one (it would never answer), and a cluster that
    # redirects exec is misconfigured anyway
    request = HTTPRequest(url, headers={"Authorization": f"Bearer {access.token}"}, ssl_options=access.ssl_context(),
                          connect_timeout=timeout, request_timeout=timeout, follow_redirects=False)
    pending = websocket_connect(request, subprotocols=[V5, V4], ping_interval=20)
    too_slow = BastionError(f"{access.name}: the cluster API at {access.api_url} did not open the terminal within "
                            f"{timeout:g} seconds", code=UNREACHABLE)
    try:
        # Tornado's own timeouts stop at the response headers; this bounds the whole handshake whatever the
        # cluster (or a proxy) does, and a connection that completes after we gave up is closed, not leaked
        conn = await asyncio.wait_for(asyncio.shield(pending), timeout + 1)
    except HTTPClientError as exc:
        body = exc.response.body if exc.response is not None and exc.response.body else b""
        if isinstance(exc, HTTPTimeoutError):
            raise too_slow from None
        if exc.code == 599:
            raise connection_failure(access, exc) from None
        message = status_message(body)
        if exc.code == 400 and "upgrade" in message.lower():
            raise BastionError(f"{access.name}: the cluster (or a proxy in front of it) refused WebSocket exec: "
                               f"{message}; Bastion needs WebSocket exec (v5/v4.channel.k8s.io) to reach pods") from None
        if exc.code == 400 and message:
            raise BastionError(f"{access.name}: the cluster refused the terminal: {message}") from None
        raise http_failure(access, exc.code, body, f"exec into pods in {target.namespace}") from None
    except WebSocketError:
        raise BastionError(f"{access.name}: the cluster (or a proxy in front of it) does not accept WebSocket exec; "
                           "Bastion needs WebSocket exec (v5/v4.channel.k8s.io) to reach pods") from None
    except (TimeoutError, asyncio.TimeoutError):
        pending.add_done_callback(_close_late)
        raise too_slow from None
    except OSError as exc:
        raise connection_failure(access, exc) from None
    except BaseException:  # cancelled (the session ended while opening): never leave the connection behind
        pending.add_done_callback(_close_late)
        raise
    if conn.selected_subprotocol not in (V5, V4):
        conn.close()
        raise BastionError(f"{access.name}: the cluster did not agree on an exec protocol "
                           "(it must speak v5.channel.k8s.io or v4.channel.k8s.io)")
    return conn


class K8sUpstream:
    """An interactive shell in a pod's container (implements Upstream)."""

    def __init__(self, access: ClusterAccess, target: PodTarget, conn: WebSocketClientConnection, shell: str,
                 events: UpstreamEvents) -> None:
        self.access = access
        self.target = target
        self.shell = shell
        self.protocol = conn.selected_subprotocol or ""
        self._conn = conn
        self._events = events
        self._reading = asyncio.Event()
        self._reading.set()
        self._status: dict[str, Any] | None = None
        self._task: asyncio.Task | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"[pod {self.access.name}/{self.target.namespace}/{self.target.pod}/{self.target.container} {self.protocol}]"

    @classmethod
    async def open(cls, access: ClusterAccess, target: PodTarget, events: UpstreamEvents, *, cols: int,
                   rows: int, connect_timeout: float = CONNECT_TIMEOUT) -> "K8sUpstream":
        """Probe bash then sh; return the connected shell or raise a BastionError saying why there is none.

        Bounded: each exec connection gets `connect_timeout`, each probe PROBE_WAIT, and the whole open at most
        both for every shell tried, whatever the cluster does (accepts and stalls, answers half, never closes)."""
        opened: list[WebSocketClientConnection] = []
        limit = len(SHELLS) * (connect_timeout + 1 + PROBE_WAIT) + 1
        try:
            return await asyncio.wait_for(cls._probe(access, target, events, cols, rows, connect_timeout, opened), limit)
        except (TimeoutError, asyncio.TimeoutError):
            raise BastionError(f"{access.name}: the pod's terminal did not open within {limit:.0f} seconds "
                               "(the cluster accepted the exec but did not answer)", code=UNREACHABLE) from None
        except BaseException:
            for conn in opened:
                conn.close()
            raise

    @classmethod
    async def _probe(cls, access: ClusterAccess, target: PodTarget, events: UpstreamEvents, cols: int, rows: int,
                     connect_timeout: float, opened: list[WebSocketClientConnection]) -> "K8sUpstream":
        tried: list[str] = []
        for command in SHELLS:
            conn = await connect(access, target, command, connect_timeout)
            opened.append(conn)
            _send(conn, RESIZE, json.dumps({"Width": cols, "Height": rows}).encode())
            try:
                first = await asyncio.wait_for(conn.read_message(), PROBE_WAIT)
            except (TimeoutError, asyncio.TimeoutError):
                first = b""  # a quiet shell: started, nothing to show yet
            if isinstance(first, bytes) and first[:1] == bytes([STATUS]):
                status = parse_status(first[1:])
                conn.close()
                if not_found_executable(status):
                    tried.append(command[0])
                    continue
                raise BastionError(f"{access.name}: the shell could not start: {str(status.get('message', 'unknown error'))[:300]}")
            if first is None:
                raise BastionError(f"{access.name}: the cluster closed the terminal as it opened")
            upstream = cls(access, target, conn, command[0], events)
            opened.clear()  # the upstream owns the connection now
            upstream._task = asyncio.get_running_loop().create_task(upstream._read(first))
            return upstream
        raise BastionError(f"the container {target.container} has no shell (tried {' and '.join(tried)})")

    async def _read(self, first: bytes | str) -> None:
        try:
            message: bytes | str | None = first
            while message is not None:
                if isinstance(message, bytes) and len(message) > 1:
                    channel = message[0]
                    if channel in (STDOUT, STDERR):
                        self._events.on_output(message[1:])
                    elif channel == STATUS:
                        self._status = parse_status(message[1:])
                if not self._reading.is_set():
                    await self._reading.wait()
                message = await self._conn.read_message()
        except Exception:
            log.exception("reading the pod's exec stream failed %r", self)
        if self.closed:
            return
        self.closed = True
        reason, note = await self._why_ended()
        self._events.on_upstream_closed(reason, note)

    async def _why_ended(self) -> tuple[str, str]:
        """`exit` with the shell's exit status, or `host_lost` with what happened to the pod or the cluster."""
        code = exit_code(self._status) if self._status is not None else None
        if code == 0:
            return "exit", "exit status 0"
        try:
            pod = await KubeClient(self.access).get_pod(self.target.namespace, self.target.pod)
        except NotFound:
            return "host_lost", "the pod was deleted"
        except BastionError as exc:
            return "host_lost", f"the connection to the cluster was lost ({exc.message})"
        if pod.deleting:
            return "host_lost", "the pod was deleted"
        if code is not None:
            return "exit", f"exit status {code}"
        if self._status:
            return "host_lost", str(self._status.get("message", "the exec stream failed"))[:300]
        return "host_lost", "the exec stream closed without an exit status"

    # ---- Upstream ------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.closed:
            _send(self._conn, STDIN, data)

    def resize(self, cols: int, rows: int) -> None:
        if not self.closed:
            _send(self._conn, RESIZE, json.dumps({"Width": cols, "Height": rows}).encode())

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def limit_buffer(self, size: int) -> None:
        """Nothing to shrink: the exec stream is read one message at a time, so the socket holds the rest."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._reading.set()
        self._conn.close(1000)


def _send(conn: WebSocketClientConnection, channel: int, data: bytes) -> None:
    try:
        conn.write_message(bytes([channel]) + data, binary=True).add_done_callback(_swallow)
    except WebSocketClosedError:
        pass
