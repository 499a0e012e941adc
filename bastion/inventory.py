"""Inventory: application categories, credentials (vaulted), hosts and grants; who may open what."""
from __future__ import annotations

import re
from typing import Any

from . import validation as v
from .audit import Audit
from .errors import Invalid, NotFound
from .store import App, Credential, Grant, Host, Store, User
from .vault import Vault

MAX_KEY = 16 * 1024
# One answer for "does not exist" and "exists but is not granted to you", so probing reveals nothing.
HOST_NOT_FOUND = "host not found"


LOCALE_RE = re.compile(r"^(|[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9-]+)?(@[A-Za-z0-9]+)?)$")


class Inventory:
    """Domain operations on the host inventory; handlers pass validated request bodies here."""

    def __init__(self, store: Store, vault: Vault, audit: Audit) -> None:
        self.store = store
        self.vault = vault
        self.audit = audit

    # ---- categories -----------------------------------------------------------------------------
    async def create_app(self, body: dict[str, Any], actor: str) -> App:
        v.only_fields(body, ("name", "description"))
        app = App(name=v.text(body, "name", pattern=v.NAME_RE, rule="must be 1-64 letters, digits, spaces or .:@()+-_"),
                  description=v.text(body, "description", required=False, max_len=500))
        await self.store.create_app(app)
        await self.audit.record("app.created", actor=actor, target=app.name)
        return app

    async def delete_app(self, app_id: str, actor: str) -> None:
        app = await self._app(app_id)
        await self.store.delete_app(app.id)
        await self.audit.record("app.deleted", actor=actor, target=app.name)

    async def _app(self, app_id: str) -> App:
        app = await self.store.get_app(v.record_id(app_id, "app_id"))
        if app is None:
            raise NotFound(f"category {app_id!r} not found")
        return app

    # ---- credentials -------------------------------------------------------------------------------
    async def create_credential(self, body: dict[str, Any], actor: str) -> Credential:
        v.only_fields(body, ("name", "username", "password", "private_key"))
        name = v.text(body, "name", pattern=v.NAME_RE, rule="must be 1-64 letters, digits, spaces or .:@()+-_")
        username = v.text(body, "username", max_len=64, pattern=v.LOGIN_RE,
                          rule="must be a valid login name")
        password = v.text(body, "password", required=False, max_len=1024)
        key = v.text(body, "private_key", required=False, max_len=MAX_KEY)
        if bool(password) == bool(key):
            raise Invalid("give a password or a private key (one of them, not both)")
        if key:
            self._check_private_key(key)
        cred = Credential(name=name, username=username, kind="private_key" if key else "password")
        cred.sealed_secret = self.vault.seal(key or password, f"credential:{cred.id}")
        await self.store.create_credential(cred)
        await self.audit.record("credential.created", actor=actor, target=name, kind=cred.kind)
        return cred

    @staticmethod
    def _check_private_key(key: str) -> None:
        import asyncssh
        try:
            asyncssh.import_private_key(key)
        except (asyncssh.KeyImportError, ValueError):
            raise Invalid("private_key is not a readable unencrypted private key (OpenSSH or PEM)") from None

    def open_secret(self, cred: Credential) -> str:
        return self.vault.open(cred.sealed_secret, f"credential:{cred.id}")

    async def delete_credential(self, cred_id: str, actor: str) -> None:
        cred = await self.store.get_credential(v.record_id(cred_id, "credential_id"))
        if cred is None:
            raise NotFound("credential not found")
        await self.store.delete_credential(cred.id)
        await self.audit.record("credential.deleted", actor=actor, target=cred.name)

    # ---- hosts ----------------------------------------------------------------------------------------
    HOST_FIELDS = ("name", "address", "port", "app_id", "credential_id", "tags", "locale")

    async def _host_fields(self, body: dict[str, Any], partial: bool) -> dict[str, Any]:
        v.only_fields(body, self.HOST_FIELDS)
        out: dict[str, Any] = {}
        if not partial or "name" in body:
            out["name"] = v.text(body, "name", pattern=v.NAME_RE, rule="must be 1-64 letters, digits, spaces or .:@()+-_")
        if not partial or "address" in body:
            out["address"] = v.address(body)
        if not partial or "port" in body:
            out["port"] = v.integer(body, "port", required=False, minimum=1, maximum=65535, default=22)
        if not partial or "app_id" in body:
            out["app_id"] = (await self._app(v.text(body, "app_id"))).id
        if not partial or "credential_id" in body:
            cred_id = v.record_id(v.text(body, "credential_id"), "credential_id")
            if await self.store.get_credential(cred_id) is None:
                raise NotFound(f"credential {cred_id!r} not found")
            out["credential_id"] = cred_id
        if not partial or "tags" in body:
            out["tags"] = v.tags(body)
        if "locale" in body:
            out["locale"] = v.text(body, "locale", required=False, max_len=40, pattern=LOCALE_RE,
                                   rule="must be a locale name such as C.UTF-8 or en_US.UTF-8 (or empty)")
        return out

    async def create_host(self, body: dict[str, Any], actor: str) -> Host:
        host = Host(**await self._host_fields(body, partial=False))
        await self.store.create_host(host)
        # the event's address is the client's; the host's own address goes in the detail
        await self.audit.record("host.created", actor=actor, target=host.name, host=f"{host.address}:{host.port}")
        return host

    async def get_host(self, host_id: str) -> Host:
        host = await self.store.get_host(v.record_id(host_id, "host id"))
        if host is None:
            raise NotFound(HOST_NOT_FOUND)
        return host

    async def openable_host(self, user: User, host_id: str, *, address: str = "", purpose: str = "terminal") -> Host:
        """A host the user may open; unknown and not granted give the same NotFound, audited (rate-limited)."""
        try:
            host = await self.get_host(host_id)
            if not await self.may_open(user, host):
                raise NotFound(HOST_NOT_FOUND)
        except (NotFound, Invalid) as exc:
            await self.audit.record_limited("session.refused", address or user.username, actor=user.username,
                                            address=address, why=exc.message, purpose=purpose,
                                            host_id=host_id[:64] if isinstance(host_id, str) else "")
            raise
        return host

    async def update_host(self, host_id: str, body: dict[str, Any], actor: str) -> Host:
        host = await self.get_host(host_id)
        changes = await self._host_fields(body, partial=True)
        if not changes:
            raise Invalid("nothing to change")
        if "address" in changes or "port" in changes:
            # A new endpoint is a new machine as far as key pinning goes.
            if (changes.get("address", host.address), changes.get("port", host.port)) != (host.address, host.port):
                host.host_key = host.host_key_fingerprint = host.offered_key = host.offered_key_fingerprint = ""
        for name, value in changes.items():
            setattr(host, name, value)
        await self.store.save(host)
        await self.audit.record("host.updated", actor=actor, target=host.name, fields=sorted(changes))
        return host

    async def delete_host(self, host_id: str, actor: str) -> None:
        host = await self.get_host(host_id)
        await self.store.delete_host(host.id)
        await self.audit.record("host.deleted", actor=actor, target=host.name)

    async def accept_offered_key(self, host_id: str, actor: str) -> Host:
        host = await self.get_host(host_id)
        if not host.offered_key:
            raise Invalid("this host has no new key waiting to be accepted")
        old = host.host_key_fingerprint
        host.host_key, host.host_key_fingerprint = host.offered_key, host.offered_key_fingerprint
        host.offered_key = host.offered_key_fingerprint = ""
        await self.store.save(host)
        await self.audit.record("host.key_accepted", actor=actor, target=host.name, old=old, new=host.host_key_fingerprint)
        return host

    # ---- grants ------------------------------------------------------------------------------------------
    async def create_grant(self, body: dict[str, Any], actor: str) -> Grant:
        v.only_fields(body, ("user_id", "app_id", "host_id", "upload", "download"))
        user_id = v.record_id(v.text(body, "user_id"), "user_id")
        app_id = v.text(body, "app_id", required=False)
        host_id = v.text(body, "host_id", required=False)
        if bool(app_id) == bool(host_id):
            raise Invalid("choose a category or a host (one of them, not both)")
        user = await self.store.get_user(user_id)
        if user is None:
            raise NotFound(f"user {user_id!r} not found")
        target = (await self._app(app_id)).name if app_id else (await self.get_host(host_id)).name
        grant = await self.store.create_grant(Grant(user_id=user_id, app_id=app_id, host_id=host_id,
                                                    upload=v.boolean(body, "upload"), download=v.boolean(body, "download")))
        await self.audit.record("grant.created", actor=actor, target=user.username, to=target, upload=grant.upload,
                                download=grant.download)
        return grant

    async def delete_grant(self, grant_id: str, actor: str) -> Grant:
        grant = await self.store.get_grant(v.record_id(grant_id, "grant id"))
        if grant is None:
            raise NotFound("grant not found")
        await self.store.delete_grant(grant.id)
        user = await self.store.get_user(grant.user_id)
        await self.audit.record("grant.deleted", actor=actor, target=user.username if user else grant.user_id,
                                app_id=grant.app_id, host_id=grant.host_id)
        return grant

    async def may_open(self, user: User, host: Host) -> bool:
        """Grants decide, for every role: admins grant themselves what they need."""
        return granted(await self.store.grants_of_user(user.id), host)

    async def may_open_all(self, user: User, hosts: list[Host]) -> bool:
        """`may_open` for every one of many hosts (a fleet run) with one read of the grants; keep the two in step."""
        grants = await self.store.grants_of_user(user.id)
        return all(granted(grants, host) for host in hosts)

    async def hosts_for(self, user: User) -> list[Host]:
        """The hosts a user may open, sorted by name."""
        grants = await self.store.grants_of_user(user.id)
        app_ids = {g.app_id for g in grants if g.app_id}
        host_ids = {g.host_id for g in grants if g.host_id}
        return [h for h in await self.store.all_hosts() if h.id in host_ids or h.app_id in app_ids]


def granted(grants: list[Grant], host: Host) -> bool:
    """Whether one of these grants (of one user) covers the host, directly or through its category."""
    return any(g.host_id == host.id or (g.app_id and g.app_id == host.app_id) for g in grants)
