"""The SSH gateway: an asyncssh server in the Bastion process, a front door into the live-session engine.

Users log in with their Bastion account (a public key registered on the Account page, or password then TOTP
through keyboard-interactive); lockout, disabled accounts, login rules and `require_mfa` (TOTP here) apply as on the web.
`ssh -p PORT alice@bastion` opens a menu of alice's hosts; `ssh -p PORT alice@web-01@bastion` goes straight to
web-01, and with a command runs it there (checked by the command rules first). sftp (and scp, which speaks
sftp) reach the host's sftp subsystem through a filter that enforces the grant's upload/download permissions.
Nothing is forwarded: ProxyJump and port forwards are refused with a message and audited.
"""
from __future__ import annotations

import asyncio
import codecs
import functools
import logging
import os
import shlex
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from ..errors import BastionError
from ..sessions.session import LiveSession
from ..ssh import ENCRYPTION_ALGS, Target
from ..store import Host, SSHKey, User
from .door import ChannelDoor
from .keys import UserKeys
from .menu import HostMenu, menu_entries
from .sftp import SFTPFilter, Transfer
from .upstreams import ExecUpstream, SFTPUpstream

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger(__name__)
MAX_LOGIN_NAME = 200
# The client's preference decides an SSH cipher. OpenSSH prefers chacha20-poly1305, then AES-CTR with a UMAC, both
# far costlier in asyncssh than AES-GCM (UMAC is computed through ctypes per packet): the gateway offers AES-GCM
# only, which every OpenSSH since 6.2 has.
GATEWAY_CIPHERS = [alg for alg in ENCRYPTION_ALGS if "gcm@openssh.com" in alg]


def load_host_key(path: Path) -> asyncssh.SSHKey:
    """The gateway's host key, generated (ed25519, 0600) on first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="bastion gateway")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.export_private_key("openssh"))
    return asyncssh.read_private_key(str(path))


def transfer_command(command: str) -> tuple[str, str] | None:
    """(direction, path) when an exec command is a file-transfer server (legacy `scp -O`, rsync, sftp-server),
    else None. Such commands need the grant's upload/download permission like sftp does."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    path = words[-1] if len(words) > 1 else ""
    if program == "scp":
        flags = "".join(w[1:] for w in words[1:] if w.startswith("-") and not w.startswith("--"))
        if "t" in flags:
            return "upload", path
        if "f" in flags:
            return "download", path
    if program == "rsync" and "--server" in words:
        return ("download" if "--sender" in words else "upload"), path
    if program in ("sftp-server", "internal-sftp"):
        return "sftp", ""
    return None


def split_login(name: str) -> tuple[str, str]:
    """"alice" → ("alice", ""); "alice@web-01" → ("alice", "web-01") (ssh splits user@host at the last @)."""
    user, _, target = name[:MAX_LOGIN_NAME].partition("@")
    return user, target


