"""The Store interface: one method per query the app needs, on top of a few backend primitives.

Backends (SQLite, MongoDB) implement only the primitives (`_insert`, `_get`, `_find`, `_count`,
`_replace`, `_delete`, `_delete_where`). Primitives take field names from this code only (checked
against FIELD_RE) and plain scalar values, so nothing from a request can become a query operator.
"""
from __future__ import annotations

import abc
import re
import time
from dataclasses import dataclass, field
from typing import Any, Sequence, TypeVar

from ..errors import Conflict, Invalid, NotFound
from .records import (AccessLock, AccessRequest, ApiToken, App, Cluster, Command, CommandRule, Credential, Event, Failure,
                      Grant, Host, Login, LoginRule, ModuleState, Node, Passkey, PasskeyChallenge, PodGrant, Record, Run,
                      SeenEnvelope, Session, Setting, SSHKey, SsoState, User)

R = TypeVar("R", bound=Record)
FIELD_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
SCALARS = (str, int, float, bool, type(None))


@dataclass
class Query:
    """A backend-neutral query: equality, half-open ranges, substring, sort and paging."""

    eq: dict[str, Any] = field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    contains: tuple[str, str] | None = None  # (field, text): case-insensitive substring
    sort: tuple[str, bool] = ("id", False)  # (field, descending)
    limit: int = 0
    offset: int = 0

    def check(self) -> None:
        names = list(self.eq) + list(self.ranges) + [self.sort[0]] + ([self.contains[0]] if self.contains else [])
        for name in names:
            if not FIELD_RE.match(name):
                raise ValueError(f"bad field name {name!r}")
        for value in self.eq.values():
            if not isinstance(value, SCALARS):
                raise ValueError("query values must be scalars")
        for lo, hi in self.ranges.values():
            for v in (lo, hi):
                if v is not None and not isinstance(v, (int, float)):
                    raise ValueError("range bounds must be numbers")
        if self.contains and not isinstance(self.contains[1], str):
            raise ValueError("contains text must be a string")


@dataclass
class Page:
    """One page of a list: items and the total matching count."""

    items: list[Any]
    total: int


