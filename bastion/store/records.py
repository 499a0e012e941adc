"""Typed records the store returns; never raw driver documents.

Times are float epoch seconds (portable across SQLite, MongoDB and nx-27017, and range-queryable).
Ids are strings. `version` increments on every whole-document replace.
"""
from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


def new_id() -> str:
    """A random, URL-safe, 16-character id."""
    return secrets.token_hex(8)


@dataclass
class Record:
    """Base of every stored record: id, version, and doc conversion."""

    collection: ClassVar[str] = ""
    secret_fields: ClassVar[tuple[str, ...]] = ()

    id: str = field(default_factory=new_id)
    version: int = 0

    def to_doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls: type[R], doc: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})

    def public(self) -> dict[str, Any]:
        """The record as the API shows it: secrets and internals left out."""
        doc = self.to_doc()
        for name in self.secret_fields + ("version",):
            doc.pop(name, None)
        return doc


@dataclass
class User(Record):
    collection: ClassVar[str] = "users"
    secret_fields: ClassVar[tuple[str, ...]] = ("password_hash", "totp_secret", "totp_pending", "totp_last_step")

    username: str = ""
    password_hash: str = ""
    roles: list[str] = field(default_factory=list)
    disabled: bool = False
    totp_secret: str = ""  # vault-sealed base32 secret; "" when TOTP is not enrolled
    totp_pending: str = ""  # vault-sealed secret awaiting its first code
    totp_last_step: int = 0  # last accepted TOTP time step: a code is accepted once
    created_at: float = field(default_factory=time.time)
    sso_provider: str = ""  # "oidc:<name>" | "ldap:<name>" for a user made by single sign-on; "" for a local account
    sso_subject: str = ""  # the provider's stable id of the user (OIDC `sub`, LDAP DN)
    passkey_count: int = 0  # enrolled passkeys (kept by bastion/passkeys.py; a second factor when > 0)

    def public(self) -> dict[str, Any]:
        doc = super().public()
        doc["totp_enabled"] = bool(self.totp_secret)
        return doc


@dataclass
class App(Record):
    collection: ClassVar[str] = "apps"
    name: str = ""
    description: str = ""
    created_at: float = field(default_factory=time.time)


@dataclass
class Credential(Record):
    collection: ClassVar[str] = "credentials"
    secret_fields: ClassVar[tuple[str, ...]] = ("sealed_secret",)
    name: str = ""
    username: str = ""
    kind: str = "password"  # password | private_key
    sealed_secret: str = ""
    created_at: float = field(default_factory=time.time)


@dataclass
class Host(Record):
    collection: ClassVar[str] = "hosts"
    name: str = ""
    address: str = ""
    port: int = 22
    app_id: str = ""
    credential_id: str = ""
    tags: list[str] = field(default_factory=list)
    locale: str = ""  # LANG/LC_CTYPE sent to this host ("" = [terminal] locale)
    host_key: str = ""  # pinned OpenSSH public key (trust on first use)
    host_key_fingerprint: str = ""
    offered_key: str = ""  # a different key the host offered, waiting for an admin
    offered_key_fingerprint: str = ""
    created_at: float = field(default_factory=time.time)


@dataclass
class Grant(Record):
    collection: ClassVar[str] = "grants"
    user_id: str = ""
    app_id: str = ""
    host_id: str = ""
    key: str = ""  # "user_id/app_id/host_id": unique
    created_at: float = field(default_factory=time.time)
    source: str = ""  # "" an admin's grant; "sso:<provider>" kept in step with the user's groups at each SSO login
    expires_at: float = 0.0  # temporary access (an approved access request): removed at this time; 0 = standing
    request_id: str = ""  # the access request this grant came from
    upload: bool = False  # may send files to the hosts (SSH gateway scp/sftp, file panel)
    download: bool = False  # may fetch files from the hosts

    def public(self) -> dict[str, Any]:
        doc = super().public()
        doc.pop("key", None)
        return doc


@dataclass
class ApiToken(Record):
    collection: ClassVar[str] = "tokens"
    secret_fields: ClassVar[tuple[str, ...]] = ("token_hash", "sealed_envelope_key")
    user_id: str = ""
    name: str = ""
    token_hash: str = ""
    sealed_envelope_key: str = ""  # vault-sealed key for command envelopes sealed by this token's owner
    created_at: float = field(default_factory=time.time)
    last_used_at: float = 0.0
    # Tokens stored before expiries and scopes existed have expires_at 0 and no scopes: bastion/auth.py gives
    # them a meaning (expiry created_at + [auth] token_ttl_max days; scopes read, runs, manage: no terminal).
    expires_at: float = 0.0
    scopes: list[str] = field(default_factory=list)


