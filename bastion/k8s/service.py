"""Pod terminals: clusters in the inventory, grants per cluster and namespace, the pod picker, and opening a pod's
shell as one more upstream of the live-session engine (recording, commands, watch, kick come from LiveSession)."""
from __future__ import annotations

import logging
import re
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from .. import validation as v
from ..audit import Audit
from ..errors import BastionError, Conflict, Invalid, NotFound
from ..sessions.doors import FrontDoor, Upstream
from ..sessions.engine import Admission, SessionEngine
from ..sessions.session import LiveSession
from ..store import Cluster, Host, PodGrant, Session, Store, User
from ..vault import Vault
from .api import UNREACHABLE, ClusterAccess, KubeClient, PodInfo
from .exec import K8sUpstream, PodTarget

log = logging.getLogger(__name__)
# One answer for "does not exist", "not granted" and "namespace not granted", so probing reveals nothing.
POD_NOT_FOUND = "pod not found"
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
POD_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
SELECTOR_TERM = re.compile(r"^!?[A-Za-z0-9]([A-Za-z0-9_./-]{0,250}[A-Za-z0-9])?((==?|!=)[A-Za-z0-9_.-]{0,63})?$")
MAX_CA = 64 * 1024
MAX_TOKEN = 16 * 1024
INSECURE_WARNING = "TLS verification is OFF for this cluster: anyone on the network path can read its terminals"
NO_TRUST = "give the cluster's CA bundle (PEM), or choose explicitly to skip TLS verification"
CLUSTER_DELETED = "the cluster was deleted"


def namespace_name(value: Any, what: str = "namespace") -> str:
    if not isinstance(value, str) or not DNS_LABEL.match(value):
        raise Invalid(f"{what} must be a Kubernetes name (lowercase letters, digits and -, at most 63)")
    return value


def pod_name(value: Any) -> str:
    if not isinstance(value, str) or not POD_NAME.match(value):
        raise Invalid("pod must be a Kubernetes name (lowercase letters, digits, . and -)")
    return value


