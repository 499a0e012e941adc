"""LDAP / Active Directory: find the user with the service account, bind as the user, read their groups.

ldap3 is synchronous: every call runs in the SSO service's own bounded thread pool with connect and receive
timeouts, and the loop also bounds the wait, so a directory that hangs never stalls Bastion. Usernames are
validated before they reach the directory and escaped where they are placed in a filter.
"""
from __future__ import annotations

import asyncio
import logging
import math
import ssl
from concurrent.futures import Executor
from dataclasses import dataclass

from ldap3 import BASE, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars

from ..errors import Unauthenticated, Unavailable
from .settings import LdapDirectory

log = logging.getLogger(__name__)


class DirectoryRefused(Unauthenticated):
    """The directory said no: wrong password, unknown or disabled entry."""


@dataclass(frozen=True)
class DirectoryEntry:
    """A user as the directory shows them."""

    dn: str
    username: str
    groups: frozenset[str]  # lower-cased group names and DNs
    enabled: bool


class LdapClient:
    """One directory; every method that touches the network runs in `executor`."""

    def __init__(self, directory: LdapDirectory, executor: Executor, timeout: float) -> None:
        self.directory = directory
        self.executor = executor
        self.timeout = timeout
        self._whole_seconds = max(1, math.ceil(timeout))  # ldap3 packs its socket timeouts as whole seconds

    def _server(self) -> Server:
        d = self.directory
        tls = None
        if d.ldaps or d.start_tls:
            tls = Tls(validate=ssl.CERT_REQUIRED, version=ssl.PROTOCOL_TLS_CLIENT, ca_certs_file=d.ca_file or None)
        return Server(d.host, port=d.port, use_ssl=d.ldaps, tls=tls, get_info=NONE, connect_timeout=self._whole_seconds)

    def _connect(self, user: str, password: str) -> Connection:
        """An open, secured connection bound as `user` (raises DirectoryRefused on bad credentials)."""
        conn = Connection(self._server(), user=user, password=password, receive_timeout=self._whole_seconds,
                          raise_exceptions=False, read_only=True, auto_referrals=False)
        try:
            conn.open()
            if self.directory.start_tls and not self.directory.ldaps:
                if not conn.start_tls():
                    raise LDAPStartTLSError("StartTLS refused")
            if not password or not conn.bind():  # an empty password is an anonymous bind: never a login
                conn.unbind()
                raise DirectoryRefused("wrong username or password")
        except DirectoryRefused:
            raise
        except (LDAPException, OSError, ssl.SSLError) as exc:
            try:
                conn.unbind()
            except Exception:  # noqa: BLE001 - the connection is already broken; the cause below is what matters
                pass
            log.warning("directory %s: %s: %s", self.directory.name, type(exc).__name__, exc)
            raise Unavailable(_unreachable(self.directory, exc)) from None
        return conn

    def _find_sync(self, conn: Connection, username: str) -> DirectoryEntry | None:
        d = self.directory
        user_filter = d.user_filter.replace("{username}", escape_filter_chars(username))
        if not conn.search(d.user_base, user_filter, SUBTREE, attributes=[], size_limit=2, time_limit=self._whole_seconds):
            return None
        entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        if len(entries) != 1:
            return None  # unknown, or ambiguous: never guess which entry someone is
        dn = entries[0]["dn"]
        enabled = True
        if d.enabled_filter:
            enabled = bool(conn.search(dn, d.enabled_filter, BASE, attributes=[], time_limit=self._whole_seconds)
                           and any(e.get("type") == "searchResEntry" for e in conn.response or []))
        groups: set[str] = set()
        group_filter = d.group_filter.replace("{user_dn}", escape_filter_chars(dn))
        if d.group_base and conn.search(d.group_base, group_filter, SUBTREE, attributes=[d.group_name_attribute],
                                        time_limit=self._whole_seconds):
            for e in conn.response or []:
                if e.get("type") != "searchResEntry":
                    continue
                groups.add(e["dn"].lower())
                names = e.get("attributes", {}).get(d.group_name_attribute) or []
                for name in names if isinstance(names, list) else [names]:
                    groups.add(str(name).lower())
        return DirectoryEntry(dn=dn, username=username, groups=frozenset(groups), enabled=enabled)

    def _check_result(self, conn: Connection) -> None:
        """A search that failed for another reason than "no such entry" is the directory's trouble, not the user's."""
        result = conn.result or {}
        if result.get("result") not in (0, 32, 4, None):  # success, noSuchObject, sizeLimitExceeded
            raise Unavailable(f"the directory {self.directory.label} answered with an error: {result.get('description', 'unknown')}")

    def _service(self) -> Connection:
        """A connection bound as the service account (its refusal is the deployment's problem, not the user's)."""
        try:
            return self._connect(self.directory.bind_dn, self.directory.bind_password)
        except DirectoryRefused:
            log.error("directory %s: the service account %s was refused", self.directory.name, self.directory.bind_dn)
            raise Unavailable(f"the directory {self.directory.label} refused Bastion's service account; "
                              "tell an administrator") from None

    def _authenticate_sync(self, username: str, password: str) -> DirectoryEntry:
        service = self._service()
        try:
            entry = self._find_sync(service, username)
            self._check_result(service)
        finally:
            service.unbind()
        if entry is None:
            raise DirectoryRefused("wrong username or password")
        self._connect(entry.dn, password).unbind()  # bind as the user: the directory checks the password
        if not entry.enabled:
            raise DirectoryRefused("this account is disabled in the directory")
        return entry

    def _lookup_sync(self, username: str) -> DirectoryEntry | None:
        service = self._service()
        try:
            entry = self._find_sync(service, username)
            self._check_result(service)
            return entry
        finally:
            service.unbind()

    async def _run(self, fn, *args):  # noqa: ANN001, ANN202 - a thin executor wrapper
        loop = asyncio.get_running_loop()
        try:
            # the thread has its own timeouts; this bound keeps the loop's caller honest even if they fail
            return await asyncio.wait_for(loop.run_in_executor(self.executor, fn, *args), self._whole_seconds * 4 + 1)
        except asyncio.TimeoutError:
            raise Unavailable(f"the directory {self.directory.label} did not answer in time") from None

    async def authenticate(self, username: str, password: str) -> DirectoryEntry:
        """Bind as the user; their entry with groups. DirectoryRefused or Unavailable otherwise."""
        return await self._run(self._authenticate_sync, username, password)

    async def lookup(self, username: str) -> DirectoryEntry | None:
        """The user's entry now (service account), None when it is gone (the periodic re-check)."""
        return await self._run(self._lookup_sync, username)


def _unreachable(d: LdapDirectory, exc: BaseException) -> str:
    text = str(exc).lower()
    if "certificate" in text or isinstance(exc, ssl.SSLError):
        return f"the directory {d.label} presented a certificate Bastion does not trust"
    if isinstance(exc, LDAPStartTLSError) or "starttls" in text or "start_tls" in text:
        return f"the directory {d.label} refused StartTLS"
    if "timed out" in text or "timeout" in text:
        return f"the directory {d.label} did not answer in time"
    return f"the directory {d.label} cannot be reached"