class SSHGateway:
    """Owns the listener, its host key and the open connections."""

    def __init__(self, services: "Services") -> None:
        self.services = services
        self.config = services.config
        self.keys = UserKeys(services.store, services.audit)
        self.host_key_path = Path(self.config.gateway.host_key or self.config.data_dir / "gateway_host_key")
        self.host_key: asyncssh.SSHKey | None = None
        self.ca_key_path = Path(self.config.gateway.ca_key or self.config.data_dir / "gateway_ca_key")
        self.ca_key: asyncssh.SSHKey | None = None
        self.port = 0
        self.address = ""
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[GatewayConnection] = set()

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint of the gateway's host key (what users pin)."""
        return self.host_key.get_fingerprint("sha256") if self.host_key else ""

    @property
    def public_key(self) -> str:
        """The host key's OpenSSH public line (for a known_hosts entry)."""
        if self.host_key is None:
            return ""
        return " ".join(self.host_key.export_public_key("openssh").decode().split()[:2])

    async def start(self) -> None:
        """Load or create the host key and listen."""
        host, _, port = self.config.gateway.listen.rpartition(":")
        host = host.strip("[]")
        loop = asyncio.get_running_loop()
        self.host_key = await loop.run_in_executor(self.services.io, load_host_key, self.host_key_path)
        if self.config.gateway.proxy_jump:
            self.ca_key = await loop.run_in_executor(self.services.io, load_host_key, self.ca_key_path)
        self._acceptor = await asyncssh.create_server(
            lambda: GatewayConnection(self), host, int(port), server_host_keys=[self.host_key], **self.server_options())
        sockname = self._acceptor.sockets[0].getsockname()
        self.address, self.port = sockname[0], sockname[1]
        log.info("SSH gateway listening on %s:%d (host key %s)", self.address, self.port, self.fingerprint)

    def server_options(self) -> dict[str, Any]:
        """asyncssh server options shared by the listener and ProxyJump's inner connections."""
        return dict(encryption_algs=GATEWAY_CIPHERS, encoding=None, line_editor=False, agent_forwarding=False,
                    x11_forwarding=False, login_timeout=self.config.gateway.login_timeout,
                    window=self.config.terminal.ssh_window,
                    keepalive_interval=self.config.terminal.keepalive_interval or None, keepalive_count_max=3,
                    password_auth=False, kbdint_auth=True, public_key_auth=True, server_version="Bastion")

    @property
    def cert_authority(self) -> str:
        """The known_hosts line that makes OpenSSH trust the gateway's ProxyJump host certificates."""
        if self.ca_key is None:
            return ""
        return "@cert-authority * " + " ".join(self.ca_key.export_public_key("openssh").decode().split()[:2])

    def jump_host_key(self, name: str) -> tuple[asyncssh.SSHKey, Any]:
        """The gateway's host key with a short-lived certificate naming the ProxyJump target."""
        if self.ca_key is None or self.host_key is None:
            raise BastionError("ProxyJump is turned off on this gateway")
        now = int(time.time())
        cert = self.ca_key.generate_host_certificate(self.host_key, f"bastion-jump:{name}", principals=[name],
                                                     valid_after=now - 300, valid_before=now + 3600)
        return self.host_key, cert

    async def stop(self) -> None:
        """Stop listening and close every connection (sessions end through their own close path)."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for conn in list(self._connections):
            conn.close()

    def opened(self, conn: "GatewayConnection") -> None:
        self._connections.add(conn)

    def closed(self, conn: "GatewayConnection") -> None:
        self._connections.discard(conn)

    async def transfer_permissions(self, user: User, host: Host) -> tuple[bool, bool]:
        """(may upload, may download) to a host: any grant covering it that allows each."""
        grants = [g for g in await self.services.store.grants_of_user(user.id)
                  if g.host_id == host.id or (g.app_id and g.app_id == host.app_id)]
        return any(g.upload for g in grants), any(g.download for g in grants)


class GatewayConnection(asyncssh.SSHServer):
    """One client connection: authentication, then its session channels; forwarding is refused."""

    def __init__(self, gateway: SSHGateway) -> None:
        self.gateway = gateway
        self.services = gateway.services
        self.conn: asyncssh.SSHServerConnection | None = None
        self.address = ""
        self.login_name = ""
        self.target = ""
        self.user: User | None = None
        self.key: SSHKey | None = None
        self.method = ""
        self._half_login: Any = None
        self._kbd_stage = ""
        self._admitted: tuple[str, str] | None = None  # (user id, key fingerprint) already checked on this connection

    def __repr__(self) -> str:
        return f"[gateway user={self.login_name} address={self.address}]"

    # ---- connection --------------------------------------------------------------------------------------
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("", 0)
        self.address = str(peer[0])
        self.gateway.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway.closed(self)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def begin_auth(self, username: str) -> bool:
        self.login_name, self.target = split_login(username)
        return True

    def _banner(self, message: str) -> None:
        if self.conn is not None:
            try:
                self.conn.send_auth_banner(f"Bastion: {message}\r\n")
            except (asyncssh.Error, OSError):
                pass

    async def _admit(self, user: User, method: str) -> bool:
        """Account state and policy for a login that proved its identity: disabled, lock, TOTP rule, login rules."""
        s = self.services
        try:
            if user.disabled:
                raise BastionError("this account is disabled")
            await s.auth.check_not_locked(user.username, self.address)
            if s.config.auth.mfa_required and not user.totp_secret:
                raise BastionError("TOTP enrolment is required: open your Account page in the browser and enrol first")
            await s.auth.login_rules.check(user, self.address)
        except BastionError as exc:
            self._banner(exc.message)
            await s.audit.record_limited("gateway.login_refused", self.address, actor=user.username,
                                         address=self.address, method=method, why=exc.message)
            return False
        return True

    # ---- public keys -------------------------------------------------------------------------------------
    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        fingerprint = key.get_fingerprint("sha256")
        found = await self.gateway.keys.owner_of(self.login_name, key)
        if found is None:
            return False  # not a failure: clients offer every key they have, one after another
        user, record = found
        if self._admitted != (user.id, fingerprint):  # asyncssh asks twice (query, then signature)
            if not await self._admit(user, "publickey"):
                return False
            self._admitted = (user.id, fingerprint)
        self.user, self.key, self.method = user, record, "publickey"
        return True

    # ---- password, then TOTP ----------------------------------------------------------------------------
    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return True

    def get_kbdint_challenge(self, username: str, lang: str, submethods: str) -> Any:
        self._kbd_stage = "password"
        return "Bastion login", "", "", [("Password: ", False)]

    async def validate_kbdint_response(self, username: str, responses: Any) -> Any:
        s = self.services
        answer = responses[0] if len(responses) == 1 and isinstance(responses[0], str) else ""
        try:
            if self._kbd_stage == "password":
                user, login = await s.auth.login(self.login_name, answer, self.address)
                if login.stage == "totp":
                    self._half_login, self._kbd_stage = login, "totp"
                    return "Bastion login", "Enter the code from your authenticator app.", "", [("TOTP code: ", True)]
                await s.store.delete_login(login.id)  # the gateway keeps no browser login
                method = "password"
            elif self._kbd_stage == "totp" and self._half_login is not None:
                user, login = await s.auth.login_totp(self._half_login, answer, self.address)
                self._half_login = None
                await s.store.delete_login(login.id)
                method = "password+totp"
            else:
                return False
        except BastionError as exc:
            self._banner(exc.message)
            self._kbd_stage = ""
            return False
        if s.config.auth.mfa_required and not user.totp_secret:
            self._banner("TOTP enrolment is required: open your Account page in the browser and enrol first")
            await s.audit.record_limited("gateway.login_refused", self.address, actor=user.username,
                                         address=self.address, method=method, why="TOTP not enrolled")
            return False
        self.user, self.method = user, method
        return True

    def auth_completed(self) -> None:
        user = self.user
        if user is None:  # cannot happen: every accepting path sets it
            self.close()
            return
        s = self.services
        s.audit.emit("gateway.login", actor=user.username, address=self.address, method=self.method,
                     key=self.key.fingerprint if self.key else "", key_name=self.key.name if self.key else "",
                     target=self.target[:100])
        if self.key is not None:
            s.sessions.spawn(self.gateway.keys.touch(self.key))
        log.info("gateway login (%s) %r", self.method, self)

    # ---- channels ---------------------------------------------------------------------------------------
    def session_requested(self) -> Any:
        return GatewayChannel(self)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        """ProxyJump (ssh -J): the inner SSH ends here, as a recorded gateway connection to that host, when the
        gateway has a CA; otherwise (and for -L/-D forwards, which carry other protocols) refused and audited."""
        user = self.user.username if self.user else self.login_name
        if self.gateway.ca_key is not None and self.user is not None and not isinstance(self, JumpConnection):
            self.services.audit.emit("gateway.jump", actor=user, target=f"{dest_host[:100]}:{dest_port}",
                                     address=self.address)
            return functools.partial(self._terminate_jump, dest_host[:200])
        self.services.audit.emit("gateway.forward_refused", actor=user, target=f"{dest_host[:100]}:{dest_port}",
                                 address=self.address, ok=False, kind="direct-tcpip")
        port = self.gateway.port
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
            f"Bastion does not forward connections (ProxyJump, -W, -L, -D): nothing may pass unrecorded. "
            f"Use: ssh -p {port} {user}@{dest_host[:100]}@<bastion>")

    async def _terminate_jump(self, target: str, reader: asyncssh.SSHReader, writer: asyncssh.SSHWriter) -> None:
        """Run an SSH server for the inner connection over the forwarded channel (through a socket pair)."""
        ours, theirs = socket.socketpair()
        inner = JumpConnection(self.gateway, self, target)
        key_and_cert = self.gateway.jump_host_key(target)
        server = asyncio.ensure_future(asyncssh.run_server(theirs, server_factory=lambda: inner,
                                                           server_host_keys=[key_and_cert],
                                                           **self.gateway.server_options()))
        sock_reader, sock_writer = await asyncio.open_connection(sock=ours)

        async def pump(src: Any, dst: Any) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncssh.Error, ConnectionError):
                pass
            finally:
                try:
                    if dst.can_write_eof():
                        dst.write_eof()
                    else:
                        dst.close()
                except (OSError, asyncssh.Error):
                    pass

        try:
            await asyncio.gather(pump(reader, sock_writer), pump(sock_reader, writer))
        finally:
            sock_writer.close()
            writer.close()
            if not server.done():
                server.cancel()
                theirs.close()
            elif not server.cancelled() and server.exception() is None:
                server.result().close()

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        user = self.user.username if self.user else self.login_name
        self.services.audit.emit("gateway.forward_refused", actor=user, target=f"{listen_host[:100]}:{listen_port}",
                                 address=self.address, ok=False, kind="tcpip-forward")
        return False


class JumpConnection(GatewayConnection):
    """The inner SSH of a ProxyJump: already authenticated by the outer connection; its target is fixed."""

    def __init__(self, gateway: SSHGateway, outer: GatewayConnection, target: str) -> None:
        super().__init__(gateway)
        self.outer = outer
        self.user = outer.user
        self.key = outer.key
        self.method = "proxyjump"
        self.login_name = outer.login_name
        self.target = target
        self.address = outer.address

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn  # a socket pair: the client's address is the outer connection's
        self.gateway.opened(self)

    def begin_auth(self, username: str) -> bool:
        return False  # the person behind this channel logged in on the outer connection

    def auth_completed(self) -> None:
        pass  # the outer login was audited; the jump itself is `gateway.jump`


class GatewayChannel(asyncssh.SSHServerSession):
    """One session channel: the menu, a shell, an exec command or sftp, each as a live session."""

    def __init__(self, connection: GatewayConnection) -> None:
        self.connection = connection
        self.gateway = connection.gateway
        self.services = connection.services
        self.chan: asyncssh.SSHServerChannel | None = None
        self.tty = False
        self.term = "xterm-256color"
        self.size = (80, 24)
        self.mode = ""  # shell | exec | sftp
        self.command = ""
        self.menu: HostMenu | None = None
        self.door: ChannelDoor | None = None
        self.session: LiveSession | None = None
        self.upstream: Any = None
        self.ended = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._early: list[bytes] = []  # bounded by the channel's window: the client cannot send more unread

    # ---- requests -----------------------------------------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:
        self.chan = chan

    def pty_requested(self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Any) -> bool:
        self.tty = True
        self.term = term_type or self.term
        cols, rows = term_size[0] or 80, term_size[1] or 24
        self.size = (max(2, min(cols, 1000)), max(2, min(rows, 1000)))
        return True

    def shell_requested(self) -> bool:
        self.mode = "shell"
        return True

    def exec_requested(self, command: str) -> bool:
        self.mode, self.command = "exec", command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            return False
        self.mode = "sftp"
        return True

    def session_started(self) -> None:
        if self.chan is None:
            return
        self.chan.pause_reading()  # nothing is read until the session's upstream is there
        self.services.sessions.spawn(self._run())

    # ---- data ---------------------------------------------------------------------------------------
    def data_received(self, data: bytes, datatype: Any) -> None:
        if self.menu is not None and not self.menu.done:
            self.menu.feed(data)
        elif self.mode == "shell" and self.session is not None:
            text = self._decoder.decode(data)
            if text:
                self.session.send_input(text)
        elif self.upstream is not None:
            self.upstream.write(data)
            if self.mode == "exec" and self.session is not None:
                self.session.note_activity()  # stdin of a command bypasses the terminal path
        elif not self.ended:  # before the upstream is there (asyncssh may deliver it before session_started)
            self._early.append(data)

    def eof_received(self) -> bool:
        if self.mode == "exec" and self.upstream is not None:
            self.upstream.write_eof()
        elif self.mode == "sftp" and self.upstream is not None:
            self.upstream.client_eof()
        return True  # keep the channel open for the command's output

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self.size = (max(2, min(width or 80, 1000)), max(2, min(height or 24, 1000)))
        if self.session is not None:
            self.session.resize(*self.size)

    def pause_writing(self) -> None:
        if self.door is not None:
            self.door.pause_writing()
        if self.mode == "sftp" and self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.door is not None:
            self.door.resume_writing()
        if self.mode == "sftp" and self.upstream is not None:
            self.upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        if self.session is not None and not self.session.closing:
            self.services.sessions.spawn(self.session.close("closed"))

    # ---- running ------------------------------------------------------------------------------------
    def _finish(self, message: str = "", status: int = 0) -> None:
        """End the channel from the gateway itself (before or without a live session)."""
        chan = self.chan
        if chan is None or self.ended:
            return
        self.ended = True
        try:
            if message:
                nl = "\r\n" if self.tty else "\n"
                chan.write_stderr(f"[bastion] {message}{nl}".encode())
            chan.exit(status)
        except (asyncssh.Error, OSError):
            chan.close()

    async def _run(self) -> None:
        logged_in = self.connection.user
        # read again: a connection lives on (ssh multiplexing), and the account may have been disabled since
        user = await self.services.store.get_user(logged_in.id) if logged_in is not None else None
        if user is None or user.disabled:
            self._finish("this account is disabled" if user is not None else "not logged in", 1)
            return
        target = self.connection.target
        try:
            if not target:
                if self.mode == "shell" and self.tty:
                    await self._menu(user)
                elif self.mode == "shell":
                    hosts = await self._hosts(user)
                    self._finish_with_list(hosts)
                else:
                    self._finish(f"name the host: ssh -p {self.gateway.port} {user.username}@HOST@<bastion> …", 1)
                return
            host = await self._host(user, target)
            if host is None:
                self._finish("host not found", 1)
                return
            await self._open(user, host)
        except BastionError as exc:
            self._finish(exc.message, 1)
        except Exception:
            log.exception("gateway channel failed %r", self.connection)
            self._finish("internal error; the session was not opened", 1)

    async def _hosts(self, user: User) -> tuple[list[Host], dict[str, str]]:
        hosts = await self.services.inventory.hosts_for(user)
        apps = {a.id: a.name for a in (await self.services.store.list_apps(limit=10000)).items}
        return hosts, apps

    def _finish_with_list(self, listing: tuple[list[Host], dict[str, str]]) -> None:
        from .menu import render
        text = render(menu_entries(*listing), self.connection.login_name).replace("\r\n", "\n")
        if self.chan is not None and not self.ended:
            self.chan.write(text.encode())
        self._finish()

    async def _host(self, user: User, name: str) -> Host | None:
        hosts = await self.services.inventory.hosts_for(user)
        found = next((h for h in hosts if h.name == name), None) or next(
            (h for h in hosts if h.name.lower() == name.lower()), None)
        if found is None:
            await self.services.audit.record_limited(
                "session.refused", self.connection.address, actor=user.username, address=self.connection.address,
                why="host not found", purpose=f"gateway {self.mode}", host_id=name[:64])
        return found

    async def _menu(self, user: User) -> None:
        chan = self.chan
        if chan is None:
            return
        hosts, apps = await self._hosts(user)

        def choose(host: Host) -> None:
            self.services.sessions.spawn(self._open_from_menu(user, host))

        self.menu = HostMenu(menu_entries(hosts, apps), user.username, chan.write, choose, lambda: self._finish())
        self.menu.start()
        chan.resume_reading()

    async def _open_from_menu(self, user: User, host: Host) -> None:
        if self.chan is None:
            return
        self.chan.pause_reading()
        try:
            await self._open(user, host)
        except BastionError as exc:
            self._finish(exc.message, 1)

    async def _open(self, user: User, host: Host) -> None:
        """Admit, then open the live session for this channel's mode."""
        s = self.services
        chan = self.chan
        if chan is None or self.ended:
            return
        address = self.connection.address
        if self.mode == "exec" and transfer_command(self.command) is not None:
            direction, path = transfer_command(self.command)  # type: ignore[misc]
            may_upload, may_download = await self.gateway.transfer_permissions(user, host)
            allowed = (may_upload if direction == "upload" else may_download if direction == "download"
                       else may_upload and may_download)
            if not allowed:
                why = f"{direction if direction != 'sftp' else 'file transfer'} is not permitted"
                await s.audit.record("gateway.transfer_refused", actor=user.username, target=host.name,
                                     address=address, ok=False, direction=direction, path=path[:1000], why=why,
                                     via="exec")
                self._finish(f"{why} on {host.name} for your account", 1)
                return
            # the bytes pass as the command's stdin/stdout (not hashed: only sftp transfers carry a SHA-256)
            await s.audit.record("gateway.transfer", actor=user.username, target=host.name, address=address,
                                 direction=direction, path=path[:1000], size=-1, sha256="", via="exec")
        if self.mode == "sftp":
            may_upload, may_download = await self.gateway.transfer_permissions(user, host)
            if not (may_upload or may_download):
                await s.audit.record("gateway.transfer_refused", actor=user.username, target=host.name, address=address,
                                     ok=False, why="file transfer is not permitted")
                self._finish(f"file transfer to {host.name} is not permitted for your account", 1)
                return
        try:
            admission = await s.sessions.admit(user, host, address)
        except BastionError as exc:
            await s.audit.record_limited("session.refused", address, actor=user.username, target=host.name,
                                         address=address, why=exc.message, purpose=f"gateway {self.mode}")
            raise
        door = ChannelDoor(chan, tty=self.tty)
        self.door = door
        cols, rows = self.size
        if self.mode == "exec":
            session = await s.sessions.open_session(admission, user, host, cols, rows, door, address, via="exec",
                                                    command=self.command, connect=self._exec_connector(user, host, door))
        elif self.mode == "sftp":
            session = await s.sessions.open_session(admission, user, host, cols, rows, door, address, via="sftp",
                                                    connect=self._sftp_connector(user, host, may_upload, may_download))
        else:
            session = await s.sessions.open_session(admission, user, host, cols, rows, door, address, via="ssh")
        self.session = session
        if session.closing or self.ended:
            if not session.closing:
                await session.close("closed")
            return
        self.upstream = session.upstream
        early, self._early = self._early, []
        for data in early:
            self.data_received(data, None)
        chan.resume_reading()

    def _terminal(self) -> dict[str, str]:
        locale = self.services.config.terminal.locale
        return {"LANG": locale, "LC_CTYPE": locale} if locale else {}

    def _exec_connector(self, user: User, host: Host, door: ChannelDoor) -> Any:
        s = self.services
        tcfg = s.config.terminal

        async def connect(session: LiveSession, window: int) -> ExecUpstream:
            target = await s.sessions.ssh_target(host)
            try:
                verdict = await session.decide(self.command)
            except BastionError:
                raise
            except Exception:  # fail closed, as the browser terminal's gate does
                log.exception("command check failed %r", session)
                raise BastionError("the command filter cannot be read right now; the command was not run") from None
            if verdict.action == "deny":  # never reaches the host
                raise BastionError(f"command refused by the command filter (rule {verdict.rule})")

            def on_stderr(data: bytes) -> None:
                door.send_stderr(data)
                session.recorder.output(data)

            def on_exit(status: int) -> None:
                door.exit_status = status

            term = (self.term, *self.size) if self.tty else None
            return await ExecUpstream.open(target, host, user.username, session, command=self.command, trust=s.trust,
                                           timeout=tcfg.connect_timeout, keepalive=tcfg.keepalive_interval,
                                           window=window, term=term, env=self._terminal(), on_stderr=on_stderr,
                                           on_exit=on_exit)
        return connect

    def _sftp_connector(self, user: User, host: Host, may_upload: bool, may_download: bool) -> Any:
        s = self.services
        gcfg, tcfg = s.config.gateway, s.config.terminal
        chan = self.chan

        async def connect(session: LiveSession, window: int) -> SFTPUpstream:
            target = await s.sessions.ssh_target(host)
            def on_transfer(t: Transfer) -> None:
                s.audit.emit("gateway.transfer", actor=user.username, target=host.name, session=session.id,
                             address=self.connection.address, ok=not t.refused, direction=t.direction,
                             path=t.path[:1000], size=t.size, sha256=t.sha256, why=t.refused, via="sftp")
                session.recorder.marker(f"{t.direction} {t.path[:500]} ({t.size} bytes"
                                        + (f", sha256 {t.sha256}" if t.sha256 else "") + ")"
                                        + (f": {t.refused}" if t.refused else ""))

            def on_refused(direction: str, path: str, why: str) -> None:
                s.audit.emit("gateway.transfer_refused", actor=user.username, target=host.name, session=session.id,
                             address=self.connection.address, ok=False, direction=direction, path=path[:1000],
                             why=why, via="sftp")
                session.recorder.marker(f"refused {direction} {path[:500]}: {why}")

            sftp = SFTPFilter(may_upload=may_upload, may_download=may_download, max_upload=gcfg.max_upload_bytes,
                              max_download=gcfg.max_download_bytes, on_transfer=on_transfer, on_refused=on_refused)
            if chan is None:
                raise BastionError("the channel closed")
            return await SFTPUpstream.open(target, host, user.username, session, client=chan, sftp=sftp,
                                           trust=s.trust, timeout=tcfg.connect_timeout,
                                           keepalive=tcfg.keepalive_interval, window=window,
                                           on_activity=session.note_activity)
        return connect
