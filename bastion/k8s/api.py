"""The Kubernetes API as Bastion uses it: pods (list, get) over Tornado's async HTTP client, TLS verified.

Every failure becomes a BastionError whose message says what went wrong in words (wrong token, certificate not
trusted, cluster unreachable, not allowed), never a Python repr and never the token.
"""
from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError

from ..errors import BastionError, Forbidden, NotFound, Unavailable

REQUEST_TIMEOUT = 10.0
# The code of errors raised before the cluster answered anything (TLS trust, refused, timeout): a connection test
# tells "could not reach the API" from "reached it, but the token may not do this".
UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach one cluster: its API URL, TLS trust and bearer token (the token is never shown or logged)."""

    name: str
    api_url: str
    ca_bundle: str
    insecure: bool
    token: str

    def __repr__(self) -> str:
        return f"ClusterAccess(name={self.name!r}, api_url={self.api_url!r})"

    def ssl_context(self) -> ssl.SSLContext:
        """TLS verified against the cluster's CA bundle (or not at all when an admin chose insecure)."""
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        try:
            return ssl.create_default_context(cadata=self.ca_bundle)
        except (ssl.SSLError, ValueError):
            raise BastionError(f"{self.name}: the CA bundle is not a readable PEM certificate", code=UNREACHABLE) from None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}


@dataclass(frozen=True)
class PodInfo:
    """What the pod picker and the exec path need to know about a pod."""

    namespace: str
    name: str
    phase: str
    containers: list[dict[str, Any]]  # name, ready, state ("running" | "waiting: <reason>" | "terminated: <reason>")
    created: float
    labels: dict[str, str]
    deleting: bool

    @property
    def running(self) -> bool:
        return self.phase == "Running" and not self.deleting

    def why_not_open(self, container: str) -> str:
        """Why this pod's container cannot be opened ("" when it can)."""
        if self.deleting:
            return "the pod is being deleted"
        if self.phase != "Running":
            return f"the pod is {self.phase}, not Running"
        for c in self.containers:
            if c["name"] == container:
                return "" if c["state"] == "running" else f"the container is not running ({c['state']})"
        return "the pod has no such container"

    def public(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "phase": self.phase, "containers": self.containers,
                "created": self.created, "age": age_text(time.time() - self.created), "deleting": self.deleting,
                "labels": self.labels}