class Store(abc.ABC):
    """Metadata storage. Subclasses implement the primitives; domain methods are shared."""

    url_for_display: str = ""

    # ---- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, check the database answers, create/migrate the schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the connection."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise Unavailable if the database does not answer."""

    # ---- primitives --------------------------------------------------------------------------
    @abc.abstractmethod
    async def _insert(self, collection: str, doc: dict[str, Any]) -> None:
        """Insert; raise Conflict naming the field on a unique-key clash."""

    @abc.abstractmethod
    async def _get(self, collection: str, id: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def _find(self, collection: str, query: Query) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def _count(self, collection: str, query: Query) -> int: ...

    @abc.abstractmethod
    async def _replace(self, collection: str, doc: dict[str, Any], expected_version: int) -> bool:
        """Replace the whole document if its version is still expected_version."""

    @abc.abstractmethod
    async def _delete(self, collection: str, id: str) -> bool: ...

    @abc.abstractmethod
    async def _delete_where(self, collection: str, query: Query) -> int: ...

    # ---- generic helpers ---------------------------------------------------------------------
    async def _create(self, record: R) -> R:
        await self._insert(record.collection, record.to_doc())
        return record

    async def _load(self, cls: type[R], id: str) -> R | None:
        if not isinstance(id, str) or not id or len(id) > 128:
            return None
        doc = await self._get(cls.collection, id)
        return cls.from_doc(doc) if doc else None

    async def _must(self, cls: type[R], id: str, what: str) -> R:
        record = await self._load(cls, id)
        if record is None:
            raise NotFound(f"{what} {id!r} not found" if isinstance(id, str) and len(id) <= 64 else f"{what} not found")
        return record

    async def _query(self, cls: type[R], query: Query) -> list[R]:
        query.check()
        return [cls.from_doc(d) for d in await self._find(cls.collection, query)]

    async def _page(self, cls: type[R], query: Query) -> Page:
        query.check()
        total = await self._count(cls.collection, query)
        items = [cls.from_doc(d) for d in await self._find(cls.collection, query)]
        return Page(items, total)

    async def save(self, record: R) -> R:
        """Write back a changed record (whole document, optimistic version check)."""
        expected = record.version
        record.version = expected + 1
        if not await self._replace(record.collection, record.to_doc(), expected):
            record.version = expected
            raise Conflict(f"{record.collection[:-1]} was changed by someone else; reload and retry")
        return record

    # ---- users ---------------------------------------------------------------------------------
    async def create_user(self, user: User) -> User:
        return await self._create(user)

    async def get_user(self, id: str) -> User | None:
        return await self._load(User, id)

    async def get_user_by_name(self, username: str) -> User | None:
        found = await self._query(User, Query(eq={"username": username}, limit=1))
        return found[0] if found else None

    async def list_users(self, limit: int = 100, offset: int = 0) -> Page:
        return await self._page(User, Query(sort=("username", False), limit=limit, offset=offset))

    async def count_users(self) -> int:
        return await self._count(User.collection, Query())

    # ---- apps (application categories) ---------------------------------------------------------
    async def create_app(self, app: App) -> App:
        return await self._create(app)

    async def get_app(self, id: str) -> App | None:
        return await self._load(App, id)

    async def list_apps(self, limit: int = 100, offset: int = 0) -> Page:
        return await self._page(App, Query(sort=("name", False), limit=limit, offset=offset))

    async def delete_app(self, id: str) -> None:
        await self._must(App, id, "category")
        if await self._count(Host.collection, Query(eq={"app_id": id})):
            raise Conflict("category still has hosts; move or delete them first")
        await self._delete_where(Grant.collection, Query(eq={"app_id": id}))
        await self._delete(App.collection, id)

    # ---- credentials -----------------------------------------------------------------------------
    async def create_credential(self, cred: Credential) -> Credential:
        return await self._create(cred)

    async def get_credential(self, id: str) -> Credential | None:
        return await self._load(Credential, id)

    async def list_credentials(self, limit: int = 100, offset: int = 0) -> Page:
        return await self._page(Credential, Query(sort=("name", False), limit=limit, offset=offset))

    async def delete_credential(self, id: str) -> None:
        await self._must(Credential, id, "credential")
        if await self._count(Host.collection, Query(eq={"credential_id": id})):
            raise Conflict("credential is still used by hosts")
        await self._delete(Credential.collection, id)

    # ---- hosts -------------------------------------------------------------------------------------
    async def create_host(self, host: Host) -> Host:
        return await self._create(host)

    async def get_host(self, id: str) -> Host | None:
        return await self._load(Host, id)

    async def list_hosts(self, app_id: str | None = None, limit: int = 100, offset: int = 0) -> Page:
        eq = {"app_id": app_id} if app_id else {}
        return await self._page(Host, Query(eq=eq, sort=("name", False), limit=limit, offset=offset))

    async def all_hosts(self) -> list[Host]:
        return await self._query(Host, Query(sort=("name", False)))

    async def delete_host(self, id: str) -> None:
        await self._must(Host, id, "host")
        await self._delete_where(Grant.collection, Query(eq={"host_id": id}))
        await self._delete(Host.collection, id)

    # ---- grants --------------------------------------------------------------------------------------
    async def create_grant(self, grant: Grant) -> Grant:
        grant.key = f"{grant.user_id}/{grant.app_id}/{grant.host_id}"
        try:
            return await self._create(grant)
        except Conflict:
            raise Conflict("this grant already exists") from None

    async def get_grant(self, id: str) -> Grant | None:
        return await self._load(Grant, id)

    async def list_grants(self, user_id: str | None = None, limit: int = 100, offset: int = 0) -> Page:
        eq = {"user_id": user_id} if user_id else {}
        return await self._page(Grant, Query(eq=eq, sort=("created_at", False), limit=limit, offset=offset))

    async def grants_of_user(self, user_id: str) -> list[Grant]:
        return await self._query(Grant, Query(eq={"user_id": user_id}))

    async def delete_grant(self, id: str) -> Grant:
        grant = await self._must(Grant, id, "grant")
        await self._delete(Grant.collection, id)
        return grant

    # ---- api tokens -----------------------------------------------------------------------------------
    async def create_token(self, token: ApiToken) -> ApiToken:
        return await self._create(token)

    async def get_token(self, id: str) -> ApiToken | None:
        return await self._load(ApiToken, id)

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        return await self._query(ApiToken, Query(eq={"user_id": user_id}, sort=("created_at", False)))

    async def delete_token(self, id: str) -> bool:
        return await self._delete(ApiToken.collection, id)

    # ---- logins (browser sessions) --------------------------------------------------------------------
    async def create_login(self, login: Login) -> Login:
        return await self._create(login)

    async def get_login(self, id: str) -> Login | None:
        return await self._load(Login, id)

    async def delete_login(self, id: str) -> None:
        await self._delete(Login.collection, id)

    async def logins_of_user(self, user_id: str) -> list[Login]:
        return await self._query(Login, Query(eq={"user_id": user_id}, sort=("created_at", False)))

    async def delete_logins_of_user(self, user_id: str) -> int:
        return await self._delete_where(Login.collection, Query(eq={"user_id": user_id}))

    async def purge_expired_logins(self, now: float | None = None) -> int:
        return await self._delete_where(Login.collection, Query(ranges={"expires_at": (None, now or time.time())}))

    # ---- failed-login counters ------------------------------------------------------------------------
    async def get_failure(self, key: str) -> Failure | None:
        return await self._load(Failure, key)

    async def put_failure(self, failure: Failure) -> Failure:
        """Create or update a counter (retries once on a concurrent change)."""
        if failure.version == 0:
            try:
                failure.version = 1
                return await self._create(failure)
            except Conflict:
                failure.version = 0
                raise
        return await self.save(failure)

    async def delete_failure(self, key: str) -> None:
        await self._delete(Failure.collection, key)

    async def list_locked(self, now: float | None = None) -> list[Failure]:
        return await self._query(Failure, Query(ranges={"locked_until": (now or time.time(), None)}))

    # ---- audit events ------------------------------------------------------------------------------------
    async def add_event(self, event: Event) -> Event:
        return await self._create(event)

    async def list_events(self, action: str | None = None, actor: str | None = None,
                          since: float | None = None, until: float | None = None,
                          limit: int = 50, offset: int = 0) -> Page:
        eq: dict[str, Any] = {}
        if action:
            eq["action"] = action
        if actor:
            eq["actor"] = actor
        ranges = {"ts": (since, until)} if since or until else {}
        return await self._page(Event, Query(eq=eq, ranges=ranges, sort=("ts", True), limit=limit, offset=offset))

    # ---- terminal sessions -----------------------------------------------------------------------------
    async def create_session(self, session: Session) -> Session:
        return await self._create(session)

    async def get_session(self, id: str) -> Session | None:
        return await self._load(Session, id)

    async def list_sessions(self, live: bool | None = None, user_id: str | None = None,
                            host_id: str | None = None, end_reason: str | None = None,
                            since: float | None = None, until: float | None = None,
                            limit: int = 50, offset: int = 0) -> Page:
        eq: dict[str, Any] = {}
        if live is not None:
            eq["live"] = live
        if user_id:
            eq["user_id"] = user_id
        if host_id:
            eq["host_id"] = host_id
        if end_reason:
            eq["end_reason"] = end_reason
        ranges = {"started_at": (since, until)} if since or until else {}
        return await self._page(Session, Query(eq=eq, ranges=ranges, sort=("started_at", True), limit=limit, offset=offset))

    async def live_sessions_of_node(self, node: str) -> list[Session]:
        return await self._query(Session, Query(eq={"live": True, "node": node}))

    async def end_session(self, session: Session, reason: str, *, ended_by: str = "", note: str = "",
                          size: int = 0, sha256: str = "", bytes_out: int = 0, chain: str = "",
                          ended_at: float = 0.0) -> Session:
        """Mark a session ended (whole-document write; idempotent when already ended)."""
        for _ in range(3):
            current = await self._load(Session, session.id) or session
            if not current.live:
                return current
            current.live = False
            current.ended_at = ended_at or time.time()
            current.end_reason = reason
            current.ended_by = ended_by
            current.reason = note
            current.recording_size = size
            current.recording_sha256 = sha256
            current.recording_chain = chain
            current.bytes_out = bytes_out or current.bytes_out
            try:
                return await self.save(current)
            except Conflict:
                continue
        raise Conflict("session could not be ended: concurrent updates")

    async def sessions_started_before(self, until: float, limit: int = 500) -> list[Session]:
        return await self._query(Session, Query(eq={"live": False}, ranges={"started_at": (None, until)},
                                                sort=("started_at", False), limit=limit))

    # ---- commands and command rules --------------------------------------------------------------------
    async def add_command(self, command: Command) -> Command:
        return await self._create(command)

    async def commands_of_session(self, session_id: str, limit: int = 5000) -> list[Command]:
        return await self._query(Command, Query(eq={"session_id": session_id}, sort=("ts", False), limit=limit))

    async def search_commands(self, text: str | None = None, user_id: str | None = None, host_id: str | None = None,
                              blocked: bool | None = None, since: float | None = None, until: float | None = None,
                              limit: int = 50, offset: int = 0) -> Page:
        eq: dict[str, Any] = {}
        if user_id:
            eq["user_id"] = user_id
        if host_id:
            eq["host_id"] = host_id
        if blocked is not None:
            eq["blocked"] = blocked
        ranges = {"ts": (since, until)} if since or until else {}
        return await self._page(Command, Query(eq=eq, ranges=ranges, contains=("text", text) if text else None,
                                               sort=("ts", True), limit=limit, offset=offset))

    async def create_rule(self, rule: CommandRule) -> CommandRule:
        return await self._create(rule)

    async def list_rules(self) -> list[CommandRule]:
        return await self._query(CommandRule, Query(sort=("priority", False)))

    async def delete_rule(self, id: str) -> CommandRule:
        rule = await self._must(CommandRule, id, "rule")
        await self._delete(CommandRule.collection, id)
        return rule

    # ---- modules, runs, envelope replay guard --------------------------------------------------------
    async def get_module(self, id: str) -> ModuleState | None:
        return await self._load(ModuleState, id)

    async def list_modules(self) -> list[ModuleState]:
        return await self._query(ModuleState, Query(sort=("id", False)))

    async def put_module(self, module: ModuleState) -> ModuleState:
        """Create or replace a module's registry entry."""
        if module.version == 0:
            try:
                return await self._create(module)
            except Conflict:
                current = await self._load(ModuleState, module.id)
                if current is None:
                    raise
                module.version = current.version
        return await self.save(module)

    async def create_run(self, run: Run) -> Run:
        return await self._create(run)

    async def get_run(self, id: str) -> Run | None:
        return await self._load(Run, id)

    async def list_runs(self, user_id: str | None = None, module_id: str | None = None, status: str | None = None,
                        limit: int = 50, offset: int = 0) -> Page:
        eq: dict[str, Any] = {}
        if user_id:
            eq["user_id"] = user_id
        if module_id:
            eq["module_id"] = module_id
        if status:
            eq["status"] = status
        return await self._page(Run, Query(eq=eq, sort=("created_at", True), limit=limit, offset=offset))

    async def remember_envelope(self, envelope_id: str, expires_at: float) -> bool:
        """Record an envelope id; False if it was seen before (a replay)."""
        try:
            await self._create(SeenEnvelope(id=envelope_id, expires_at=expires_at))
            return True
        except Conflict:
            return False

    async def forget_envelopes(self, before: float) -> int:
        return await self._delete_where(SeenEnvelope.collection, Query(ranges={"expires_at": (None, before)}))

    async def interrupt_session(self, session: Session) -> bool:
        """Mark a dead node's session interrupted; True only for the one caller whose write won."""
        current = await self._load(Session, session.id)
        if current is None or not current.live:
            return False
        current.live, current.ended_at, current.end_reason = False, time.time(), "interrupted"
        current.reason = f"node {current.node} stopped answering"
        try:
            await self.save(current)
        except Conflict:
            return False
        return True

    # ---- access locks ("end and lock") ---------------------------------------------------------------------
    async def create_lock(self, lock: AccessLock) -> AccessLock:
        return await self._create(lock)

    async def list_locks(self, now: float | None = None) -> list[AccessLock]:
        """Locks still in force, soonest to expire first."""
        return await self._query(AccessLock, Query(ranges={"until": (now or time.time(), None)}, sort=("until", False)))

    async def locks_of_user(self, user_id: str, now: float | None = None) -> list[AccessLock]:
        """The locks in force on a user now."""
        return await self._query(AccessLock, Query(eq={"user_id": user_id}, ranges={"until": (now or time.time(), None)}))

    async def active_lock(self, user_id: str, host_id: str, now: float | None = None) -> AccessLock | None:
        """The lock keeping a user out of a host now (a lock on every host counts), or None."""
        for lock in await self.locks_of_user(user_id, now):
            if lock.host_id in ("", host_id):
                return lock
        return None

    async def purge_expired_locks(self, now: float | None = None) -> int:
        return await self._delete_where(AccessLock.collection, Query(ranges={"until": (None, now or time.time())}))

    async def delete_lock(self, id: str) -> AccessLock:
        lock = await self._must(AccessLock, id, "lock")
        await self._delete(AccessLock.collection, id)
        return lock

    # ---- nodes ----------------------------------------------------------------------------------------------
    async def heartbeat(self, node_id: str) -> None:
        node = await self._load(Node, node_id)
        if node is None:
            try:
                await self._create(Node(id=node_id))
            except Conflict:
                pass
            return
        node.heartbeat_at = time.time()
        try:
            await self.save(node)
        except Conflict:
            pass

    async def list_nodes(self) -> list[Node]:
        return await self._query(Node, Query(sort=("id", False)))

    # ---- settings (named values) -----------------------------------------------------------------------------
    async def get_setting(self, name: str) -> Setting | None:
        return await self._load(Setting, name)

    async def create_setting(self, name: str, value: str) -> Setting:
        """Store a value once; Conflict if it exists (the first node to start wins)."""
        return await self._create(Setting(id=name, value=value))

    # ---- login rules -----------------------------------------------------------------------------------------
    async def create_login_rule(self, rule: LoginRule) -> LoginRule:
        return await self._create(rule)

    async def get_login_rule(self, id: str) -> LoginRule | None:
        return await self._load(LoginRule, id)

    async def list_login_rules(self) -> list[LoginRule]:
        """Every rule in evaluation order (priority, then creation)."""
        rules = await self._query(LoginRule, Query(sort=("priority", False)))
        return sorted(rules, key=lambda r: (r.priority, r.created_at, r.id))

    async def delete_login_rule(self, id: str) -> LoginRule:
        rule = await self._must(LoginRule, id, "login rule")
        await self._delete(LoginRule.collection, id)
        return rule

    # ---- Kubernetes clusters and pod grants -----------------------------------------------------------------
    async def create_cluster(self, cluster: Cluster) -> Cluster:
        return await self._create(cluster)

    async def get_cluster(self, id: str) -> Cluster | None:
        return await self._load(Cluster, id)

    async def list_clusters(self) -> list[Cluster]:
        return await self._query(Cluster, Query(sort=("name", False)))

    async def delete_cluster(self, id: str) -> None:
        """Delete a cluster and the pod grants on it."""
        await self._must(Cluster, id, "cluster")
        await self._delete_where(PodGrant.collection, Query(eq={"cluster_id": id}))
        await self._delete(Cluster.collection, id)

    async def create_pod_grant(self, grant: PodGrant) -> PodGrant:
        grant.key = f"{grant.user_id}/{grant.cluster_id}/{grant.namespace}/{grant.selector}"
        try:
            return await self._create(grant)
        except Conflict:
            raise Conflict("this grant already exists") from None

    async def get_pod_grant(self, id: str) -> PodGrant | None:
        return await self._load(PodGrant, id)

    async def list_pod_grants(self) -> list[PodGrant]:
        return await self._query(PodGrant, Query(sort=("created_at", False)))

    async def pod_grants_of_user(self, user_id: str) -> list[PodGrant]:
        return await self._query(PodGrant, Query(eq={"user_id": user_id}))

    async def delete_pod_grant(self, id: str) -> PodGrant:
        grant = await self._must(PodGrant, id, "grant")
        await self._delete(PodGrant.collection, id)
        return grant
    # ---- editing from the UI (issue 13): single lookups and deleting a user --------------------------------
    async def get_event(self, id: str) -> Event | None:
        return await self._load(Event, id)

    async def get_rule(self, id: str) -> CommandRule | None:
        return await self._load(CommandRule, id)

    async def delete_user(self, id: str) -> User:
        """Delete a user with their grants, API tokens, logins and access locks (sessions and commands stay)."""
        user = await self._must(User, id, "user")
        for cls in (Grant, ApiToken, Login, AccessLock):
            await self._delete_where(cls.collection, Query(eq={"user_id": id}))
        await self._delete(User.collection, id)
        return user
    # ---- single sign-on: pending sign-ins, named settings kept up to date -------------------------------------
    async def create_sso_state(self, state: SsoState) -> SsoState:
        return await self._create(state)

    async def take_sso_state(self, id: str, now: float | None = None) -> SsoState | None:
        """A pending sign-in, removed as it is read: only the one caller whose delete wins gets it (no replay)."""
        state = await self._load(SsoState, id)
        if state is None or not await self._delete(SsoState.collection, id):
            return None
        return state if state.expires_at > (now or time.time()) else None

    async def purge_expired_sso_states(self, now: float | None = None) -> int:
        return await self._delete_where(SsoState.collection, Query(ranges={"expires_at": (None, now or time.time())}))

    async def put_setting(self, name: str, value: str) -> Setting:
        """Create or replace a named value."""
        current = await self._load(Setting, name)
        if current is None:
            try:
                return await self._create(Setting(id=name, value=value))
            except Conflict:
                current = await self._load(Setting, name)
                if current is None:
                    raise
        current.value, current.updated_at = value, time.time()
        return await self.save(current)

    # ---- passkeys (WebAuthn) ---------------------------------------------------------------------------------
    async def create_passkey(self, passkey: Passkey) -> Passkey:
        return await self._create(passkey)

    async def passkeys_of_user(self, user_id: str) -> list[Passkey]:
        return await self._query(Passkey, Query(eq={"user_id": user_id}, sort=("created_at", False)))

    async def passkey_by_credential(self, credential_id: str) -> Passkey | None:
        found = await self._query(Passkey, Query(eq={"credential_id": credential_id}, limit=1))
        return found[0] if found else None

    async def get_passkey(self, id: str) -> Passkey | None:
        return await self._load(Passkey, id)

    async def delete_passkey(self, id: str) -> bool:
        return await self._delete(Passkey.collection, id)

    async def create_passkey_challenge(self, challenge: PasskeyChallenge) -> PasskeyChallenge:
        return await self._create(challenge)

    async def take_passkey_challenge(self, id: str, now: float | None = None) -> PasskeyChallenge | None:
        """A challenge, removed as it is read (used once)."""
        found = await self._load(PasskeyChallenge, id)
        if found is None or not await self._delete(PasskeyChallenge.collection, id):
            return None
        return found if found.expires_at > (now or time.time()) else None

    async def purge_expired_passkey_challenges(self, now: float | None = None) -> int:
        return await self._delete_where(PasskeyChallenge.collection,
                                        Query(ranges={"expires_at": (None, now or time.time())}))
    # ---- access requests (four eyes) -------------------------------------------------------------------------
    async def create_access_request(self, request: AccessRequest) -> AccessRequest:
        return await self._create(request)

    async def get_access_request(self, id: str) -> AccessRequest | None:
        return await self._load(AccessRequest, id)

    async def list_access_requests(self, status: str | None = None, user_id: str | None = None,
                                   review_status: str | None = None, limit: int = 100, offset: int = 0) -> Page:
        """Requests, newest first, by status, requester or break-glass review state."""
        eq: dict[str, Any] = {}
        if status:
            eq["status"] = status
        if user_id:
            eq["user_id"] = user_id
        if review_status:
            eq["review_status"] = review_status
        return await self._page(AccessRequest, Query(eq=eq, sort=("created_at", True), limit=limit, offset=offset))

    # ---- SSH gateway keys ------------------------------------------------------------------------------------
    async def create_ssh_key(self, key: SSHKey) -> SSHKey:
        try:
            return await self._create(key)
        except Conflict:
            raise Conflict("this key is already registered") from None

    async def ssh_keys_of_user(self, user_id: str) -> list[SSHKey]:
        return await self._query(SSHKey, Query(eq={"user_id": user_id}, sort=("added_at", False)))

    async def ssh_key_by_fingerprint(self, fingerprint: str) -> SSHKey | None:
        found = await self._query(SSHKey, Query(eq={"fingerprint": fingerprint}, limit=1))
        return found[0] if found else None

    async def delete_ssh_key(self, id: str) -> SSHKey:
        key = await self._must(SSHKey, id, "key")
        await self._delete(SSHKey.collection, id)
        return key


def page_bounds(limit: Any, offset: Any, *, default: int = 50, maximum: int = 500) -> tuple[int, int]:
    """Validate ?limit=&offset= values from a request."""
    try:
        lim = default if limit in (None, "") else int(limit)
        off = 0 if offset in (None, "") else int(offset)
    except (TypeError, ValueError):
        raise Invalid("limit and offset must be integers") from None
    if not 1 <= lim <= maximum:
        raise Invalid(f"limit must be between 1 and {maximum}")
    if not 0 <= off <= 10_000_000:
        raise Invalid("offset must be between 0 and 10000000")
    return lim, off


def unique_conflict(collection: str, field_name: str) -> Conflict:
    """The Conflict raised when a unique field clashes."""
    what = {"users": "user", "apps": "category", "credentials": "credential", "hosts": "host", "grants": "grant"}.get(collection, collection)
    return Conflict(f"a {what} with this {field_name} already exists")


__all__: Sequence[str] = ("Store", "Query", "Page", "page_bounds", "unique_conflict")
