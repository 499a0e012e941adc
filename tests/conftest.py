"""Fixtures: the real app built through the factory on a free port, a real nx-27017 MongoDB-wire server,
a real OpenSSH sshd on 127.0.0.1 with its own keys, and headless Chromium."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
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
from client import Client  # noqa: E402

ADMIN_PASSWORD = "admin-password-1"
VENV_BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen) -> None:
    """End a process we started, by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ---- MongoDB wire server -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mongo_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MongoDB when BASTION_TEST_MONGODB_URI is set, else nx-27017 on a free port."""
    real = os.environ.get("BASTION_TEST_MONGODB_URI")
    if real:
        yield real.rstrip("/")
        return
    data = tmp_path_factory.mktemp("nx27017")
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "nx-27017"), "--data-dir", str(data), "--host", "127.0.0.1", "--port", str(port),
                             "--log-file", str(data / "nx.log"), "--pid-file", str(data / "nx.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", port, proc=proc)
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
def make_config(tmp_path: Path, **overrides: Any) -> Config:
    values = {
        "server_host": "127.0.0.1",
        "server_port": "0",
        "server_data_dir": str(tmp_path / "var"),
        "server_node_id": "test-node",
        "database_url": f"sqlite:///{tmp_path / 'var' / 'bastion.db'}",
        "terminal_records_dir": str(tmp_path / "records"),
        "terminal_connect_timeout": "5",
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
        self.server.stop()
        await self.stack.aclose()
        await self.server.close_all_connections()


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


async def seed_inventory(app: BastionApp, admin: Client, *, address: str = "127.0.0.1", port: int = 22,
                         username: str = "root", password: str | None = None, private_key: str | None = None,
                         name: str = "web1") -> dict[str, Any]:
    """Create a category, a credential and a host through the API; return their ids."""
    cat = await admin.post("/api/apps", {"name": f"cat-{name}"})
    assert cat.status == 201, cat
    cred_body: dict[str, Any] = {"name": f"cred-{name}", "username": username}
    if private_key:
        cred_body["private_key"] = private_key
    else:
        cred_body["password"] = password or "secret-password"
    cred = await admin.post("/api/credentials", cred_body)
    assert cred.status == 201, cred
    host = await admin.post("/api/hosts", {"name": name, "address": address, "port": port,
                                           "app_id": cat.json["id"], "credential_id": cred.json["id"]})
    assert host.status == 201, host
    return {"app_id": cat.json["id"], "credential_id": cred.json["id"], "host_id": host.json["id"]}


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
