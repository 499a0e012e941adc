"""The SSH gateway's web side: a user's registered SSH keys and the gateway's address and host key."""
from __future__ import annotations

import tornado.web

from bastion.gateway.files import HostFiles, Upload
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
                   "fingerprint": gateway.fingerprint, "public_key": gateway.public_key,
                   "cert_authority": gateway.cert_authority})


class _FilesMixin:
    read_scope = "terminal"  # files on a host are terminal-grade access for an API token
    write_scope = "terminal"

    @property
    def files(self) -> HostFiles:
        return HostFiles(self.services)  # type: ignore[attr-defined]

    def session_arg(self) -> str:
        return (self.get_query_argument("session", "") or "")[:64]  # type: ignore[attr-defined]


class HostFilesHandler(_FilesMixin, APIHandler):
    """/api/hosts/<id>/files?path=: a directory listing for the file panel."""

    @authenticated
    async def get(self, host_id: str) -> None:
        self.send(await self.files.listing(self.principal.user, host_id, self.get_query_argument("path", ""),
                                           self.client_address))


@tornado.web.stream_request_body
class HostFileHandler(_FilesMixin, APIHandler):
    """/api/hosts/<id>/file?path=&session=: GET downloads, PUT uploads the request body (streamed, capped)."""

    upload: Upload | None = None

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method != "PUT":
            return
        # checked before a byte of the body is read: a refused upload never reaches the host
        self.require_access(())
        self.request.connection.set_max_body_size(self.config.gateway.max_upload_bytes)
        self.upload = await self.files.begin_upload(self.principal.user, self.path_args[0],
                                                    self.get_query_argument("path", ""), self.client_address)

    async def data_received(self, chunk: bytes) -> None:
        if self.upload is not None:
            await self.upload.write(chunk)

    def on_connection_close(self) -> None:
        if self.upload is not None:
            self.upload.abort()

    @authenticated
    async def put(self, host_id: str) -> None:
        if self.upload is None:
            return
        transfer = await self.upload.finish(self.session_arg())
        self.upload = None
        self.send({"path": transfer.path, "size": transfer.size, "sha256": transfer.sha256}, status=201)

    @authenticated
    async def get(self, host_id: str) -> None:
        def start(name: str, size: int) -> None:
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:200] or "download"
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Disposition", f'attachment; filename="{safe}"')
            self.set_header("Content-Length", str(size))

        async def write(chunk: bytes) -> None:
            self.write(chunk)
            await self.flush()

        await self.files.download(self.principal.user, host_id, self.get_query_argument("path", ""),
                                  self.client_address, self.session_arg(), start, write)
        self.finish()


default_handlers = [
    (r"/api/me/ssh-keys", SSHKeysHandler),
    (r"/api/me/ssh-keys/([^/]+)", SSHKeyHandler),
    (r"/api/gateway", GatewayInfoHandler),
    (r"/api/hosts/([^/]+)/files", HostFilesHandler),
    (r"/api/hosts/([^/]+)/file", HostFileHandler),
]
