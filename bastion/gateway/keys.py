"""Users' SSH public keys for the gateway: registered on the Account page, matched by SHA256 fingerprint."""
from __future__ import annotations

import time
from typing import Any

import asyncssh

from .. import validation as v
from ..audit import Audit
from ..errors import Conflict, Invalid, NotFound
from ..store import SSHKey, Store, User

MAX_KEY_TEXT = 16 * 1024
MAX_KEYS_PER_USER = 50
TOUCH_INTERVAL = 60.0  # seconds between writes of a key's last-used time
ALLOWED_ALGORITHMS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
                      "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


def parse_public_key(text: str) -> tuple[str, str]:
    """An OpenSSH public key line → (normalised "type base64" line, SHA256 fingerprint); Invalid in words."""
    line = text.strip()
    if not line or "\n" in line or len(line) > MAX_KEY_TEXT:
        raise Invalid("paste one public key line, as in ~/.ssh/id_ed25519.pub")
    if line.startswith("-----"):
        raise Invalid("this looks like a private key: paste the public key (the .pub file) and keep the private key secret")
    try:
        key = asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError):
        raise Invalid("this is not a readable SSH public key (paste the line from your .pub file)") from None
    algorithm = key.get_algorithm()
    if algorithm not in ALLOWED_ALGORITHMS:
        raise Invalid(f"key type {algorithm[:40]} is not accepted; use ed25519, ECDSA or RSA")
    if algorithm == "ssh-rsa" and getattr(getattr(key, "pyca_key", None), "key_size", 4096) < 2048:
        raise Invalid("RSA keys must have at least 2048 bits")
    normal = key.export_public_key("openssh").decode().split()
    return f"{normal[0]} {normal[1]}", key.get_fingerprint("sha256")


def key_view(key: SSHKey) -> dict[str, Any]:
    """A key as the Account page and the API show it."""
    return {"id": key.id, "name": key.name, "fingerprint": key.fingerprint, "type": key.public_key.split()[0],
            "added_at": key.added_at, "last_used_at": key.last_used_at}


class UserKeys:
    """Add, list and remove a user's gateway keys; find the owner of a key at login."""

    def __init__(self, store: Store, audit: Audit) -> None:
        self.store = store
        self.audit = audit

    async def add(self, user: User, body: dict[str, Any], *, actor: str) -> SSHKey:
        """Register a public key for a user (one key belongs to one account)."""
        v.only_fields(body, ("name", "public_key"))
        name = v.text(body, "name", pattern=v.NAME_RE, rule="must be 1-64 letters, digits, spaces or .:@()+-_")
        line, fingerprint = parse_public_key(v.text(body, "public_key", max_len=MAX_KEY_TEXT))
        if len(await self.store.ssh_keys_of_user(user.id)) >= MAX_KEYS_PER_USER:
            raise Conflict(f"an account may have at most {MAX_KEYS_PER_USER} keys; remove one first")
        key = await self.store.create_ssh_key(SSHKey(user_id=user.id, name=name, public_key=line,
                                                     fingerprint=fingerprint))
        await self.audit.record("ssh_key.added", actor=actor, target=user.username, name=name, fingerprint=fingerprint)
        return key

    async def of_user(self, user: User) -> list[SSHKey]:
        return await self.store.ssh_keys_of_user(user.id)

    async def remove(self, user: User, key_id: str, *, actor: str) -> SSHKey:
        """Remove one of the user's keys (another user's key reads as unknown)."""
        key_id = v.record_id(key_id, "key id")
        keys = {k.id: k for k in await self.store.ssh_keys_of_user(user.id)}
        if key_id not in keys:
            raise NotFound("key not found")
        key = await self.store.delete_ssh_key(key_id)
        await self.audit.record("ssh_key.removed", actor=actor, target=user.username, name=key.name,
                                fingerprint=key.fingerprint)
        return key

    async def owner_of(self, username: str, key: asyncssh.SSHKey) -> tuple[User, SSHKey] | None:
        """The user and record a presented key belongs to, if it is registered to this username."""
        found = await self.store.ssh_key_by_fingerprint(key.get_fingerprint("sha256"))
        if found is None:
            return None
        presented = key.export_public_key("openssh").decode().split()[:2]
        if found.public_key.split()[:2] != presented:
            return None
        user = await self.store.get_user(found.user_id)
        if user is None or user.username != username:
            return None
        return user, found

    async def touch(self, key: SSHKey) -> None:
        """Note a use of the key (at most one write a minute)."""
        if time.time() - key.last_used_at > TOUCH_INTERVAL:
            key.last_used_at = time.time()
            try:
                await self.store.save(key)
            except Conflict:
                pass