@dataclass
class Login(Record):
    """A browser login session; its id (random, 256 bits) is what the signed cookie carries."""

    collection: ClassVar[str] = "logins"
    user_id: str = ""
    stage: str = "full"  # "totp": password accepted, TOTP step pending; "full": logged in
    created_at: float = field(default_factory=time.time)
    expires_at: float = 0.0  # absolute expiry ([auth] session_ttl)
    address: str = ""
    last_seen_at: float = 0.0  # last request (written at most every IDLE_TOUCH s); 0: created_at ([auth] idle_ttl)


@dataclass
class Failure(Record):
    """Failed-login counter for one key ("user:<name>" or "ip:<address>")."""

    collection: ClassVar[str] = "failures"
    count: int = 0
    first_at: float = 0.0
    locked_until: float = 0.0


@dataclass
class Event(Record):
    collection: ClassVar[str] = "events"
    ts: float = field(default_factory=time.time)
    action: str = ""
    code: str = ""
    actor: str = ""
    target: str = ""
    address: str = ""
    ok: bool = True
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Session(Record):
    collection: ClassVar[str] = "sessions"
    host_id: str = ""
    host_name: str = ""
    user_id: str = ""
    username: str = ""
    group: str = ""
    cols: int = 80
    rows: int = 24
    live: bool = True
    node: str = ""
    started_at: float = field(default_factory=time.time)
    ended_at: float = 0.0
    end_reason: str = ""
    ended_by: str = ""
    reason: str = ""
    recording_path: str = ""
    recording_size: int = 0
    recording_sha256: str = ""
    recording_chain: str = ""  # final HMAC of the recording's event chain
    bytes_out: int = 0
    address: str = ""
    purged: bool = False  # the recording was deleted by retention; metadata stays
    # a Kubernetes pod session (empty for SSH): host_id is "k8s:<cluster id>", host_name "<cluster>/<ns>/<pod>"
    cluster: str = ""
    namespace: str = ""
    pod: str = ""
    container: str = ""
    via: str = ""  # front door: "" browser terminal; "ssh" (gateway shell), "exec", "sftp" (SSH gateway)
    command: str = ""  # the command of an SSH gateway exec session


@dataclass
class Command(Record):
    """A command a user ran (or tried to run) in a terminal session."""

    collection: ClassVar[str] = "commands"
    session_id: str = ""
    user_id: str = ""
    username: str = ""
    host_id: str = ""
    host_name: str = ""
    ts: float = field(default_factory=time.time)
    offset: float = 0.0  # seconds from the start of the recording
    text: str = ""
    blocked: bool = False
    flagged: bool = False  # a `warn` rule matched
    rule: str = ""  # name of the rule that matched
    by: str = ""  # who pressed Enter, in a shared session (username); "" = the session's user
    review: str = ""  # a `review` rule held it: "approved by X", "denied by X", "no answer" ("" = not held)


@dataclass
class CommandRule(Record):
    """A command filter rule managed by admins."""

    collection: ClassVar[str] = "command_rules"
    name: str = ""
    kind: str = "regex"  # regex | words
    pattern: str = ""
    action: str = "deny"  # deny | warn | review
    scope: str = "all"  # all | app | host | role
    scope_value: str = ""  # app id, host id or role name
    priority: int = 100  # lower first
    enabled: bool = True
    created_at: float = field(default_factory=time.time)


@dataclass
class ModuleState(Record):
    """A task module as the registry last read it (id = the digits of Mid_<id>.py) plus admin settings."""

    collection: ClassVar[str] = "modules"
    name: str = ""
    description: str = ""
    platform: str = "ssh"
    category: str = ""
    params: list[dict[str, Any]] = field(default_factory=list)
    timeout: int = 60
    state: str = "enabled"  # enabled | disabled | broken | missing
    error: str = ""
    enabled: bool = True  # admin switch (kept across file changes)
    allowed_roles: list[str] = field(default_factory=list)  # empty: every role
    allowed_apps: list[str] = field(default_factory=list)  # empty: every category
    digest: str = ""
    updated_at: float = field(default_factory=time.time)


