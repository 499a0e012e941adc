"""Small clients that hide the wire protocol: HTTP with cookies + XSRF, and terminal/monitor sockets."""
from __future__ import annotations

import asyncio
import json
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect


class Response:
    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:200]!r}>"


class Client:
    """A browser-like HTTP client: keeps cookies and sends the XSRF header on state changes."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies: dict[str, str] = {}
        self.http = AsyncHTTPClient(force_instance=True)
        self.token: str | None = None
        self.send_xsrf = True

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    async def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                      headers: dict[str, str] | None = None, params: dict[str, Any] | None = None) -> Response:
        if method != "GET" and "_xsrf" not in self.cookies and self.send_xsrf and not self.token:
            await self.request("GET", "/login")
        hdrs = {"Accept": "application/json"}
        if self.cookies:
            hdrs["Cookie"] = self.cookie_header()
        if method != "GET" and self.send_xsrf and "_xsrf" in self.cookies:
            hdrs["X-XSRFToken"] = self.cookies["_xsrf"]
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        url = self.base_url + path + (("?" + urlencode(params)) if params else "")
        if data is None and method in ("POST", "PATCH", "PUT"):
            data = b""
        req = HTTPRequest(url, method=method, headers=hdrs, body=data, follow_redirects=False,
                          allow_nonstandard_methods=True, request_timeout=60)
        resp = await self.http.fetch(req, raise_error=False)
        for header in resp.headers.get_list("Set-Cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for key, morsel in jar.items():
                if morsel["expires"] and "1970" in morsel["expires"] or morsel.value == "":
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = morsel.value
        return Response(resp.code, resp.body or b"", resp.headers)

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("PATCH", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)

    async def login(self, username: str, password: str, totp: str | None = None) -> Response:
        body = {"username": username, "password": password}
        if totp:
            body["totp"] = totp
        resp = await self.post("/api/login", body)
        assert resp.status == 200, resp
        return resp

    def close(self) -> None:
        self.http.close()


class TerminalClient:
    """A terminal (or monitor) socket: collects binary output, keeps control frames."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.output = bytearray()
        self.controls: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.session_id: str | None = None
        self.first_frame: bytes | None = None  # a monitor's first frame is the screen snapshot
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, client: Client, path: str, *, origin: str | None = None, **params: Any) -> "TerminalClient":
        url = client.base_url.replace("http", "ws", 1) + path + (("?" + urlencode(params)) if params else "")
        headers = {"Cookie": client.cookie_header(), "Origin": origin or client.base_url}
        conn = await websocket_connect(HTTPRequest(url, headers=headers, request_timeout=30), max_message_size=64 * 1024 * 1024)
        term = cls(conn)
        return term

    async def _read(self) -> None:
        while True:
            msg = await self.conn.read_message()
            if msg is None:
                self.closed.set()
                self._changed.set()
                return
            if isinstance(msg, bytes):
                if self.first_frame is None:
                    self.first_frame = msg
                self.output += msg
            else:
                frame = json.loads(msg)
                if frame.get("type") == "session":
                    self.session_id = frame["id"]
                self.controls.append(frame)
            self._changed.set()

    def stop_reading(self) -> None:
        """Behave like a client that stops reading: frames pile up in TCP buffers, the server's writes stall."""
        self._reader.cancel()

    async def send(self, data: str) -> None:
        await self.conn.write_message(json.dumps({"type": "input", "data": data}))

    async def send_raw(self, message: str | bytes) -> None:
        await self.conn.write_message(message, binary=isinstance(message, bytes))

    async def resize(self, cols: int, rows: int) -> None:
        await self.conn.write_message(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    async def expect(self, needle: str | bytes, timeout: float = 15.0, start: int = 0) -> int:
        """Wait until needle appears in the output (after byte offset start); return its offset."""
        data = needle.encode() if isinstance(needle, str) else needle
        deadline = asyncio.get_running_loop().time() + timeout
        scan_from = start
        while True:
            pos = self.output.find(data, scan_from)
            if pos >= 0:
                return pos
            scan_from = max(start, len(self.output) - len(data) + 1)  # never rescan what was searched
            if self.closed.is_set():
                raise AssertionError(f"socket closed before {needle!r} appeared; controls={self.controls}; tail={bytes(self.output[-300:])!r}")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"{needle!r} did not appear within {timeout}s; tail={bytes(self.output[-300:])!r}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def control(self, type_: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for frame in self.controls:
                if frame.get("type") == type_:
                    return frame
            if self.closed.is_set():
                raise AssertionError(f"closed without a {type_!r} frame; controls={self.controls}")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {type_!r} frame within {timeout}s; controls={self.controls}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_closed(self, timeout: float = 15.0) -> None:
        await asyncio.wait_for(self.closed.wait(), timeout)

    def close(self) -> None:
        self.conn.close()
