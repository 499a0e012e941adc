"""The `bastion` command: serve, init, user management (and more as features land)."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import sys
import time
from typing import Any, Awaitable, Callable

from . import __version__
from .config import Config, load_config, with_secret
from .errors import BastionError, NotFound


def _common(p: argparse.ArgumentParser, *, nested: bool = False) -> None:
    # A nested parser must not reset a -c its parent already read: argparse lets sub-parser defaults win.
    p.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS if nested else None,
                   help="configuration file (default: $BASTION_CONFIG, else built-in defaults)")


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
    p = usub.add_parser("unlock", help="clear a user's login lock",
                        description="Clear the lock set on an account after repeated failed logins (audited). "
                                    "A lock on a client address is cleared with `bastion locks clear ADDRESS`.")
    _common(p)
    p.add_argument("username")
    p = usub.add_parser("list", help="list users", description="List users with roles and state.")
    _common(p)

    locks = sub.add_parser("locks", help="list or clear login locks",
                           description="List the accounts and client addresses locked after repeated failed logins; "
                                       "`bastion locks clear ADDRESS` lifts an address lock (audited).")
    _common(locks)
    lsub = locks.add_subparsers(dest="locks_command", metavar="ACTION")
    p = lsub.add_parser("clear", help="clear the lock of a client address",
                        description="Clear the lock of a client address (or of a key as `bastion locks` lists it, "
                                    "e.g. user:alice), so logins from it are accepted again.")
    _common(p, nested=True)
    p.add_argument("address", help="IP address, or a key as listed (ip:<address> or user:<name>)")

    p = sub.add_parser("play", help="replay a session in this terminal",
                       description="Replay a recorded session with its timing, or list its commands.")
    _common(p)
    p.add_argument("session_id")
    p.add_argument("--commands", action="store_true", help="list the session's commands instead of replaying")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed (default 1)")

    p = sub.add_parser("verify", help="check a recording against its sealed digest",
                       description="Recompute a recording's HMAC chain; exit 0 when verified, 1 naming the first "
                                   "line that does not match.")
    _common(p)
    p.add_argument("session_id")

    p = sub.add_parser("run", help="run a task module on hosts through a bastion's API",
                       description="Seal a command envelope with your API token's key, submit it, show live progress "
                                   "and print the per-host table. Exit 0 when every host succeeded.")
    p.add_argument("module_id", help="module id (digits), e.g. 1003")
    p.add_argument("--hosts", required=True, help="comma-separated host names")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="parameter (repeatable)")
    p.add_argument("--url", default=None, help="bastion URL (default: $BASTION_URL or http://127.0.0.1:8022)")
    p.add_argument("--key", default=None, help="API token (default: $BASTION_TOKEN)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run (default 600)")

    p = sub.add_parser("cancel", help="cancel a module run through a bastion's API",
                       description="Cancel a queued or running module run: its worker and the commands it started on "
                                   "the hosts are ended; hosts that had finished keep their results. Waits for the "
                                   "run to end and prints the per-host table. Exit 0 when the run ended cancelled.")
    p.add_argument("run_id", help="the run's id (on its page and in `bastion run`'s output)")
    p.add_argument("--url", default=None, help="bastion URL (default: $BASTION_URL or http://127.0.0.1:8022)")
    p.add_argument("--key", default=None, help="API token (default: $BASTION_TOKEN)")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for the run to end (default 60)")

    p = sub.add_parser("rerun", help="re-run the failed hosts of a module run",
                       description="Start a new run of the same module, with the same parameters, on the hosts that "
                                   "did not succeed in the given run; the new run links to it. Secret parameters "
                                   "must be given again with --param. Exit 0 when every host succeeded.")
    p.add_argument("run_id", help="the earlier run's id")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="parameter (repeatable)")
    p.add_argument("--url", default=None, help="bastion URL (default: $BASTION_URL or http://127.0.0.1:8022)")
    p.add_argument("--key", default=None, help="API token (default: $BASTION_TOKEN)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run (default 600)")

    p = sub.add_parser("purge", help="delete recordings past the retention period",
                       description="Delete recordings older than [terminal] retention_days (or --days), keeping "
                                   "session metadata marked purged.")
    _common(p)
    p.add_argument("--days", type=int, help="retention in days (default: [terminal] retention_days)")
    p.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    return parser


def _read_password(from_stdin: bool) -> str:
    """The new password from stdin (--password-stdin) or typed twice at the terminal."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    # getpass falls back to reading stdin with a warning, then dies with EOFError: refuse plainly instead.
    if sys.stdin is None or not sys.stdin.isatty():
        raise BastionError("no terminal to type the password in: pass --password-stdin and write it to standard input")
    try:
        first = getpass.getpass("New password: ")
        second = getpass.getpass("Repeat password: ")
    except EOFError:
        raise BastionError("no password was typed") from None
    if first != second:
        raise BastionError("passwords do not match")
    return first