@dataclass
class Run(Record):
    """One module run: who, where, what, and the per-host results as they arrive."""

    collection: ClassVar[str] = "runs"
    module_id: str = ""
    module_name: str = ""
    user_id: str = ""
    username: str = ""
    host_ids: list[str] = field(default_factory=list)
    host_names: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # secrets masked
    status: str = "queued"  # queued | running | ok | partial | failed | timeout | cancelled
    via: str = "web"  # web | api | cli
    envelope_id: str = ""
    created_at: float = field(default_factory=time.time)
    started_at: float = 0.0
    ended_at: float = 0.0
    results: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    log: str = ""  # what the module printed (first 64 KiB)
    seq: int = 0  # results stamped so far: each result carries its own "seq", so a page asks only for newer ones
    rerun_of: str = ""  # the run whose failed hosts this run re-runs
    cancelled_by: str = ""
    node: str = ""  # the node executing it: a cancel received by another node is sent there through the hub


@dataclass
class SeenEnvelope(Record):
    """Replay guard: the unique id of every accepted command envelope, until it could no longer be fresh."""

    collection: ClassVar[str] = "envelopes"
    expires_at: float = 0.0


@dataclass
class Node(Record):
    collection: ClassVar[str] = "nodes"
    started_at: float = field(default_factory=time.time)
    heartbeat_at: float = field(default_factory=time.time)


@dataclass
class AccessLock(Record):
    """A user locked out of one host (or of every host when host_id is "") until a time ("end and lock")."""

    collection: ClassVar[str] = "access_locks"
    user_id: str = ""
    username: str = ""
    host_id: str = ""  # "" = every host
    host_name: str = ""
    until: float = 0.0
    reason: str = ""
    created_by: str = ""
    created_at: float = field(default_factory=time.time)


@dataclass
class Setting(Record):
    """A named value the deployment keeps in the store (id = its name), e.g. the sealed secret canary."""

    collection: ClassVar[str] = "settings"
    value: str = ""
    updated_at: float = field(default_factory=time.time)


@dataclass
class LoginRule(Record):
    """An admin's allow/deny rule for logins by network and time window; first match (by priority) wins."""

    collection: ClassVar[str] = "login_rules"
    name: str = ""
    action: str = "deny"  # allow | deny
    scope: str = "all"  # all | role | user
    scope_value: str = ""  # role name or user id
    networks: list[str] = field(default_factory=list)  # CIDRs; empty: any address
    days: list[int] = field(default_factory=list)  # 0 = Monday … 6 = Sunday; empty: every day
    start: str = ""  # "HH:MM" in `timezone`; start == end == "": all day; start > end: across midnight
    end: str = ""
    timezone: str = "UTC"  # IANA name the window is read in
    priority: int = 100  # lower first
    enabled: bool = True
    created_at: float = field(default_factory=time.time)


@dataclass
class Cluster(Record):
    """A Kubernetes cluster in the inventory: API URL, CA bundle and a vaulted service-account token."""

    collection: ClassVar[str] = "clusters"
    secret_fields: ClassVar[tuple[str, ...]] = ("sealed_token",)
    name: str = ""
    api_url: str = ""
    ca_bundle: str = ""  # PEM; empty only with insecure (the admin's explicit choice)
    insecure: bool = False  # skip TLS verification (warned about wherever the cluster is shown)
    app_id: str = ""
    sealed_token: str = ""
    created_at: float = field(default_factory=time.time)


@dataclass
class PodGrant(Record):
    """User X may exec into pods of cluster C in namespace N (optionally only pods matching a label selector)."""

    collection: ClassVar[str] = "pod_grants"
    user_id: str = ""
    cluster_id: str = ""
    namespace: str = ""
    selector: str = ""
    key: str = ""  # "user_id/cluster_id/namespace/selector": unique
    created_at: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        doc = super().public()
        doc.pop("key", None)
        return doc


@dataclass
class SsoState(Record):
    """A sign-in started at an OpenID provider (id = the `state` sent): used once, then deleted."""

    collection: ClassVar[str] = "sso_states"
    secret_fields: ClassVar[tuple[str, ...]] = ("nonce", "code_verifier", "browser_hash")
    provider: str = ""
    nonce: str = ""
    code_verifier: str = ""  # PKCE
    browser_hash: str = ""  # SHA-256 of the random value in the browser's sign-in cookie (binds state to browser)
    next_url: str = ""
    redirect_uri: str = ""
    expires_at: float = 0.0


