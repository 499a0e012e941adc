"""Host-key trust, in one place for terminals and module runs: trust on first use, then pinned."""
from __future__ import annotations

import logging

from .audit import Audit
from .errors import Conflict
from .ssh import fingerprint
from .store import Host, Store

log = logging.getLogger(__name__)


class HostKeyTrust:
    """Pins a host's first key and records a different key offered later (an admin accepts it)."""

    def __init__(self, store: Store, audit: Audit) -> None:
        self.store = store
        self.audit = audit

    async def pin(self, host: Host, key_line: str, username: str) -> None:
        """First contact: pin the key the host offered (a concurrent pin by another session wins)."""
        current = await self.store.get_host(host.id)
        if current is None or current.host_key or not key_line:
            return
        current.host_key, current.host_key_fingerprint = key_line, fingerprint(key_line)
        try:
            await self.store.save(current)
        except Conflict:
            return
        await self.audit.record("host.key_pinned", actor=username, target=host.name,
                                fingerprint=current.host_key_fingerprint)

    async def mismatch(self, host: Host, offered: str, username: str) -> None:
        """The host offered another key: remember it for an admin to review, audit the refusal."""
        current = await self.store.get_host(host.id)
        if current is None:
            return
        if offered and current.offered_key != offered:
            current.offered_key, current.offered_key_fingerprint = offered, fingerprint(offered)
            try:
                await self.store.save(current)
            except Conflict:
                pass
        await self.audit.record("host.key_mismatch", actor=username, target=host.name, ok=False,
                                pinned=current.host_key_fingerprint, offered=current.offered_key_fingerprint)
