"""Fixtures: the real app built through the factory on a free port, a real nx-27017 MongoDB-wire server,
a real OpenSSH sshd on 127.0.0.1 with its own keys, and headless Chromium."""
from __future__ import annotations

import asyncio
import os
import shutil
import time
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
import tornado.netutil
from tornado.httpserver import HTTPServer

from contextlib import AsyncExitStack

from bastion.app import make_app, open_bastion
from bastion.config import Config, load_config, with_secret
from bastion.services import Services

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenario  # noqa: E402
from client import Client  # noqa: E402
from procs import VENV_BIN, free_port, start_nx, stop_process, wait_port, wait_ready  # noqa: E402,F401
from waiting import wait_until  # noqa: E402

ADMIN_PASSWORD = "admin-password-1"
SHUTDOWN_BOUND = 90.0  # seconds a test bastion may take to shut down (see BastionApp.stop)


# ---- MongoDB wire server -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mongo_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MongoDB when BASTION_TEST_MONGODB_URI is set, else nx-27017 on a free port."""
    real = os.environ.get("BASTION_TEST_MONGODB_URI")
    if real:
        yield real.rstrip("/")
        return
    port = free_port()
    proc = start_nx(tmp_path_factory.mktemp("nx27017"), port)
    try:
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def mongo_db_url(base: str) -> str:
    name = "bt_" + uuid.uuid4().hex[:10]
    if "?" in base:
        head, _, query = base.partition("?")
        return f"{head.rstrip('/')}/{name}?{query}"
    return f"{base}/{name}"


# ---- the app ----------------------------------------------------------------------------------------
# Bastion processes the tests start (they inherit this environment) end a session as soon as its socket closes;
# the reconnect tests set a grace of their own.
os.environ.setdefault("BASTION_TERMINAL_RECONNECT_GRACE", "0")


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    values = {
        "server_host": "127.0.0.1",
        "server_port": "0",
        "server_data_dir": str(tmp_path / "var"),
        "server_node_id": "test-node",
        "database_url": f"sqlite:///{tmp_path / 'var' / 'bastion.db'}",
        "terminal_records_dir": str(tmp_path / "records"),
        "terminal_connect_timeout": "5",
        "terminal_reconnect_grace": "0",  # a closed socket ends its session at once (reconnect tests set a grace)
        "modules_dir": str(tmp_path / "modules"),
        "modules_poll_interval": "0.2",
    }
    values.update({k: str(v) if not isinstance(v, str) else v for k, v in overrides.items()})
    return with_secret(load_config(None, env={}, overrides=values))


@dataclass
class BastionApp:
    """A running bastion: base URL, its services (for direct store checks), an admin client."""

    config: Config
    services: Services
    server: HTTPServer
    port: int
    stack: AsyncExitStack

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Client:
        return Client(self.base_url)

    async def admin(self) -> Client:
        c = self.client()
        await c.login("admin", ADMIN_PASSWORD)
        return c

    async def user(self, username: str, password: str = "user-password-1", roles: list[str] | None = None) -> Client:
        """Create a user (if needed) and return a logged-in client."""
        if await self.services.store.get_user_by_name(username) is None:
            await self.services.auth.create_user(username, password, roles or ["user"], actor="test")
        c = self.client()
        await c.login(username, password)
        return c

    async def settle(self, timeout: float = 15.0) -> None:
        """Wait until ending sessions have ended and the journal has reached the store (commands, events)."""
        deadline = time.monotonic() + timeout
        while any(s.closing for s in self.services.hub.live()):
            if time.monotonic() > deadline:
                raise AssertionError("sessions did not finish closing")
            await asyncio.sleep(0.02)
        assert await self.services.journal.drained(max(0.1, deadline - time.monotonic())), "journal did not drain"

    async def stop(self) -> None:
        """Shut down as the composition root does; a shutdown that does not end fails here, in words."""
        self.server.stop()
        # Generous bounds (the product bounds each step itself: jobs 5 s, session closes 15 s, journal 5 s, runs 10 s):
        # they only turn a regression into a clear teardown error instead of a pytest timeout after 300 s.
        try:
            await asyncio.wait_for(self.stack.aclose(), SHUTDOWN_BOUND)
        except asyncio.TimeoutError:
            raise AssertionError(f"the bastion did not shut down within {SHUTDOWN_BOUND:g} s") from None
        try:
            await asyncio.wait_for(self.server.close_all_connections(), 10)
        except asyncio.TimeoutError:
            raise AssertionError("HTTP connections did not close within 10 s of shutdown") from None