@dataclass
class Passkey(Record):
    """A WebAuthn credential (passkey) a user enrolled: a second factor, or a passwordless login."""

    collection: ClassVar[str] = "passkeys"
    secret_fields: ClassVar[tuple[str, ...]] = ("public_key",)
    user_id: str = ""
    credential_id: str = ""  # base64url; unique
    public_key: str = ""  # base64url COSE key
    sign_count: int = 0  # the authenticator's counter: an assertion must raise it (a cloned key falls behind)
    name: str = ""
    created_at: float = field(default_factory=time.time)
    last_used_at: float = 0.0


@dataclass
class PasskeyChallenge(Record):
    """A WebAuthn challenge handed out for one ceremony (id = its handle): used once, then deleted."""

    collection: ClassVar[str] = "passkey_challenges"
    secret_fields: ClassVar[tuple[str, ...]] = ("challenge",)
    purpose: str = ""  # register | login
    user_id: str = ""  # "" for a passwordless login (the credential names the user)
    login_id: str = ""  # the half login a second-factor challenge belongs to
    challenge: str = ""  # base64url
    expires_at: float = 0.0


@dataclass
class AccessRequest(Record):
    """A user's request for temporary access to a host or category, and what became of it."""

    collection: ClassVar[str] = "access_requests"
    user_id: str = ""
    username: str = ""
    host_id: str = ""  # one of host_id / app_id
    host_name: str = ""
    app_id: str = ""
    app_name: str = ""
    minutes: int = 60
    reason: str = ""
    status: str = "pending"  # pending | approved | denied | expired | cancelled
    created_at: float = 0.0  # the access clock's time (bastion.clock), not the wall clock
    decided_at: float = 0.0
    decided_by: str = ""
    comment: str = ""
    expires_at: float = 0.0  # when the grant ends (approved)
    grant_id: str = ""
    break_glass: bool = False  # approved by the requester through a break-glass role
    review_status: str = ""  # break-glass: "pending" until someone reviews it, then "done"
    reviewed_by: str = ""
    reviewed_at: float = 0.0
    review_comment: str = ""


@dataclass
class SSHKey(Record):
    """A public key a user registered for the SSH gateway (fingerprint: SHA256, unique across users)."""

    collection: ClassVar[str] = "ssh_keys"
    user_id: str = ""
    name: str = ""
    public_key: str = ""  # OpenSSH one-line form, without comment
    fingerprint: str = ""
    added_at: float = field(default_factory=time.time)
    last_used_at: float = 0.0


ALL_RECORDS: tuple[type[Record], ...] = (User, App, Credential, Host, Grant, ApiToken, Login, Failure, Event, Session,
                                         Command, CommandRule, ModuleState, Run, SeenEnvelope, Node, Setting, LoginRule,
                                         AccessLock, Cluster, PodGrant, SsoState, Passkey, PasskeyChallenge, AccessRequest,
                                         SSHKey)

# Fields with a unique index, per collection.
UNIQUE_FIELDS: dict[str, tuple[str, ...]] = {
    "users": ("username",),
    "apps": ("name",),
    "credentials": ("name",),
    "hosts": ("name",),
    "grants": ("key",),
    "command_rules": ("name",),
    "login_rules": ("name",),
    "clusters": ("name",),
    "pod_grants": ("key",),
    "passkeys": ("credential_id",),
    "ssh_keys": ("fingerprint",),
}

# Fields queried by equality or range, per collection (indexed on both backends).
INDEXED_FIELDS: dict[str, tuple[str, ...]] = {
    "hosts": ("app_id", "credential_id"),
    "grants": ("user_id", "app_id", "host_id"),
    "tokens": ("user_id",),
    "logins": ("user_id", "expires_at"),
    "events": ("ts", "action", "actor"),
    "sessions": ("live", "user_id", "host_id", "started_at", "node"),
    "commands": ("session_id", "user_id", "host_id", "ts", "blocked"),
    "runs": ("user_id", "module_id", "status", "created_at"),
    "envelopes": ("expires_at",),
    "access_locks": ("user_id", "until"),
    "pod_grants": ("user_id", "cluster_id"),
    "sso_states": ("expires_at",),
    "passkeys": ("user_id",),
    "passkey_challenges": ("expires_at",),
    "access_requests": ("user_id", "status", "review_status"),
    "ssh_keys": ("user_id",),
}
