"""The SSH gateway's web side: a user's registered SSH keys and the gateway's address and host key."""
from __future__ import annotations

from bastion.gateway.keys import UserKeys, key_view

from .base import APIHandler, authenticated


class _KeysMixin:
    @property
    def keys(self) -> UserKeys:
        return UserKeys(self.store, self.audit)  # type: ignore[attr-defined]


class SSHKeysHandler(_KeysMixin, APIHandler):
    """/api/me/ssh-keys: the caller's gateway keys."""

    @authenticated
    async def get(self) -> None:
        keys = await self.keys.of_user(self.principal.user)
        self.send({"items": [key_view(k) for k in keys], "total": len(keys)})

    @authenticated
    async def post(self) -> None:
        key = await self.keys.add(self.principal.user, self.body(), actor=self.actor)
        self.send(key_view(key), status=201)


class SSHKeyHandler(_KeysMixin, APIHandler):
    @authenticated
    async def delete(self, key_id: str) -> None:
        await self.keys.remove(self.principal.user, key_id, actor=self.actor)
        self.send({"ok": True})


class GatewayInfoHandler(APIHandler):
    """/api/gateway: where the SSH gateway listens and the host key users pin (enabled: false when off)."""

    @authenticated
    async def get(self) -> None:
        gateway = self.services.gateway
        if gateway is None:
            self.send({"enabled": False})
            return
        self.send({"enabled": True, "address": gateway.address, "port": gateway.port,
                   "fingerprint": gateway.fingerprint, "public_key": gateway.public_key})


default_handlers = [
    (r"/api/me/ssh-keys", SSHKeysHandler),
    (r"/api/me/ssh-keys/([^/]+)", SSHKeyHandler),
    (r"/api/gateway", GatewayInfoHandler),
]