async def start_bastion(config: Config) -> BastionApp:
    """The real app through the same composition root as `bastion serve` (background jobs included)."""
    stack = AsyncExitStack()
    services = await stack.enter_async_context(open_bastion(config))
    try:
        if await services.store.get_user_by_name("admin") is None:
            await services.auth.create_user("admin", ADMIN_PASSWORD, ["admin"], actor="test")
        app = make_app(config, services)
        server = HTTPServer(app, max_body_size=1024 * 1024)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
    except BaseException:
        await stack.aclose()
        raise
    return BastionApp(config, services, server, sockets[0].getsockname()[1], stack)


@pytest.fixture
async def bastion(tmp_path: Path) -> AsyncIterator[BastionApp]:
    app = await start_bastion(make_config(tmp_path))
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def make_bastion(tmp_path: Path) -> AsyncIterator[Any]:
    """Factory for a bastion with config overrides; stopped at teardown."""
    started: list[BastionApp] = []

    async def factory(**overrides: Any) -> BastionApp:
        app = await start_bastion(make_config(tmp_path, **overrides))
        started.append(app)
        return app

    try:
        yield factory
    finally:
        for app in started:
            await app.stop()


async def seed_inventory(app: BastionApp, admin: Client, **kw: Any) -> dict[str, Any]:
    """Create a category, a credential and a host through the API; return their ids (see scenario.py)."""
    return await scenario.seed_inventory(admin, **kw)


# ---- Chromium ----------------------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed at /usr/bin/chromium (make test installs it)")
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def pages(browser: Any, tmp_path: Path) -> AsyncIterator[Any]:
    """Guarded browser contexts (tests/browser.py): the test fails on any console error, CSP violation or
    failed request seen in them."""
    from browser import Pages
    opened = Pages(browser, tmp_path)
    try:
        yield opened
    finally:
        await opened.close()
    opened.guard.check()


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None or Path(cmd).exists()


# ---- OpenSSH sshd ------------------------------------------------------------------------------------
from sshd import SSHServer, make_sshd  # noqa: E402


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """One real sshd for the session on 127.0.0.1 (tests that break sshd start their own)."""
    server = make_sshd(tmp_path_factory.mktemp("sshd")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_sshd(tmp_path: Path) -> Iterator[SSHServer]:
    """A private sshd a test may kill or re-key."""
    server = make_sshd(tmp_path / "sshd").start()
    try:
        yield server
    finally:
        server.stop()


# ---- shared scenario steps for the in-process app ----------------------------------------------------
async def granted_host(app: BastionApp, sshd: SSHServer, username: str = "alice", name: str = "web1",
                       roles: list[str] | None = None) -> tuple[Client, Client, dict[str, Any]]:
    """A host on `sshd` granted to `username` (created if needed): (admin client, user client, ids)."""
    admin = await app.admin()
    ids = await scenario.seed_sshd(admin, sshd, name)
    user = await app.user(username, roles=roles)
    uid = (await app.services.store.get_user_by_name(username)).id
    await scenario.grant(admin, uid, host_id=ids["host_id"])
    return admin, user, ids


async def wait_ended(app: BastionApp, session_id: str, timeout: float = 10) -> Any:
    """Poll the store until a session is no longer live; return its record."""
    async def ended() -> Any:
        record = await app.services.store.get_session(session_id)
        return record if record and not record.live else None
    return await wait_until(ended, timeout, what=f"session {session_id} ending")