def label_selector(value: str) -> str:
    """An equality-based label selector (a=b, a!=b, a, !a; comma-separated)."""
    terms = [t.strip() for t in value.split(",")] if value else []
    for term in terms:
        if not SELECTOR_TERM.match(term):
            raise Invalid("selector must be comma-separated label terms such as app=web, tier!=db or app")
    return ",".join(terms)


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Whether labels satisfy an equality-based selector (checked here too, not only by the API server)."""
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def pod_host(cluster: Cluster, target: PodTarget) -> Host:
    """The Host a pod session stands on in the engine (never stored): rules scoped to the category apply."""
    return Host(id=f"k8s:{cluster.id}", name=f"{cluster.name}/{target.namespace}/{target.pod}/{target.container}",
                address=cluster.api_url,
                port=0, app_id=cluster.app_id)


class PodTerminals:
    """Clusters, pod grants, the picker's pod lists, and opening pod sessions."""

    def __init__(self, store: Store, vault: Vault, audit: Audit, engine: SessionEngine) -> None:
        self.store = store
        self.vault = vault
        self.audit = audit
        self.engine = engine
        engine.pod_policy = self.refusals

    # ---- clusters (admin) ------------------------------------------------------------------------------
    CLUSTER_FIELDS = ("name", "api_url", "ca_bundle", "insecure", "token", "app_id")

    async def _cluster_fields(self, body: dict[str, Any], partial: bool) -> dict[str, Any]:
        v.only_fields(body, self.CLUSTER_FIELDS)
        out: dict[str, Any] = {}
        if not partial or "name" in body:
            out["name"] = v.text(body, "name", pattern=v.NAME_RE, rule="must be 1-64 letters, digits, spaces or .:@()+-_")
        if not partial or "api_url" in body:
            url = v.text(body, "api_url", max_len=300)
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
                raise Invalid("api_url must be an https:// URL of the cluster's API server (no credentials, query or fragment)")
            out["api_url"] = url.rstrip("/")
        if not partial or "ca_bundle" in body:
            ca = v.text(body, "ca_bundle", required=False, max_len=MAX_CA).strip()
            if ca:
                try:
                    ssl.create_default_context(cadata=ca)
                except (ssl.SSLError, ValueError):
                    raise Invalid("ca_bundle must be the cluster's CA certificate(s) in PEM") from None
            out["ca_bundle"] = ca
        if not partial or "insecure" in body:
            out["insecure"] = v.boolean(body, "insecure")
        if not partial or "app_id" in body:
            app_id = v.text(body, "app_id", required=False)
            if app_id and await self.store.get_app(v.record_id(app_id, "app_id")) is None:
                raise NotFound(f"category {app_id!r} not found")
            out["app_id"] = app_id
        if not partial or "token" in body:
            token = v.text(body, "token", max_len=MAX_TOKEN)
            if any(c.isspace() for c in token):
                raise Invalid("token must be a service-account token without spaces or line breaks")
            out["token"] = token
        return out

    async def create_cluster(self, body: dict[str, Any], actor: str) -> Cluster:
        fields = await self._cluster_fields(body, partial=False)
        if not fields["ca_bundle"] and not fields["insecure"]:
            raise Invalid(NO_TRUST)
        token = fields.pop("token")
        cluster = Cluster(**fields)
        cluster.sealed_token = self.vault.seal(token, f"cluster:{cluster.id}")
        try:
            await self.store.create_cluster(cluster)
        except Conflict:
            raise Conflict(f"a cluster named {cluster.name} already exists") from None
        await self.audit.record("cluster.created", actor=actor, target=cluster.name, api_url=cluster.api_url,
                                insecure=cluster.insecure)
        if cluster.insecure:
            log.warning("cluster %s added with TLS verification off by %s", cluster.name, actor)
        return cluster

    async def update_cluster(self, cluster_id: str, body: dict[str, Any], actor: str) -> Cluster:
        cluster = await self.get_cluster(cluster_id)
        changes = await self._cluster_fields(body, partial=True)
        if not changes:
            raise Invalid("nothing to change")
        token = changes.pop("token", None)
        for name, value in changes.items():
            setattr(cluster, name, value)
        if not cluster.ca_bundle and not cluster.insecure:
            raise Invalid(NO_TRUST)
        if token is not None:
            cluster.sealed_token = self.vault.seal(token, f"cluster:{cluster.id}")
        try:
            await self.store.save(cluster)
        except Conflict:
            raise Conflict(f"a cluster named {cluster.name} already exists") from None
        await self.audit.record("cluster.updated", actor=actor, target=cluster.name,
                                fields=sorted(list(changes) + (["token"] if token is not None else [])))
        return cluster

    async def delete_cluster(self, cluster_id: str, actor: str) -> None:
        """Delete a cluster and its pod grants; its live pod sessions end (reason `revoked`) on every node."""
        cluster = await self.get_cluster(cluster_id)
        # whoever may hold a session on it: its grantees (any node) and this node's live sessions on it
        users = {g.user_id for g in await self.store.list_pod_grants() if g.cluster_id == cluster.id}
        users |= {s.record.user_id for s in self.engine.hub.live() if s.record.host_id == f"k8s:{cluster.id}"}
        await self.store.delete_cluster(cluster.id)
        await self.audit.record("cluster.deleted", actor=actor, target=cluster.name)
        for user_id in sorted(users):
            await self.engine.hub.policy_changed(user_id, by=actor, why=CLUSTER_DELETED)

    async def get_cluster(self, cluster_id: str) -> Cluster:
        cluster = await self.store.get_cluster(v.record_id(cluster_id, "cluster id"))
        if cluster is None:
            raise NotFound("cluster not found")
        return cluster

    async def clusters(self) -> list[Cluster]:
        return await self.store.list_clusters()

    def public(self, cluster: Cluster) -> dict[str, Any]:
        doc = cluster.public()
        doc["warning"] = INSECURE_WARNING if cluster.insecure else ""
        return doc

    def access(self, cluster: Cluster) -> ClusterAccess:
        return ClusterAccess(name=cluster.name, api_url=cluster.api_url, ca_bundle=cluster.ca_bundle,
                             insecure=cluster.insecure, token=self.vault.open(cluster.sealed_token, f"cluster:{cluster.id}"))

    async def test_connection(self, cluster_id: str, namespace: str | None) -> dict[str, Any]:
        """Reach the API, then check that the token may list pods (in `namespace`, else in each granted one).

        A cluster that cannot be reached or refuses the token is the test's result, not a bad request: the answer
        says in words whether the API was reached and whether the token may list pods (`checks`, `ok`)."""
        cluster = await self.get_cluster(cluster_id)
        if namespace:
            namespaces = [namespace_name(namespace)]
        else:
            namespaces = sorted({g.namespace for g in await self.store.list_pod_grants() if g.cluster_id == cluster.id}) or ["default"]
        client = KubeClient(self.access(cluster))
        checks: list[dict[str, Any]] = []
        result: dict[str, Any] = {"ok": False, "reached": False, "may_list": False, "version": "", "pods": {},
                                  "warning": INSECURE_WARNING if cluster.insecure else "", "checks": checks}

        def cause(exc: BastionError) -> str:  # the error's words without the cluster's name and a final stop
            return exc.message.removeprefix(f"{cluster.name}: ").rstrip(".")

        try:
            result["version"] = await client.version()
            result["reached"] = True
            checks.append({"ok": True, "text": f"Reached the API server at {cluster.api_url} "
                                               f"(Kubernetes {result['version']})."})
        except BastionError as exc:
            if exc.code == UNREACHABLE:
                checks.append({"ok": False, "text": f"Could not reach the API server: {cause(exc)}."})
                result["message"] = checks[-1]["text"]
                return result
            # it answered, but not to this token (clusters that refuse anonymous /version answer 401 here)
            result["reached"] = True
            checks.append({"ok": True, "text": f"Reached the API server at {cluster.api_url}."})
            checks.append({"ok": False, "text": f"The token may not list pods: {cause(exc)}."})
            result["message"] = " ".join(c["text"] for c in checks)
            return result
        may_list = True
        for ns in namespaces:
            try:
                count = len(await client.list_pods(ns))
            except BastionError as exc:
                may_list = False
                checks.append({"ok": False, "text": f"The token may not list pods in {ns}: {cause(exc)}."})
                continue
            result["pods"][ns] = count
            checks.append({"ok": True, "text": f"The token may list pods in {ns} ({count} pod{'' if count == 1 else 's'})."})
        result["may_list"] = may_list
        result["ok"] = may_list
        result["message"] = " ".join(c["text"] for c in checks)
        return result

    # ---- grants (admin) ----------------------------------------------------------------------------------
    async def create_grant(self, body: dict[str, Any], actor: str) -> PodGrant:
        v.only_fields(body, ("user_id", "cluster_id", "namespace", "selector"))
        user = await self.store.get_user(v.record_id(v.text(body, "user_id"), "user_id"))
        if user is None:
            raise NotFound("user not found")
        cluster = await self.get_cluster(v.text(body, "cluster_id"))
        namespace = namespace_name(body.get("namespace"))
        selector = label_selector(v.text(body, "selector", required=False, max_len=500))
        try:
            grant = await self.store.create_pod_grant(PodGrant(user_id=user.id, cluster_id=cluster.id,
                                                               namespace=namespace, selector=selector))
        except Conflict:
            raise Conflict(f"{user.username} already has this grant on {cluster.name}/{namespace}"
                           + (f" [{selector}]" if selector else "")) from None
        await self.audit.record("pod_grant.created", actor=actor, target=user.username,
                                to=f"{cluster.name}/{namespace}" + (f" [{selector}]" if selector else ""))
        return grant

    async def delete_grant(self, grant_id: str, actor: str) -> PodGrant:
        grant = await self.store.get_pod_grant(v.record_id(grant_id, "grant id"))
        if grant is None:
            raise NotFound("grant not found")
        await self.store.delete_pod_grant(grant.id)
        user = await self.store.get_user(grant.user_id)
        await self.audit.record("pod_grant.deleted", actor=actor, target=user.username if user else grant.user_id,
                                cluster_id=grant.cluster_id, namespace=grant.namespace)
        await self.engine.hub.policy_changed(grant.user_id, by=actor, why="access to this namespace was withdrawn")
        return grant

    async def grants(self) -> list[PodGrant]:
        return await self.store.list_pod_grants()

    # ---- the picker (users) -----------------------------------------------------------------------------
    async def namespaces_for(self, user: User) -> list[dict[str, Any]]:
        """The clusters and namespaces a user may open pods in: [{cluster_id, cluster, namespace, selectors}]."""
        by_key: dict[tuple[str, str], set[str]] = {}
        for g in await self.store.pod_grants_of_user(user.id):
            by_key.setdefault((g.cluster_id, g.namespace), set()).add(g.selector)
        out = []
        for (cluster_id, namespace), selectors in sorted(by_key.items()):
            cluster = await self.store.get_cluster(cluster_id)
            if cluster is not None:
                out.append({"cluster_id": cluster.id, "cluster": cluster.name, "namespace": namespace,
                            "selectors": sorted(selectors)})
        return out

    async def _granted(self, user: User, cluster_ref: str, namespace: str) -> tuple[Cluster, list[str]]:
        """The cluster (by id or name) and the user's selectors in this namespace ("" = every pod); NotFound when
        not granted."""
        cluster_id = cluster_ref
        if await self.store.get_cluster(cluster_ref) is None:
            cluster_id = next((c.id for c in await self.store.list_clusters() if c.name == cluster_ref), cluster_ref)
        selectors = {g.selector for g in await self.store.pod_grants_of_user(user.id)
                     if g.cluster_id == cluster_id and g.namespace == namespace}
        cluster = await self.store.get_cluster(cluster_id) if selectors else None
        if cluster is None:
            raise NotFound(POD_NOT_FOUND)
        return cluster, ([""] if "" in selectors else sorted(selectors))

    async def pods_for(self, user: User, cluster_id: str, namespace: str) -> list[PodInfo]:
        """The pods of a granted namespace that the user's selectors cover."""
        cluster, selectors = await self._granted(user, v.record_id(cluster_id, "cluster id"), namespace_name(namespace))
        client = KubeClient(self.access(cluster))
        pods: dict[str, PodInfo] = {}
        for selector in selectors:
            for pod in await client.list_pods(namespace, selector):
                if selector_matches(selector, pod.labels):
                    pods[pod.name] = pod
        return [pods[name] for name in sorted(pods)]

    async def openable(self, user: User, cluster_id: str, namespace: str, pod: str, container: str,
                       address: str = "") -> tuple[Cluster, PodInfo, PodTarget]:
        """A pod container the user may open now; not granted and not existing give the same answer (audited)."""
        try:
            cluster, selectors = await self._granted(user, v.record_id(cluster_id, "cluster id"), namespace_name(namespace))
            info = await KubeClient(self.access(cluster)).get_pod(namespace, pod_name(pod))
            if not any(selector_matches(s, info.labels) for s in selectors):
                raise NotFound(POD_NOT_FOUND)
        except (NotFound, Invalid) as exc:
            await self.audit.record_limited("session.refused", address or user.username, actor=user.username,
                                            address=address, why=POD_NOT_FOUND if isinstance(exc, NotFound) else exc.message,
                                            purpose="pod terminal")
            raise NotFound(POD_NOT_FOUND) if isinstance(exc, NotFound) else exc from None
        container = container or (info.containers[0]["name"] if info.containers else "")
        why = info.why_not_open(container)
        if why:
            raise Conflict(f"{pod}/{container} cannot be opened: {why}")
        return cluster, info, PodTarget(namespace=namespace, pod=info.name, container=container)

    # ---- sessions ------------------------------------------------------------------------------------------
    async def admit(self, user: User, cluster: Cluster, address: str) -> Admission:
        """Locks (every-host locks apply to pods too), then one of the user's session slots."""
        lock = await self.store.active_lock(user.id, f"k8s:{cluster.id}")
        if lock is not None:
            raise Conflict(f"you are locked out until {time.strftime('%H:%M UTC', time.gmtime(lock.until))}"
                           + (f": {lock.reason}" if lock.reason else ""))
        return await self.engine.reserve(user, address)

    async def open_session(self, admission: Admission, user: User, cluster: Cluster, target: PodTarget, cols: int,
                           rows: int, door: FrontDoor, address: str) -> LiveSession:
        """Open the pod's shell as a live session (recorded, extracted, watchable, kickable)."""
        access = self.access(cluster)

        async def connect(session: LiveSession, window: int) -> Upstream:
            return await K8sUpstream.open(access, target, session, cols=cols, rows=rows,
                                          connect_timeout=self.engine.config.terminal.connect_timeout)

        return await self.engine.open_session(
            admission, user, pod_host(cluster, target), cols, rows, door, address, connect=connect,
            fields={"cluster": cluster.name, "namespace": target.namespace, "pod": target.pod, "container": target.container})

    async def refusals(self, user: User | None, records: list[Session]) -> dict[str, str]:
        """Why each of a user's live pod sessions must end ("" or absent: it may go on)."""
        if not records:
            return {}
        if user is None:
            return {r.id: "the user was deleted" for r in records}
        if user.disabled:
            return {r.id: "the user was disabled" for r in records}
        grants = await self.store.pod_grants_of_user(user.id)
        clusters: dict[str, bool] = {}
        out = {}
        for r in records:
            cluster_id = r.host_id.removeprefix("k8s:")
            if cluster_id not in clusters:
                clusters[cluster_id] = await self.store.get_cluster(cluster_id) is not None
            if not clusters[cluster_id]:
                out[r.id] = CLUSTER_DELETED
            elif not any(g.cluster_id == cluster_id and g.namespace == r.namespace for g in grants):
                out[r.id] = "access to this namespace was withdrawn"
        return out
