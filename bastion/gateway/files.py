"""The browser terminal's file panel: list a directory, upload and download files on a granted host over SFTP.

Permissions are the grant's upload/download flags (as for the gateway's sftp); a refused request never opens a
connection to the host. Each transfer is audited with path, size and SHA-256 and, when it belongs to the user's
live terminal session on this node, marked in that session's recording (its timeline and the player).
"""
from __future__ import annotations

import hashlib
import logging
import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import asyncssh

from ..errors import BastionError, Forbidden, Invalid
from ..ssh import Target
from ..store import Host, User
from .upstreams import connect_pinned

if TYPE_CHECKING:
    from ..services import Services

log = logging.getLogger(__name__)
CHUNK = 256 * 1024
MAX_PATH = 4096
MAX_ENTRIES = 2000


def check_path(path: Any) -> str:
    """A remote path from a request: text, bounded, no NUL ("" means the login directory)."""
    if not isinstance(path, str) or len(path) > MAX_PATH or "\x00" in path:
        raise Invalid("path must be a file path of at most 4096 characters")
    return path


@dataclass
class FileTransfer:
    """One finished browser transfer, as audited."""

    direction: str
    path: str
    size: int
    sha256: str


class FileError(BastionError):
    """The host refused a file operation (no such file, permission denied on the host)."""

    status = 400
    code = "file_error"