def age_text(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    if s < 3 * 3600:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _parse_time(text: str) -> float:
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    except (TypeError, ValueError):
        return 0.0


def pod_info(doc: dict[str, Any]) -> PodInfo:
    """A PodInfo from Pod JSON (missing fields read as unknown, never as an error)."""
    meta = doc.get("metadata") or {}
    status = doc.get("status") or {}
    states: dict[str, str] = {}
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "running" in state:
            states[cs.get("name", "")] = "running"
        elif "waiting" in state:
            states[cs.get("name", "")] = f"waiting: {(state['waiting'] or {}).get('reason', 'unknown')}"
        elif "terminated" in state:
            states[cs.get("name", "")] = f"terminated: {(state['terminated'] or {}).get('reason', 'unknown')}"
    containers = [{"name": c.get("name", ""), "state": states.get(c.get("name", ""), "unknown")}
                  for c in (doc.get("spec") or {}).get("containers") or []]
    return PodInfo(namespace=meta.get("namespace", ""), name=meta.get("name", ""), phase=status.get("phase", "Unknown"),
                   containers=containers, created=_parse_time(meta.get("creationTimestamp", "")),
                   labels=dict(meta.get("labels") or {}), deleting=bool(meta.get("deletionTimestamp")))


def status_message(body: bytes) -> str:
    """The message of a Kubernetes Status object ("" when the body is not one)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    return str(doc.get("message", ""))[:500] if isinstance(doc, dict) and doc.get("kind") == "Status" else ""


def http_failure(access: ClusterAccess, code: int, body: bytes, doing: str) -> BastionError:
    """The BastionError for an API answer that is not a success."""
    message = status_message(body)
    if code == 401:
        return BastionError(f"{access.name}: the cluster refused the service-account token (401 Unauthorized); "
                            "an admin must give the cluster a valid token")
    if code == 403:
        return Forbidden(f"{access.name}: the cluster does not allow the service account to {doing}"
                         + (f" ({message})" if message else ""))
    if code == 404:
        return NotFound(message or f"{access.name}: not found")
    return BastionError(f"{access.name}: the cluster answered {code} while trying to {doing}" + (f": {message}" if message else ""))


def connection_failure(access: ClusterAccess, exc: BaseException) -> BastionError:
    """The BastionError for a failure to reach the API at all (TLS trust, refused, timeout); its code is UNREACHABLE."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return BastionError(f"{access.name}: the cluster's TLS certificate is not trusted by its CA bundle "
                            f"({exc.verify_message or 'verification failed'}); check the CA bundle", code=UNREACHABLE)
    if isinstance(exc, ssl.SSLError):
        return BastionError(f"{access.name}: TLS with the cluster failed ({exc.reason or 'handshake error'})",
                            code=UNREACHABLE)
    if isinstance(exc, HTTPTimeoutError):
        return Unavailable(f"{access.name}: the cluster API at {access.api_url} did not answer in time", code=UNREACHABLE)
    if isinstance(exc, HTTPClientError) and exc.code == 599:
        return Unavailable(f"{access.name}: the cluster API at {access.api_url} closed the connection without "
                           "answering", code=UNREACHABLE)
    if isinstance(exc, ConnectionRefusedError):
        return Unavailable(f"{access.name}: cannot reach the cluster API at {access.api_url} (connection refused)",
                           code=UNREACHABLE)
    if isinstance(exc, OSError):
        return Unavailable(f"{access.name}: cannot reach the cluster API at {access.api_url} "
                           f"({exc.strerror or 'network error'})", code=UNREACHABLE)
    return Unavailable(f"{access.name}: cannot reach the cluster API at {access.api_url}", code=UNREACHABLE)


class KubeClient:
    """A few read calls on one cluster's API."""

    def __init__(self, access: ClusterAccess) -> None:
        self.access = access

    def url(self, path: str, query: dict[str, str] | None = None) -> str:
        return self.access.api_url.rstrip("/") + path + (("?" + urlencode(query)) if query else "")

    async def get_json(self, path: str, doing: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        request = HTTPRequest(self.url(path, query), headers=self.access.headers(), ssl_options=self.access.ssl_context(),
                              connect_timeout=REQUEST_TIMEOUT, request_timeout=REQUEST_TIMEOUT, follow_redirects=False)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except Exception as exc:  # noqa: BLE001 - each cause becomes a sentence
            raise connection_failure(self.access, exc) from None
        if response.code == 599:
            raise connection_failure(self.access, response.error or OSError())
        if response.code != 200:
            raise http_failure(self.access, response.code, response.body or b"", doing)
        try:
            return json.loads(response.body)
        except ValueError:
            raise BastionError(f"{self.access.name}: the cluster answered something that is not JSON") from None

    async def list_pods(self, namespace: str, selector: str = "") -> list[PodInfo]:
        query = {"labelSelector": selector} if selector else None
        doc = await self.get_json(f"/api/v1/namespaces/{quote(namespace, safe='')}/pods", f"list pods in {namespace}", query)
        return sorted((pod_info(item) for item in doc.get("items") or []), key=lambda p: p.name)

    async def get_pod(self, namespace: str, name: str) -> PodInfo:
        doc = await self.get_json(f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}",
                                  f"read pod {name}")
        return pod_info(doc)

    async def version(self) -> str:
        doc = await self.get_json("/version", "read its version")
        return str(doc.get("gitVersion", "unknown"))
