"""Kubernetes pod terminals: clusters and pod grants (admin API), the pod picker, the deep link, and the pod
terminal's WebSocket (the same front door as a host terminal; the upstream is the pod's exec stream)."""
from __future__ import annotations

from tornado.websocket import WebSocketHandler

from bastion.errors import Conflict
from bastion.k8s.service import INSECURE_WARNING
from bastion.protocol import parse_size_args

from .base import APIHandler, BaseHandler, authenticated, role
from .terminal import TerminalSocket


class ClustersHandler(APIHandler):
    @role("admin")
    async def get(self) -> None:
        clusters = await self.services.pods.clusters()
        self.send({"items": [self.services.pods.public(c) for c in clusters], "total": len(clusters)})

    @role("admin")
    async def post(self) -> None:
        cluster = await self.services.pods.create_cluster(self.body(), self.actor)
        self.send(self.services.pods.public(cluster), status=201)


class ClusterHandler(APIHandler):
    @role("admin")
    async def get(self, cluster_id: str) -> None:
        self.send(self.services.pods.public(await self.services.pods.get_cluster(cluster_id)))

    @role("admin")
    async def patch(self, cluster_id: str) -> None:
        self.send(self.services.pods.public(await self.services.pods.update_cluster(cluster_id, self.body(), self.actor)))

    @role("admin")
    async def delete(self, cluster_id: str) -> None:
        await self.services.pods.delete_cluster(cluster_id, self.actor)
        self.send({"ok": True})


class ClusterTestHandler(APIHandler):
    @role("admin")
    async def post(self, cluster_id: str) -> None:
        body = self.body() if self.request.body else {}
        namespace = body.get("namespace") if isinstance(body.get("namespace"), str) else None
        self.send(await self.services.pods.test_connection(cluster_id, namespace))


class PodGrantsHandler(APIHandler):
    @role("admin")
    async def get(self) -> None:
        grants = await self.services.pods.grants()
        self.send({"items": [g.public() for g in grants], "total": len(grants)})

    @role("admin")
    async def post(self) -> None:
        self.send((await self.services.pods.create_grant(self.body(), self.actor)).public(), status=201)


class PodGrantHandler(APIHandler):
    @role("admin")
    async def delete(self, grant_id: str) -> None:
        await self.services.pods.delete_grant(grant_id, self.actor)
        self.send({"ok": True})


class MyNamespacesHandler(APIHandler):
    @authenticated
    async def get(self) -> None:
        items = await self.services.pods.namespaces_for(self.principal.user)
        self.send({"items": items, "total": len(items)})


class PodsHandler(APIHandler):
    @authenticated
    async def get(self, cluster_id: str, namespace: str) -> None:
        pods = await self.services.pods.pods_for(self.principal.user, cluster_id, namespace)
        self.send({"items": [p.public() for p in pods], "total": len(pods)})


class ClustersPage(BaseHandler):
    """/admin/clusters: clusters (add, edit, test, delete) and pod grants; the forms call the JSON API above."""

    @role("admin")
    async def get(self) -> None:
        pods = self.services.pods
        clusters = await pods.clusters()
        users = (await self.store.list_users(limit=500)).items
        apps = (await self.store.list_apps(limit=500)).items
        self.page("clusters.html", clusters=[pods.public(c) for c in clusters], grants=await pods.grants(),
                  users=users, apps=apps, user_names={u.id: u.username for u in users},
                  app_names={a.id: a.name for a in apps}, cluster_names={c.id: c.name for c in clusters},
                  insecure_warning=INSECURE_WARNING)


class PodPickerPage(BaseHandler):
    @authenticated
    async def get(self) -> None:
        self.page("k8s.html", namespaces=await self.services.pods.namespaces_for(self.principal.user))


class PodTerminalPage(BaseHandler):
    """/k8s/<cluster id>/<namespace>/<pod>?container=: straight into the pod's terminal (the deep link)."""

    xterm_styles = True

    @authenticated
    async def get(self, cluster_id: str, namespace: str, pod: str) -> None:
        cluster, info, target = await self.services.pods.openable(
            self.principal.user, cluster_id, namespace, pod, self.get_query_argument("container", ""),
            address=self.client_address)
        self.page("k8s_terminal.html", cluster=cluster, target=target)


class PodTerminalSocket(TerminalSocket):
    """/ws/k8s/<cluster id>/<namespace>/<pod>?container=&cols=&rows=: the user's live pod session."""

    @authenticated
    async def get(self, cluster_id: str, namespace: str, pod: str) -> None:  # type: ignore[override]
        pods = self.services.pods
        self.cluster, _, self.target = await pods.openable(self.principal.user, cluster_id, namespace, pod,
                                                           self.get_query_argument("container", ""),
                                                           address=self.client_address)
        self.size = parse_size_args(self.get_query_argument("cols", None), self.get_query_argument("rows", None))
        try:
            self.admission = await pods.admit(self.principal.user, self.cluster, self.client_address)
        except Conflict as exc:
            await self.audit.record_limited("session.refused", self.client_address, actor=self.actor,
                                            target=f"{self.cluster.name}/{namespace}/{pod}", address=self.client_address,
                                            why=exc.message)
            raise
        try:
            await WebSocketHandler.get(self, cluster_id, namespace, pod)
        finally:
            if self.session is None:
                self.services.sessions.release(self.admission)

    async def open(self, *args: str) -> None:  # type: ignore[override]
        self.set_nodelay(True)
        cols, rows = self.size
        assert self.admission is not None
        self.session = await self.services.pods.open_session(
            self.admission, self.principal.user, self.cluster, self.target, cols, rows, self, self.client_address)
        if not self._open() and not self.session.closing:
            await self.session.close("closed")


NAME = r"([a-z0-9][a-z0-9.-]{0,252})"
default_handlers = [
    (r"/api/clusters", ClustersHandler),
    (r"/api/clusters/([^/]+)", ClusterHandler),
    (r"/api/clusters/([^/]+)/test", ClusterTestHandler),
    (r"/api/pod-grants", PodGrantsHandler),
    (r"/api/pod-grants/([^/]+)", PodGrantHandler),
    (r"/api/k8s/namespaces", MyNamespacesHandler),
    (r"/api/k8s/([^/]+)/" + NAME + "/pods", PodsHandler),
    (r"/k8s", PodPickerPage),
    (r"/admin/clusters", ClustersPage),
    (r"/k8s/([^/]+)/" + NAME + "/" + NAME, PodTerminalPage),
    (r"/ws/k8s/([^/]+)/" + NAME + "/" + NAME, PodTerminalSocket),
]
