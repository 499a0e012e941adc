"""The steps many tests share, over the HTTP API only (so they work against an in-process app, a real
`bastion serve` subprocess or a benchmark's server): create a category, a credential and hosts; grant them;
open a terminal; wait for a session to end; read a recording."""
from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Callable, Generator, Tuple

from client import Client, TerminalClient
from waiting import wait_until


Step = Tuple[str, str, Any]  # (method, path, JSON body) of one API call
Steps = Generator[Step, Any, Any]  # yields calls, receives each call's JSON answer, returns a result


def inventory_steps(*, address: str = "127.0.0.1", port: int = 22, username: str = "root", password: str | None = None,
                    private_key: str | None = None, name: str = "web1", endpoints: list[tuple[str, int]] | None = None,
                    grant_to: str | None = None, grant_whole_category: bool = False,
                    category: str | None = None) -> Steps:
    """Create a category, a credential and one host (or one host per endpoint, named `<name><i>`); optionally grant
    the host (or the category) to a user id ("me": the caller).

    Written once as API steps so the async test client (`seed_inventory`) and the benchmarks' blocking client
    (`run_steps_sync`) share it. Returns app_id, credential_id, host_id (the first host) and host_ids.
    """
    cat = yield ("POST", "/api/apps", {"name": category or f"cat-{name}"})
    cred_body: dict[str, Any] = {"name": f"cred-{name}", "username": username}
    if private_key:
        cred_body["private_key"] = private_key
    else:
        cred_body["password"] = password or "secret-password"
    cred = yield ("POST", "/api/credentials", cred_body)
    targets = [(name, address, port)] if endpoints is None else [(f"{name}{i}", a, p) for i, (a, p) in enumerate(endpoints)]
    host_ids = []
    for host_name, host_address, host_port in targets:
        host = yield ("POST", "/api/hosts", {"name": host_name, "address": host_address, "port": host_port,
                                             "app_id": cat["id"], "credential_id": cred["id"]})
        host_ids.append(host["id"])
    ids = {"app_id": cat["id"], "credential_id": cred["id"], "host_id": host_ids[0], "host_ids": host_ids}
    if grant_to is not None:
        uid = (yield ("GET", "/api/me", None))["user"]["id"] if grant_to == "me" else grant_to
        target = {"app_id": cat["id"]} if grant_whole_category else {"host_id": host_ids[0]}
        ids["grant_id"] = (yield ("POST", "/api/grants", {"user_id": uid, **target}))["id"]
    return ids


async def run_steps(client: Client, steps: Steps) -> Any:
    """Drive API steps with the async test client; every call must succeed."""
    answer = None
    try:
        while True:
            method, path, body = steps.send(answer)
            resp = await client.request(method, path, body)
            assert resp.status == (200 if method == "GET" else 201), (method, path, resp)  # the steps read or create
            answer = resp.json
    except StopIteration as done:
        return done.value


def run_steps_sync(call: Callable[[str, str, Any], Any], steps: Steps) -> Any:
    """Drive API steps with a blocking `call(method, path, body) -> JSON answer` (raising on failure)."""
    answer = None
    try:
        while True:
            answer = call(*steps.send(answer))
    except StopIteration as done:
        return done.value


async def seed_inventory(admin: Client, **kw: Any) -> dict[str, Any]:
    """Create a category, a credential and hosts through the API (see `inventory_steps`)."""
    return await run_steps(admin, inventory_steps(**kw))


def sshd_steps(sshd: Any, name: str = "web1", *, username: str | None = None, all_endpoints: bool = False,
               **kw: Any) -> Steps:
    """`inventory_steps` for a tests/sshd.py server, logging in with its client key (as `username` if given)."""
    return inventory_steps(address=sshd.address, port=sshd.port, username=username or sshd.username,
                           private_key=sshd.client_key, name=name,
                           endpoints=list(sshd.endpoints) if all_endpoints else None, **kw)


async def seed_sshd(admin: Client, sshd: Any, name: str = "web1", **kw: Any) -> dict[str, Any]:
    """Hosts on a tests/sshd.py server (see `sshd_steps`)."""
    return await run_steps(admin, sshd_steps(sshd, name, **kw))


async def user_id(admin: Client, username: str) -> str:
    """A user's id, looked up through the admin API."""
    users = (await admin.get("/api/users", params={"limit": 500})).json["items"]
    return next(u["id"] for u in users if u["username"] == username)


async def grant(admin: Client, uid: str, *, host_id: str | None = None, app_id: str | None = None) -> str:
    """Grant a host or a whole category to a user; return the grant id."""
    body = {"user_id": uid, **({"host_id": host_id} if host_id else {"app_id": app_id})}
    resp = await admin.post("/api/grants", body)
    assert resp.status == 201, resp
    return resp.json["id"]


async def open_terminal(client: Client, host_id: str, **size: int) -> TerminalClient:
    """Open a terminal to a host and wait for its `session` frame."""
    term = await TerminalClient.open(client, f"/ws/terminal/{host_id}", **size)
    await term.control("session")
    return term


async def wait_ended_api(client: Client, session_id: str, timeout: float = 15) -> dict[str, Any]:
    """Poll the API until a session is no longer live; return its document."""
    async def ended() -> dict[str, Any] | None:
        doc = (await client.get(f"/api/sessions/{session_id}")).json
        return doc if doc and not doc["live"] else None
    return await wait_until(ended, timeout, what=f"session {session_id} ending")


def read_cast(path: str | Path) -> tuple[dict, list[list]]:
    """Parse an asciicast v2 file: header and events (raises on malformed lines)."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")  # JSON lines end at \n only (U+2028 may be in one)
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["width"] > 0 and header["height"] > 0
    events = [json.loads(line) for line in lines[1:] if line.strip()]
    for e in events:
        assert isinstance(e[0], (int, float)) and e[1] in ("o", "i", "r", "m") and isinstance(e[2], str)
    return header, events


def cast_output(events: list[list]) -> bytes:
    """The output bytes of a recording's events."""
    return "".join(e[2] for e in events if e[1] == "o").encode("utf-8")


class StalledPool:
    """Every thread of a pool busy until the block ends, as on a stalled disk (the recordings and the journal are
    written in the I/O pool). Entered only once all of them are held, so what follows is sure to wait."""

    def __init__(self, pool: Executor, threads: int) -> None:
        self.pool, self.threads = pool, threads
        self._release = threading.Event()
        self._held: list[asyncio.Future] = []

    async def __aenter__(self) -> "StalledPool":
        started = [threading.Event() for _ in range(self.threads)]

        def hold(mine: threading.Event) -> None:
            mine.set()
            self._release.wait(120)
        loop = asyncio.get_running_loop()
        self._held = [loop.run_in_executor(self.pool, hold, mine) for mine in started]
        await wait_until(lambda: all(e.is_set() for e in started), 30, what="every thread of the pool held")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        await asyncio.gather(*self._held)
