"""SFTP (version 3) packet inspection for the gateway's sftp proxy: permissions, size caps and per-file audit.

The user's sftp client speaks to the host's sftp server through the gateway; every request packet is read here
first. Requests that would write (open for writing, remove, rename, mkdir, setstat, …) need the grant's upload
permission, opening for reading needs download; a refused request is answered here with a "permission denied"
status and never reaches the host. File contents are hashed as they pass (in offset order) so each transfer is
audited with path, size and SHA-256. Replies from the host are only observed, never changed.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Callable

# packet types (draft-ietf-secsh-filexfer-02, what OpenSSH speaks)
INIT, VERSION, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = 11, 12, 13, 14, 15, 16, 17, 18, 19, 20
EXTENDED = 200
STATUS, HANDLE, DATA = 101, 102, 103
FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC = 0x01, 0x02, 0x04, 0x08, 0x10
FX_PERMISSION_DENIED, FX_FAILURE = 3, 4
WRITING = {SETSTAT, FSETSTAT, REMOVE, MKDIR, RMDIR, RENAME, SYMLINK}
READ_ONLY_EXTENSIONS = {b"statvfs@openssh.com", b"fstatvfs@openssh.com", b"limits@openssh.com",
                        b"expand-path@openssh.com", b"home-directory", b"users-groups-by-id@openssh.com"}
MAX_PACKET = 1024 * 1024  # OpenSSH sends at most 256 KiB; anything far larger is not SFTP
MAX_OUT_OF_ORDER = 16 * 1024 * 1024  # bytes held to hash a file in offset order before giving up on its digest


class SFTPProtocolError(Exception):
    """The byte stream is not SFTP (the proxy closes the session)."""


@dataclass
class Transfer:
    """One file opened for upload or download: bytes moved and their SHA-256 in offset order."""

    direction: str  # upload | download
    path: str
    size: int = 0
    refused: str = ""  # why the transfer was cut short (size cap), "" when it was not
    _hash: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    _next: int = 0
    _held: dict[int, bytes] = field(default_factory=dict)
    _held_size: int = 0
    _hash_ok: bool = True

    def feed(self, offset: int, data: bytes) -> None:
        self.size = max(self.size, offset + len(data))
        if not self._hash_ok:
            return
        if offset == self._next:
            self._hash.update(data)
            self._next += len(data)
            while self._next in self._held:
                chunk = self._held.pop(self._next)
                self._held_size -= len(chunk)
                self._hash.update(chunk)
                self._next += len(chunk)
        elif offset > self._next and self._held_size + len(data) <= MAX_OUT_OF_ORDER:
            self._held[offset] = data
            self._held_size += len(data)
        else:  # rewritten or far out of order: the size stays right, the digest cannot be
            self._hash_ok = False
            self._held.clear()

    @property
    def sha256(self) -> str:
        """The file's SHA-256 ("" when it was not written or read in one pass)."""
        return self._hash.hexdigest() if self._hash_ok and not self._held and self._next == self.size else ""