class HostFiles:
    """SFTP on a granted host for the file panel."""

    def __init__(self, services: "Services") -> None:
        self.services = services

    async def _permitted(self, user: User, host_id: str, address: str, need: str) -> tuple[Host, bool, bool]:
        s = self.services
        host = await s.inventory.openable_host(user, host_id, address=address, purpose="files")
        grants = [g for g in await s.store.grants_of_user(user.id)
                  if g.host_id == host.id or (g.app_id and g.app_id == host.app_id)]
        up, down = any(g.upload for g in grants), any(g.download for g in grants)
        allowed = {"list": up or down, "upload": up, "download": down}[need]
        if not allowed:
            what = {"list": "file transfer", "upload": "upload", "download": "download"}[need]
            await s.audit.record("gateway.transfer_refused", actor=user.username, target=host.name, address=address,
                                 ok=False, direction=need, why=f"{what} is not permitted", via="browser")
            raise Forbidden(f"{what} is not permitted on this host for your account")
        lock = await s.store.active_lock(user.id, host.id)
        if lock is not None:
            raise Forbidden("you are locked out of this host for now")
        return host, up, down

    async def _connect(self, user: User, host: Host) -> asyncssh.SSHClientConnection:
        s = self.services
        cred = await s.store.get_credential(host.credential_id)
        if cred is None:
            raise BastionError(f"{host.name} has no usable credential; ask an admin")
        target = Target(name=host.name, address=host.address, port=host.port, username=cred.username, kind=cred.kind,
                        secret=s.inventory.open_secret(cred), pinned_key=host.host_key)
        tcfg = s.config.terminal
        return await connect_pinned(target, host, user.username, s.trust, timeout=tcfg.connect_timeout, keepalive=0)

    def _mark(self, user: User, host: Host, session_id: str, text: str) -> str:
        """Mark the user's own live session on this node (if it is one); returns its id or ""."""
        for session in self.services.hub.live():
            if session.id == session_id and session.record.user_id == user.id and session.record.host_id == host.id:
                session.recorder.marker(text)
                return session.id
        return ""

    def _audit(self, user: User, host: Host, address: str, session_id: str, t: FileTransfer) -> None:
        session = self._mark(user, host, session_id, f"{t.direction} {t.path[:500]} ({t.size} bytes, sha256 {t.sha256})")
        self.services.audit.emit("gateway.transfer", actor=user.username, target=host.name, address=address,
                                 session=session, direction=t.direction, path=t.path[:1000], size=t.size,
                                 sha256=t.sha256, via="browser")

    async def listing(self, user: User, host_id: str, path: str, address: str) -> dict[str, Any]:
        """{path, entries: [{name, size, dir, mtime}]} of a directory ("" = the login directory)."""
        path = check_path(path)
        host, up, down = await self._permitted(user, host_id, address, "list")
        conn = await self._connect(user, host)
        try:
            async with conn.start_sftp_client() as sftp:
                real = await sftp.realpath(path or ".")
                entries = []
                for entry in await sftp.readdir(real):
                    name = entry.filename if isinstance(entry.filename, str) else entry.filename.decode("utf-8", "replace")
                    if name in (".", ".."):
                        continue
                    attrs = entry.attrs
                    entries.append({"name": name, "size": attrs.size or 0, "mtime": attrs.mtime or 0,
                                    "dir": bool(attrs.permissions is not None and stat.S_ISDIR(attrs.permissions))})
                    if len(entries) >= MAX_ENTRIES:
                        break
        except asyncssh.SFTPError as exc:
            raise FileError(f"{host.name}: {exc.reason}") from None
        finally:
            conn.close()
        entries.sort(key=lambda e: (not e["dir"], e["name"].lower()))
        return {"path": real, "entries": entries, "upload": up, "download": down}

    async def download(self, user: User, host_id: str, path: str, address: str, session_id: str,
                       start: Callable[[str, int], None], write: Callable[[bytes], Awaitable[None]]) -> FileTransfer:
        """Stream a file: `start(name, size)` once, then `write(chunk)`; audited when complete."""
        path = check_path(path)
        if not path:
            raise Invalid("choose a file")
        host, _, _ = await self._permitted(user, host_id, address, "download")
        cap = self.services.config.gateway.max_download_bytes
        conn = await self._connect(user, host)
        digest = hashlib.sha256()
        size = 0
        try:
            async with conn.start_sftp_client() as sftp:
                attrs = await sftp.stat(path)
                if attrs.permissions is not None and not stat.S_ISREG(attrs.permissions):
                    raise FileError("only regular files can be downloaded")
                if (attrs.size or 0) > cap:
                    raise FileError(f"the file is larger than the download limit of {cap} bytes")
                start(path.rsplit("/", 1)[-1] or "download", attrs.size or 0)
                async with sftp.open(path, "rb") as fh:
                    while True:
                        chunk = await fh.read(CHUNK)
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > cap:
                            raise FileError(f"the file is larger than the download limit of {cap} bytes")
                        digest.update(chunk)
                        await write(chunk)
        except asyncssh.SFTPError as exc:
            raise FileError(f"{host.name}: {exc.reason}") from None
        finally:
            conn.close()
        transfer = FileTransfer("download", path, size, digest.hexdigest())
        self._audit(user, host, address, session_id, transfer)
        return transfer

    async def begin_upload(self, user: User, host_id: str, path: str, address: str) -> "Upload":
        """Check permission and open the remote file for writing (before any byte of the body is read)."""
        path = check_path(path)
        if not path or path.endswith("/"):
            raise Invalid("give the file's full path on the host")
        host, _, _ = await self._permitted(user, host_id, address, "upload")
        conn = await self._connect(user, host)
        try:
            sftp = await conn.start_sftp_client()
            fh = await sftp.open(path, "wb")
        except asyncssh.SFTPError as exc:
            conn.close()
            raise FileError(f"{host.name}: {exc.reason}") from None
        except BaseException:
            conn.close()
            raise
        return Upload(self, user, host, path, address, conn, sftp, fh, self.services.config.gateway.max_upload_bytes)


class Upload:
    """A file being written on a host from a streamed request body."""

    def __init__(self, files: HostFiles, user: User, host: Host, path: str, address: str,
                 conn: asyncssh.SSHClientConnection, sftp: Any, fh: Any, cap: int) -> None:
        self.files, self.user, self.host, self.path, self.address = files, user, host, path, address
        self.conn, self.sftp, self.fh, self.cap = conn, sftp, fh, cap
        self.size = 0
        self.digest = hashlib.sha256()
        self.started = time.monotonic()

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.cap:
            raise FileError(f"the file is larger than the upload limit of {self.cap} bytes")
        self.digest.update(chunk)
        try:
            await self.fh.write(chunk)
        except asyncssh.SFTPError as exc:
            raise FileError(f"{self.host.name}: {exc.reason}") from None

    async def finish(self, session_id: str) -> FileTransfer:
        try:
            await self.fh.close()
        finally:
            self.abort()
        transfer = FileTransfer("upload", self.path, self.size, self.digest.hexdigest())
        self.files._audit(self.user, self.host, self.address, session_id, transfer)
        return transfer

    def abort(self) -> None:
        self.conn.close()


