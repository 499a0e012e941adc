"""The `bastion` command: serve, init, user management (and more as features land)."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any, Awaitable, Callable

from . import __version__
from .config import Config, load_config, with_secret
from .errors import BastionError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="FILE", help="configuration file (default: $BASTION_CONFIG, else built-in defaults)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bastion", description="Bastion: a recorded, watched web bastion host.")
    parser.add_argument("--version", action="version", version=f"bastion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("serve", help="run the web bastion", description="Run the web bastion until SIGTERM.")
    _common(p)
    p.add_argument("--host", help="listen address (overrides [server] host)")
    p.add_argument("--port", type=int, help="listen port, 0 for any free port (overrides [server] port)")

    p = sub.add_parser("init", help="create the data dir, secret, database and first admin",
                       description="Create the data directory, server secret and database schema; with no users, "
                                   "create 'admin' and print its password once.")
    _common(p)

    user = sub.add_parser("user", help="manage users", description="Manage bastion users.")
    usub = user.add_subparsers(dest="user_command", metavar="ACTION")
    usub.required = True
    p = usub.add_parser("add", help="add a user", description="Add a user; the password is read from the terminal or stdin.")
    _common(p)
    p.add_argument("username")
    p.add_argument("--role", action="append", choices=("admin", "auditor", "user"), help="role (repeatable; default: user)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p = usub.add_parser("passwd", help="set a user's password", description="Set a user's password and end their logins.")
    _common(p)
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p = usub.add_parser("disable", help="disable a user", description="Disable a user and end their logins.")
    _common(p)
    p.add_argument("username")
    p = usub.add_parser("enable", help="enable a disabled user", description="Enable a disabled user.")
    _common(p)
    p.add_argument("username")
    p = usub.add_parser("list", help="list users", description="List users with roles and state.")
    _common(p)
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Repeat password: "):
        raise BastionError("passwords do not match")
    return first


async def _with_services(config: Config, action: Callable[[Any], Awaitable[int]]) -> int:
    from .app import close_services, open_services
    services = await open_services(with_secret(config))
    try:
        return await action(services)
    finally:
        await close_services(services)


async def _user_command(args: argparse.Namespace, services: Any) -> int:
    auth, store = services.auth, services.store
    if args.user_command == "list":
        page = await store.list_users(limit=500)
        print(f"{'USERNAME':<24} {'ROLES':<22} {'TOTP':<5} STATE")
        for u in page.items:
            print(f"{u.username:<24} {','.join(u.roles):<22} {'on' if u.totp_secret else '-':<5} {'disabled' if u.disabled else 'active'}")
        return 0
    if args.user_command == "add":
        password = _read_password(args.password_stdin)
        await auth.create_user(args.username, password, sorted(set(args.role or ["user"])), actor="cli")
        print(f"user {args.username} created")
        return 0
    user = await store.get_user_by_name(args.username)
    if user is None:
        raise BastionError(f"no user named {args.username!r}")
    if args.user_command == "passwd":
        await auth.set_password(user, _read_password(args.password_stdin), actor="cli")
        print(f"password of {user.username} changed")
    elif args.user_command in ("disable", "enable"):
        await auth.update_user(user, disabled=args.user_command == "disable", actor="cli")
        print(f"user {user.username} {args.user_command}d")
    return 0


async def _init(services: Any) -> int:
    password = await services.auth.ensure_first_admin()
    print(f"data dir {services.config.data_dir}, database {services.store.url_for_display}: ready")
    if password:
        print(f"created user 'admin' with password: {password}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides: dict[str, Any] = {}
        if args.command == "serve":
            if args.host:
                overrides["server_host"] = args.host
            if args.port is not None:
                overrides["server_port"] = str(args.port)
        config = load_config(args.config, overrides=overrides)
        if args.command == "serve":
            from .app import run
            return run(config)
        if args.command == "init":
            return asyncio.run(_with_services(config, _init))
        if args.command == "user":
            return asyncio.run(_with_services(config, lambda s: _user_command(args, s)))
    except BastionError as exc:
        print(f"bastion: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1