def _string(buf: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(buf):
        raise SFTPProtocolError("truncated string")
    (n,) = struct.unpack_from(">I", buf, at)
    if at + 4 + n > len(buf):
        raise SFTPProtocolError("truncated string")
    return buf[at + 4:at + 4 + n], at + 4 + n


def status_packet(request_id: int, code: int, message: str) -> bytes:
    """An SSH_FXP_STATUS reply."""
    text = message.encode()
    body = struct.pack(">BII", STATUS, request_id, code) + struct.pack(">I", len(text)) + text + struct.pack(">I", 2) + b"en"
    return struct.pack(">I", len(body)) + body


class _Framer:
    """Splits a byte stream into SFTP packets (length-prefixed)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def packets(self, data: bytes) -> list[bytes]:
        """Whole packets (with their length prefix) completed by this data."""
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            (n,) = struct.unpack_from(">I", self._buf, 0)
            if n < 1 or n > MAX_PACKET:
                raise SFTPProtocolError("packet length out of range")
            if len(self._buf) < 4 + n:
                break
            out.append(bytes(self._buf[:4 + n]))
            del self._buf[:4 + n]
        return out


class SFTPFilter:
    """Decides on each client request and observes each host reply of one sftp session."""

    def __init__(self, *, may_upload: bool, may_download: bool, max_upload: int, max_download: int,
                 on_transfer: Callable[[Transfer], None], on_refused: Callable[[str, str, str], None]) -> None:
        self.may_upload = may_upload
        self.may_download = may_download
        self.max_upload = max_upload
        self.max_download = max_download
        self.on_transfer = on_transfer
        self.on_refused = on_refused  # (direction, path, why)
        self._client = _Framer()
        self._host = _Framer()
        self._opening: dict[int, Transfer] = {}  # request id → file being opened
        self._files: dict[bytes, Transfer] = {}  # handle → open file
        self._reads: dict[int, tuple[bytes, int]] = {}  # request id → (handle, offset)

    # ---- client → host -----------------------------------------------------------------------------------
    def from_client(self, data: bytes) -> tuple[bytes, bytes]:
        """(bytes to forward to the host, replies to send straight back to the client)."""
        forward: list[bytes] = []
        replies: list[bytes] = []
        for packet in self._client.packets(data):
            reply = self._request(packet)
            if reply is None:
                forward.append(packet)
            else:
                replies.append(reply)
        return b"".join(forward), b"".join(replies)

    def _refuse(self, request_id: int, direction: str, path: str, why: str, code: int = FX_PERMISSION_DENIED) -> bytes:
        self.on_refused(direction, path, why)
        return status_packet(request_id, code, why)

    def _request(self, packet: bytes) -> bytes | None:
        kind = packet[4]
        if kind == INIT or len(packet) < 9:
            return None
        (request_id,) = struct.unpack_from(">I", packet, 5)
        at = 9
        if kind == OPEN:
            raw, at = _string(packet, at)
            path = raw.decode("utf-8", "replace")
            if at + 4 > len(packet):
                raise SFTPProtocolError("truncated open")
            (flags,) = struct.unpack_from(">I", packet, at)
            writing = bool(flags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC))
            if writing and not self.may_upload:
                return self._refuse(request_id, "upload", path, "upload is not permitted on this host for your account")
            if flags & FXF_READ and not self.may_download:
                return self._refuse(request_id, "download", path, "download is not permitted on this host for your account")
            self._opening[request_id] = Transfer("upload" if writing else "download", path)
        elif kind == WRITE:
            handle, at = _string(packet, at)
            (offset,) = struct.unpack_from(">Q", packet, at)
            data, _ = _string(packet, at + 8)
            transfer = self._files.get(handle)
            if transfer is not None:
                if offset + len(data) > self.max_upload:
                    transfer.refused = f"the file is larger than the upload limit of {self.max_upload} bytes"
                    return self._refuse(request_id, "upload", transfer.path, transfer.refused, FX_FAILURE)
                transfer.feed(offset, data)
        elif kind == READ:
            handle, at = _string(packet, at)
            (offset, length) = struct.unpack_from(">QI", packet, at)
            transfer = self._files.get(handle)
            if transfer is not None:
                if offset >= self.max_download:
                    return self._cap_download(request_id, transfer)
                self._reads[request_id] = (handle, offset)
        elif kind == CLOSE:
            handle, _ = _string(packet, at)
            transfer = self._files.pop(handle, None)
            if transfer is not None:
                self.on_transfer(transfer)
        elif kind in WRITING and not self.may_upload:
            path = _string(packet, at)[0].decode("utf-8", "replace") if kind not in (FSETSTAT,) else ""
            return self._refuse(request_id, "upload", path, "changing files is not permitted on this host for your account")
        elif kind == EXTENDED:
            name, _ = _string(packet, at)
            if name not in READ_ONLY_EXTENSIONS and not self.may_upload:
                return self._refuse(request_id, "upload", "", "changing files is not permitted on this host for your account")
        return None

    def _cap_download(self, request_id: int, transfer: Transfer) -> bytes:
        first = not transfer.refused
        transfer.refused = f"the file is larger than the download limit of {self.max_download} bytes"
        if first:
            self.on_refused("download", transfer.path, transfer.refused)
        return status_packet(request_id, FX_FAILURE, transfer.refused)

    # ---- host → client -----------------------------------------------------------------------------------
    def from_host(self, data: bytes) -> bytes:
        """Observe replies (handles of opened files, data read); returns what goes on to the client (a read
        crossing the download limit is replaced by a failure status)."""
        out: list[bytes] = []
        for packet in self._host.packets(data):
            out.append(packet)
            kind = packet[4]
            if kind == VERSION or len(packet) < 9:
                continue
            (request_id,) = struct.unpack_from(">I", packet, 5)
            if kind == HANDLE:
                transfer = self._opening.pop(request_id, None)
                if transfer is not None:
                    handle, _ = _string(packet, 9)
                    self._files[handle] = transfer
            elif kind == DATA:
                read = self._reads.pop(request_id, None)
                if read is not None and read[0] in self._files:
                    data_read, _ = _string(packet, 9)
                    transfer = self._files[read[0]]
                    if read[1] + len(data_read) > self.max_download:
                        out[-1] = self._cap_download(request_id, transfer)
                    else:
                        transfer.feed(read[1], data_read)
            elif kind == STATUS:
                self._opening.pop(request_id, None)
                self._reads.pop(request_id, None)
        return b"".join(out)

    def finish(self) -> None:
        """The session ended: files still open count as transfers (cut short)."""
        for transfer in self._files.values():
            transfer.refused = transfer.refused or "the session ended before the file was closed"
            self.on_transfer(transfer)
        self._files.clear()
