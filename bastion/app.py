"""Composition root: `make_app(config, services)` and the `serve` coroutine that owns every service."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

import tornado.netutil
import tornado.web
from tornado.httpserver import HTTPServer

from .config import Config, with_secret
from .errors import BastionError, Unavailable
from .limits import http_server_options, prepare_process
from .services import Services, build_services
from .store import make_store
from .vault import check_secret_canary

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "templates"
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


async def open_services(config: Config) -> Services:
    """Load the secret, open the store (one clear line if it cannot be reached) and wire services."""
    store = make_store(config)
    await store.open()
    services = build_services(config, store, str(TEMPLATE_DIR))
    await check_secret_canary(store, services.vault)  # a wrong server secret stops start-up with one clear line
    return services


async def close_services(services: Services) -> None:
    """Close in reverse order of opening."""
    if services.registry is not None:
        await services.registry.stop()
    if services.executor is not None:
        await services.executor.shutdown()
    if services.terminals is not None:
        await services.terminals.shutdown()
    if services.hub is not None:
        await services.hub.close()
    await services.store.close()
    services.cpu.shutdown(wait=False, cancel_futures=True)


async def serve(config: Config, *, on_ready: Callable[[int], Awaitable[None] | None] | None = None,
                stop: asyncio.Event | None = None) -> int:
    """Run the bastion until SIGTERM/SIGINT (or `stop`); returns a process exit code."""
    try:
        config = with_secret(config)
        services = await open_services(config)
    except BastionError as exc:
        print(f"bastion: {exc.message}", file=sys.stderr)
        return 2
    try:
        password = await services.auth.ensure_first_admin()
        attach_live_services(config, services)
        await start_live_services(services)
    except Unavailable as exc:
        print(f"bastion: {exc.message}", file=sys.stderr)
        await services.store.close()
        return 2
    if password:
        # Printed once on the console and nowhere else (not logged, not stored).
        print(f"\n  First start: created user 'admin' with password: {password}\n  Log in and change it on the Account page.\n",
              flush=True)
    app = make_app(config, services)
    server = HTTPServer(app, **http_server_options(config))
    sockets = tornado.netutil.bind_sockets(config.server.port, config.server.host)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    print(f"Bastion listening on http://{config.server.host}:{port} (database {services.store.url_for_display}, "
          f"node {config.node_id})", flush=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if on_ready is not None:
        result = on_ready(port)
        if asyncio.iscoroutine(result):
            await result
    background = start_background_jobs(services)
    await stop.wait()
    log.info("shutting down")
    server.stop()
    for task in background:
        task.cancel()
    await close_services(services)
    await server.close_all_connections()
    return 0


def attach_live_services(config: Config, services: Services) -> None:
    """Attach the hub, terminal manager, module registry, executor and run service."""
    from .executor import Executor
    from .hub import SessionHub
    from .modules import ModuleRegistry
    from .runs import RunService
    from .terminal import TerminalManager
    if config.hub.url.startswith(("redis://", "rediss://")):
        from .hub_redis import RedisHub
        services.hub = RedisHub(config)
    else:
        services.hub = SessionHub(config)
    services.terminals = TerminalManager(config, services)
    services.registry = ModuleRegistry(Path(config.modules.dir), services.store, config.modules.poll_interval)
    services.executor = Executor(services, max_runs=config.modules.max_runs, output_cap=config.modules.output_cap,
                                 host_concurrency=config.modules.host_concurrency)
    services.runs = RunService(services)


async def start_live_services(services: Services) -> None:
    """Connect the hub, recover after a crash and start watching the modules folder."""
    await services.hub.start()
    await services.terminals.recover_interrupted()
    await services.registry.refresh()
    services.registry.start()


def start_background_jobs(services: Services) -> list[asyncio.Task]:
    """Periodic jobs; each iteration isolates failures with log.exception."""
    async def purge_logins() -> None:
        while True:
            await asyncio.sleep(600)
            try:
                await services.store.purge_expired_logins()
                # envelope ids past their freshness window can no longer be replayed (they are refused as stale)
                await services.store.forget_envelopes(time.time())
            except Exception:
                log.exception("purging expired logins and envelope ids failed")

    async def heartbeat() -> None:
        while True:
            try:
                await services.store.heartbeat(services.config.node_id)
            except Exception:
                log.exception("node heartbeat failed")
            await asyncio.sleep(services.config.hub.heartbeat_interval)

    async def reap_dead_nodes() -> None:
        """Another node that stopped heartbeating leaves ghosts: mark its live sessions interrupted, once."""
        while True:
            await asyncio.sleep(services.config.hub.heartbeat_interval)
            try:
                cutoff = time.time() - services.config.hub.node_timeout
                for node in await services.store.list_nodes():
                    if node.id == services.config.node_id or node.heartbeat_at >= cutoff:
                        continue
                    for record in await services.store.live_sessions_of_node(node.id):
                        if await services.store.interrupt_session(record):
                            await services.audit.record("session.interrupted", actor=services.config.node_id,
                                                        target=record.host_name, session=record.id, user=record.username,
                                                        node=node.id, why="node stopped heartbeating")
            except Exception:
                log.exception("checking for dead nodes failed")

    async def retention() -> None:
        from .playback import purge
        while True:
            try:
                await purge(services.config, services.store, services.audit, services.config.terminal.retention_days,
                            dry_run=False)
            except Exception:
                log.exception("retention purge failed")
            await asyncio.sleep(86400)

    loop = asyncio.get_running_loop()
    jobs = [loop.create_task(purge_logins()), loop.create_task(heartbeat()), loop.create_task(reap_dead_nodes())]
    if services.config.terminal.retention_days:
        jobs.append(loop.create_task(retention()))
    return jobs


def run(config: Config) -> int:
    """Process entry: the only place outside the loop."""
    prepare_process(config)  # umask 077; open-files limit raised toward the hard limit and checked
    logging.basicConfig(level=os.environ.get("BASTION_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    return asyncio.run(serve(config))