def _lock_key(target: str) -> str:
    """The lock key a `locks clear` argument names: a bare IP address, or a key as `bastion locks` lists it."""
    if target.startswith("user:"):
        return target
    address = target[3:] if target.startswith("ip:") else target
    try:
        # the form the server records: a client address as Tornado reports it (compressed IPv6)
        return f"ip:{ipaddress.ip_address(address)}"
    except ValueError:
        raise BastionError(f"{target!r} is not an IP address (or a key such as ip:<address> or user:<name>)") from None


async def _locks_command(args: argparse.Namespace, services: Any) -> int:
    if args.locks_command == "clear":
        key = _lock_key(args.address)
        try:
            await services.auth.clear_lock(key, actor="cli")
        except NotFound:
            raise BastionError(f"{key} is not locked (run `bastion locks` to list locks)") from None
        print(f"lock on {key} cleared")
        return 0
    now = time.time()
    locks = await services.store.list_locked(now)
    if not locks:
        print("no account or address is locked")
        return 0
    print(f"{'KEY':<40} {'FAILURES':>8}  LOCKED FOR")
    for lock in sorted(locks, key=lambda f: f.id):
        print(f"{lock.id:<40} {lock.count:>8}  {int(lock.locked_until - now) + 1} s")
    return 0


async def _with_services(config: Config, action: Callable[[Any], Awaitable[int]]) -> int:
    """Run a CLI action with the core services (store, journal, audit, accounts); no hub, no sessions."""
    from .app import open_core
    async with open_core(with_secret(config)) as core:
        return await action(core)


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
    if args.user_command == "unlock":
        # the account lock is keyed by the name tried at login, so an unknown name can be locked too
        key = f"user:{args.username[:64]}"
        try:
            await auth.clear_lock(key, actor="cli")
        except NotFound:
            print(f"user {args.username} is not locked")
            return 0
        print(f"user {args.username} unlocked")
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


async def _session(services: Any, session_id: str) -> Any:
    from . import validation as v
    record = await services.store.get_session(v.record_id(session_id, "session id"))
    if record is None:
        raise BastionError(f"no session {session_id!r}")
    return record


async def _play(args: argparse.Namespace, services: Any) -> int:
    from .playback import recording_file, replay
    record = await _session(services, args.session_id)
    if args.commands:
        for c in await services.store.commands_of_session(record.id):
            flag = " [blocked]" if c.blocked else " [flagged]" if c.flagged else ""
            print(f"{int(c.offset) // 60:>4}:{int(c.offset) % 60:02d}  {c.text}{flag}")
        return 0
    path = recording_file(services.config, record)
    await services.audit.record("recording.opened", actor="cli", target=record.host_name, session=record.id, via="cli")
    await asyncio.get_running_loop().run_in_executor(None, lambda: replay(path, speed=max(0.1, args.speed)))
    print("\x1b[0m")
    return 0


async def _verify(args: argparse.Namespace, services: Any) -> int:
    from .playback import verify_session
    record = await _session(services, args.session_id)
    result = verify_session(services.config, record)
    print(f"{record.id}: {result.message}")
    return 0 if result.ok else 1


async def _purge(args: argparse.Namespace, services: Any) -> int:
    from .playback import purge
    days = args.days if args.days is not None else services.config.terminal.retention_days
    if not days:
        raise BastionError("no retention period: set [terminal] retention_days or pass --days")
    victims = await purge(services.config, services.store, services.audit, days, dry_run=args.dry_run, actor="cli")
    verb = "would delete" if args.dry_run else "deleted"
    for r in victims:
        print(f"{verb} {r.id}  {r.username}@{r.host_name}  started {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.started_at))}"
              f"  {r.recording_size} bytes")
    print(f"{len(victims)} recording(s) {verb} (older than {days} days)")
    return 0


async def _init(services: Any) -> int:
    password = await services.auth.ensure_first_admin()
    print(f"data dir {services.config.data_dir}, database {services.store.url_for_display}: ready")
    if password:
        print(f"created user 'admin' with password: {password}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("run", "cancel", "rerun"):
        from .client import cancel_command, rerun_command, run_command
        return {"run": run_command, "cancel": cancel_command, "rerun": rerun_command}[args.command](args)
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
        if args.command == "locks":
            return asyncio.run(_with_services(config, lambda s: _locks_command(args, s)))
        if args.command in ("play", "verify", "purge"):
            action = {"play": _play, "verify": _verify, "purge": _purge}[args.command]
            return asyncio.run(_with_services(config, lambda s: action(args, s)))
    except BastionError as exc:
        print(f"bastion: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1
