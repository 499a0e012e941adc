"""Composition root: `make_app(config, services)` and the `serve` coroutine that owns every service."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import tornado.netutil
import tornado.web
from tornado.httpserver import HTTPServer

from .audit import Audit
from .auth import AuthService
from .commands import RuleCache
from .config import Config, with_secret
from .errors import BastionError
from .executor import Executor
from .foureyes import FourEyes
from .hostkeys import HostKeyTrust
from .hub import SessionHub
from .inventory import Inventory
from .journal import Journal
from .k8s.service import PodTerminals
from .logins import RecentLogins
from .modules import ModuleRegistry
from .runs import RunService
from .services import Core, Services, make_templates, trusted_networks
from .sessions.engine import SessionEngine
from .sessions.jobs import reap_sessions, recheck_policy, recover_interrupted
from .passkeys import PasskeyService
from .sso import SsoService
from .store import make_store
from .vault import Vault
from .limits import http_server_options, prepare_process
from .tasks import stop_tasks
from .vault import check_secret_canary

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "templates"
JOBS_STOP_TIMEOUT = 5.0  # seconds shutdown waits for the periodic jobs to end (each is cancelled again meanwhile)
STATIC_DIR = ROOT / "static"


def _format_ts(value: float) -> str:
    if not value:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def make_app(config: Config, services: Services) -> tornado.web.Application:
    """Build the Tornado application with every route; refuses routes without an access decorator."""
    from handlers import all_handlers
    from handlers.base import check_route_access
    from handlers.pages import NotFoundPage

    routes = all_handlers()
    check_route_access(routes)
    services.templates.filters["ts"] = _format_ts
    return tornado.web.Application(
        routes,
        services=services,
        cookie_secret=_cookie_secret(config),
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"samesite": "Strict", "path": "/"},
        static_path=str(STATIC_DIR),
        static_handler_args={},
        debug=config.server.debug,
        compress_response=False,
        websocket_ping_interval=25,
        websocket_ping_timeout=20,
        websocket_max_message_size=4 * 1024 * 1024,
        default_handler_class=NotFoundPage,
    )


def _cookie_secret(config: Config) -> str:
    from .vault import derive_key
    return derive_key(config.secret, b"bastion cookies v1").hex()


def make_hub(config: Config) -> SessionHub:
    """The in-memory hub for one node, or the Redis hub shared by several."""
    if config.hub.url.startswith(("redis://", "rediss://")):
        from .hub_redis import RedisHub
        return RedisHub(config)
    return SessionHub(config.node_id)


@asynccontextmanager
async def open_core(config: Config) -> AsyncIterator[Core]:
    """Open the store and journal and build the core services (what the CLI needs); close in reverse."""
    async with AsyncExitStack() as stack:
        # the pools are shut down off the loop: waiting for a last fsync must not freeze other tasks
        cpu = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bastion-cpu")
        stack.push_async_callback(asyncio.to_thread, cpu.shutdown, True, cancel_futures=True)
        io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bastion-io")
        stack.push_async_callback(asyncio.to_thread, io.shutdown, True)
        store = make_store(config)
        await store.open()
        stack.push_async_callback(store.close)
        vault = Vault(config.secret)
        await check_secret_canary(store, vault)  # a wrong server secret stops start-up with one clear line
        journal = Journal(config.data_dir / "journal", config.node_id, store, io)
        await journal.open()
        stack.push_async_callback(journal.close)
        audit = Audit(store, journal)
        yield Core(config=config, store=store, journal=journal, vault=vault, audit=audit,
                   auth=AuthService(config, store, vault, audit, cpu), inventory=Inventory(store, vault, audit),
                   trust=HostKeyTrust(store, audit), recent_logins=RecentLogins(), cpu=cpu, io=io)


@asynccontextmanager
async def open_bastion(config: Config) -> AsyncIterator[Services]:
    """Every service, built complete and started: hub, session engine, modules, executor, background jobs.

    Used by `bastion serve` and by the test fixtures alike; leaving the block ends live sessions, stops the
    jobs and closes everything in reverse order of opening.
    """
    async with AsyncExitStack() as stack:
        core = await stack.enter_async_context(open_core(config))
        hub = make_hub(config)
        await hub.start()
        stack.push_async_callback(hub.close)
        rules = RuleCache(core.store.list_rules)
        engine = SessionEngine(config, core.store, core.audit, core.journal, hub, core.inventory, core.trust, rules, core.io)
        stack.push_async_callback(engine.shutdown)
        await recover_interrupted(config, core.store, core.audit, hub, core.cpu)
        registry = ModuleRegistry(Path(config.modules.dir), core.store, config.modules.poll_interval)
        await registry.refresh()
        registry.start()
        stack.push_async_callback(registry.stop)
        executor = Executor(core.store, core.inventory, core.audit, core.trust, max_runs=config.modules.max_runs,
                            output_cap=config.modules.output_cap, host_concurrency=config.modules.host_concurrency)
        stack.push_async_callback(executor.shutdown)
        runs = RunService(config, core.store, core.vault, core.audit, core.inventory, registry, executor, hub)
        sso = SsoService(config, core.store, core.audit, core.auth, hub)
        foureyes = FourEyes(config, core.store, core.audit, hub, engine)
        runs.reviews = foureyes.reviews  # module parameters matching a review rule wait for an approver
        stack.callback(sso.close)
        await sso.start()
        services = Services(**vars(core), templates=make_templates(str(TEMPLATE_DIR)), hub=hub, rules=rules, sessions=engine,
                            registry=registry, executor=executor, runs=runs, trusted_proxies=trusted_networks(config),
                            pods=PodTerminals(core.store, core.vault, core.audit, engine),
                            sso=sso, passkeys=PasskeyService(config, core.store, core.audit, core.auth),
                            foureyes=foureyes)
        if config.gateway.listen:
            from .gateway import SSHGateway
            gateway = SSHGateway(services)
            await gateway.start()
            stack.push_async_callback(gateway.stop)
            services = dataclasses.replace(services, gateway=gateway)
        jobs = BackgroundJobs(services)
        jobs.start()
        stack.push_async_callback(jobs.stop)
        yield services


async def serve(config: Config, *, on_ready: Callable[[int], Awaitable[None] | None] | None = None,
                stop: asyncio.Event | None = None) -> int:
    """Run the bastion until SIGTERM/SIGINT (or `stop`); returns a process exit code."""
    try:
        config = with_secret(config)
    except BastionError as exc:
        print(f"bastion: {exc.message}", file=sys.stderr)
        return 2
    try:  # bind first: a port in use is one line and exit code 2, before anything is created
        sockets = tornado.netutil.bind_sockets(config.server.port, config.server.host)
    except OSError as exc:
        print(f"bastion: cannot listen on {config.server.host}:{config.server.port}: "
              f"{exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        async with open_bastion(config) as services:
            password = await services.auth.ensure_first_admin()
            app = make_app(config, services)
            server = HTTPServer(app, **http_server_options(config))
            server.add_sockets(sockets)
            port = sockets[0].getsockname()[1]
            if password:
                # Printed once on the console and nowhere else (not logged, not stored).
                print(f"\n  First start: created user 'admin' with password: {password}\n"
                      "  Log in and change it on the Account page.\n", flush=True)
            print(f"Bastion listening on http://{config.server.host}:{port} (database {services.store.url_for_display}, "
                  f"node {config.node_id})", flush=True)
            if services.gateway is not None:
                print(f"SSH gateway listening on {services.gateway.address}:{services.gateway.port} "
                      f"(host key {services.gateway.fingerprint})", flush=True)
            if on_ready is not None:
                result = on_ready(port)
                if asyncio.iscoroutine(result):
                    await result
            await stop.wait()
            log.info("shutting down")
            server.stop()
            # live sessions end first (their sockets get a `closed` frame), then the remaining connections close,
            # while the hub and the store are still there for what closing them does (unwatch, audit)
            await services.sessions.shutdown()
            try:
                await asyncio.wait_for(server.close_all_connections(), 10)
            except asyncio.TimeoutError:
                log.warning("some connections did not close within 10 s")
    except BastionError as exc:
        print(f"bastion: {exc.message}", file=sys.stderr)
        return 2
    finally:
        for sock in sockets:
            sock.close()
    return 0


class BackgroundJobs:
    """Periodic jobs, each kept by reference, each iteration isolated with log.exception; awaited at stop."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        s = self.services
        loop = asyncio.get_running_loop()
        jobs: list[Awaitable[None]] = [self._purge_logins(), self._heartbeat(), self._reap_dead_nodes(),
                                       reap_sessions(s.config, s.hub), recheck_policy(s.config, s.sessions),
                                       s.foureyes.run()]
        if s.config.terminal.retention_days:
            jobs.append(self._retention())
        if s.sso is not None and s.sso.providers.ldap:
            jobs.append(self._recheck_directory())
        self._tasks = [loop.create_task(job) for job in jobs]  # type: ignore[arg-type]

    async def stop(self) -> None:
        # bounded: a job whose cancellation was lost inside a store call would otherwise keep shutdown waiting forever
        await stop_tasks(self._tasks, JOBS_STOP_TIMEOUT, "background jobs")
        self._tasks.clear()

    async def _purge_logins(self) -> None:
        store = self.services.store
        while True:
            await asyncio.sleep(600)
            try:
                await store.purge_expired_logins()
                # envelope ids past their freshness window can no longer be replayed (they are refused as stale)
                await store.forget_envelopes(time.time())
                await store.purge_expired_locks()
                await store.purge_expired_sso_states()
                await store.purge_expired_passkey_challenges()
            except Exception:
                log.exception("purging expired logins, envelope ids and locks failed")

    async def _heartbeat(self) -> None:
        s = self.services
        while True:
            try:
                await s.store.heartbeat(s.config.node_id)
            except Exception:
                log.exception("node heartbeat failed")
            await asyncio.sleep(s.config.hub.heartbeat_interval)

    async def _reap_dead_nodes(self) -> None:
        """Another node that stopped heartbeating leaves ghosts: mark its live sessions interrupted, once."""
        s = self.services
        while True:
            await asyncio.sleep(s.config.hub.heartbeat_interval)
            try:
                cutoff = time.time() - s.config.hub.node_timeout
                for node in await s.store.list_nodes():
                    if node.id == s.config.node_id or node.heartbeat_at >= cutoff:
                        continue
                    for record in await s.store.live_sessions_of_node(node.id):
                        if await s.store.interrupt_session(record):
                            await s.audit.record("session.interrupted", actor=s.config.node_id, target=record.host_name,
                                                 session=record.id, user=record.username, node=node.id,
                                                 why="node stopped heartbeating")
            except Exception:
                log.exception("checking for dead nodes failed")

    async def _recheck_directory(self) -> None:
        """Directory users with live sessions: disabled or removed in the directory ends their sessions."""
        s = self.services
        while True:
            await asyncio.sleep(s.config.sso.directory_recheck_interval)
            try:
                await s.sso.recheck_directory_users({x.record.user_id for x in s.hub.live() if not x.closing})
            except Exception:
                log.exception("directory re-check failed")

    async def _retention(self) -> None:
        from .playback import purge
        s = self.services
        while True:
            try:
                await purge(s.config, s.store, s.audit, s.config.terminal.retention_days, dry_run=False)
            except Exception:
                log.exception("retention purge failed")
            await asyncio.sleep(86400)


def run(config: Config) -> int:
    """Process entry: the only place outside the loop."""
    prepare_process(config)  # umask 077; open-files limit raised toward the hard limit and checked
    logging.basicConfig(level=os.environ.get("BASTION_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    if config.server.event_loop == "uvloop":
        import uvloop
        return uvloop.run(serve(config))
    return asyncio.run(serve(config))
