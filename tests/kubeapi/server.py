"""A small Kubernetes API server for tests: TLS, bearer tokens, per-token RBAC, discovery, pods, and exec.

Run as `python tests/kubeapi/server.py <config.json>` (tests/kubeapi/harness.py writes the config, the CA and the
certificates, and starts it). It prints `listening <port>` on stdout once it accepts connections.

Each running container is a Linux-namespace sandbox started with `unshare` (PID, mount, UTS and IPC namespaces;
its own /proc, /root and /tmp; the pod name as host name). A container whose image is "busybox" gets a root file
system holding only busybox (so it has `sh` but no `bash`); others see the host's files. `exec` enters the
sandbox with `nsenter`, on a PTY when `tty=true`, and reports the exit code in the status channel exactly as the
kubelet does (v4/v5 channel protocol: 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize; v5 adds 255 CLOSE).
"""
from __future__ import annotations

import asyncio
import ctypes
import datetime
import errno
import fcntl
import json
import os
import pty
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX_TOOLS = ("sh", "ls", "cat", "echo", "sleep", "hostname", "ps", "env", "id", "pwd", "stty", "true", "false",
                 "printf", "wc", "head", "tail", "mkdir", "rm", "touch", "uname", "seq", "grep", "kill")


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A metav1.Status failure object."""
    doc: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": reason, "code": code}
    if details:
        doc["details"] = details
    return doc


def rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_age(seconds: float) -> str:
    """kubectl's short human duration (duration.HumanDuration, abridged)."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 48:
        return f"{h}h"
    return f"{h // 24}d"


# Loaded here, in the parent: the children's preexec functions run between fork and exec while the server has
# threads (executor, child watcher), where loading a library (dlopen's lock) could deadlock the child.
LIBC = ctypes.CDLL("libc.so.6", use_errno=True)


def _pdeathsig() -> None:
    """In the child: die with the server, even when it is killed (the sandbox's init follows via --kill-child)."""
    LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Sandbox:
    """One container: a PID/mount/UTS/IPC namespace whose init sleeps; exec enters it."""

    def __init__(self, pod: "Pod", name: str, image: str, state_dir: Path) -> None:
        self.pod = pod
        self.name = name
        self.image = image
        self.root: Path | None = None
        if image in ("busybox", "scratch"):  # scratch: the busybox binary alone, no shell on the PATH
            self.root = state_dir / f"rootfs-{pod.namespace}-{pod.name}-{name}"
            self._busybox_root(self.root, tools=BUSYBOX_TOOLS if image == "busybox" else ())
        self.proc: subprocess.Popen | None = None
        self.init_pid = 0

    @staticmethod
    def _busybox_root(root: Path, tools: tuple[str, ...]) -> None:
        for d in ("bin", "proc", "tmp", "root", "etc"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
        for tool in tools:
            link = root / "bin" / tool
            if not link.exists():
                link.symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")

    def start(self) -> None:
        """Start the sandbox's init and learn its PID (as seen from here)."""
        if self.root is not None:
            script = 'hostname "$0"; exec /bin/busybox sleep 2147483647'
            argv = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--mount-proc", f"--root={self.root}",
                    "--kill-child", "--", "/bin/busybox", "sh", "-c", script, self.pod.name]
        else:
            script = ('hostname "$0"; mount -t tmpfs -o mode=0700 tmpfs /root; mount -t tmpfs -o mode=1777 tmpfs /tmp;'
                      ' exec sleep infinity')
            argv = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--mount-proc", "--kill-child", "--",
                    "/bin/sh", "-c", script, self.pod.name]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_pdeathsig, cwd="/")
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = children.read_text().split() if children.exists() else []
            if text:
                self.init_pid = int(text[0])
                # wait until the init has exec'd its sleep (its namespaces and mounts are in place then)
                cmdline = Path(f"/proc/{self.init_pid}/cmdline").read_bytes()
                if b"sleep" in cmdline:
                    return
            time.sleep(0.01)
        raise RuntimeError(f"sandbox {self.pod.name}/{self.name} did not start")

    def stop(self) -> None:
        """Kill the sandbox (its PID namespace dies with its init)."""
        if self.init_pid:
            try:
                os.kill(self.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait(5)

    def resolves(self, command: str) -> bool:
        """Whether the container's PATH holds `command` (the runtime's check before it starts the process)."""
        base = self.root or Path("/")
        if "/" in command:
            target = base / command.lstrip("/")
            return target.is_file() and os.access(target, os.X_OK)
        return any(os.access(base / d.lstrip("/") / command, os.X_OK) for d in PATH.split(":"))

    def argv(self, command: list[str]) -> list[str]:
        return ["nsenter", f"--target={self.init_pid}", "--pid", "--mount", "--uts", "--ipc", "--root", "--wd", "--",
                *command]

    def env(self, tty: bool) -> dict[str, str]:
        env = {"PATH": PATH, "HOSTNAME": self.pod.name, "HOME": "/root"}
        if tty:
            env["TERM"] = "xterm"
        return env


class Pod:
    """A pod of the test cluster, with its Pod JSON and its containers' sandboxes."""

    def __init__(self, spec: dict[str, Any], state_dir: Path, node: str) -> None:
        self.namespace = spec["namespace"]
        self.name = spec["name"]
        self.labels: dict[str, str] = spec.get("labels", {})
        self.phase = spec.get("phase", "Running")
        self.created = time.time() - spec.get("age", 300)
        self.uid = str(uuid.uuid4())
        self.node = node
        self.ip = spec.get("ip", "10.244.0.10")
        self.deleted_at = 0.0
        self.containers: list[dict[str, Any]] = spec["containers"]
        self.sandboxes: dict[str, Sandbox] = {}
        if self.phase == "Running":
            for c in self.containers:
                if c.get("state", "running") == "running":
                    self.sandboxes[c["name"]] = Sandbox(self, c["name"], c.get("image", "debian"), state_dir)

    def start(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.start()

    def stop(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.stop()

    def container_status(self, c: dict[str, Any]) -> dict[str, Any]:
        image = c.get("image", "debian")
        doc: dict[str, Any] = {"name": c["name"], "image": f"docker.io/library/{image}:latest",
                               "imageID": f"docker.io/library/{image}@sha256:{'0' * 64}",
                               "restartCount": c.get("restarts", 0), "started": False, "ready": False}
        if self.phase != "Running":
            doc["state"] = {"waiting": {"reason": "ContainerCreating"}}
        elif c.get("state", "running") == "running":
            doc.update(ready=True, started=True, containerID=f"containerd://{uuid.uuid5(uuid.NAMESPACE_URL, self.uid + c['name']).hex}",
                       state={"running": {"startedAt": rfc3339(self.created + 5)}})
        else:
            doc["state"] = {"waiting": {"reason": c.get("reason", "CrashLoopBackOff"),
                                        "message": f"back-off 5m0s restarting failed container={c['name']} pod={self.name}_{self.namespace}({self.uid})"}}
            doc["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": rfc3339(self.created + 60),
                                               "finishedAt": rfc3339(self.created + 61)}}
        return doc

    def to_json(self, resource_version: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "uid": self.uid,
                                "resourceVersion": resource_version, "creationTimestamp": rfc3339(self.created),
                                "labels": self.labels}
        if self.deleted_at:
            meta["deletionTimestamp"] = rfc3339(self.deleted_at)
            meta["deletionGracePeriodSeconds"] = 30
        statuses = [self.container_status(c) for c in self.containers]
        all_ready = all(s["ready"] for s in statuses)
        status_doc: dict[str, Any] = {"phase": self.phase, "qosClass": "BestEffort", "containerStatuses": statuses,
                                      "conditions": [{"type": "PodScheduled", "status": "True" if self.phase != "Pending" or self.node else "False",
                                                      "lastTransitionTime": rfc3339(self.created)},
                                                     {"type": "Ready", "status": "True" if all_ready else "False",
                                                      "lastTransitionTime": rfc3339(self.created + 5)}]}
        if self.phase == "Running":
            status_doc.update(hostIP="10.0.0.5", podIP=self.ip, podIPs=[{"ip": self.ip}], startTime=rfc3339(self.created))
        spec: dict[str, Any] = {"containers": [{"name": c["name"], "image": c.get("image", "debian"),
                                                "imagePullPolicy": "IfNotPresent", "resources": {},
                                                "terminationMessagePath": "/dev/termination-log",
                                                "terminationMessagePolicy": "File"} for c in self.containers],
                                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                                "serviceAccountName": "default", "schedulerName": "default-scheduler"}
        if self.phase != "Pending":
            spec["nodeName"] = self.node
        return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec, "status": status_doc}

    def table_cells(self) -> list[Any]:
        statuses = [self.container_status(c) for c in self.containers]
        ready = sum(1 for s in statuses if s["ready"])
        reason = self.phase
        for s in statuses:
            waiting = s.get("state", {}).get("waiting")
            if waiting and self.phase == "Running":
                reason = waiting["reason"]
        if self.phase == "Pending":
            reason = "Pending"
        if self.deleted_at:
            reason = "Terminating"
        restarts = sum(s["restartCount"] for s in statuses)
        return [self.name, f"{ready}/{len(statuses)}", reason, str(restarts), short_age(time.time() - self.created),
                self.ip if self.phase == "Running" else "<none>", self.node if self.phase != "Pending" else "<none>",
                "<none>", "<none>"]


class Cluster:
    """The cluster's state: namespaces, pods, tokens and their rules."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.state_dir = Path(config["state_dir"])
        self.tokens: dict[str, dict[str, Any]] = config["tokens"]
        self.namespaces: list[str] = config.get("namespaces") or sorted({p["namespace"] for p in config["pods"]})
        self.pods: dict[tuple[str, str], Pod] = {}
        self.revision = 1000
        for spec in config["pods"]:
            pod = Pod(spec, self.state_dir, config.get("node", "node-1"))
            self.pods[(pod.namespace, pod.name)] = pod
        self.log_path = Path(config["log"]) if config.get("log") else None

    def start(self) -> None:
        for pod in self.pods.values():
            pod.start()

    def stop(self) -> None:
        for pod in self.pods.values():
            pod.stop()

    def note(self, **entry: Any) -> None:
        """Append one line to the server's log (tests read it to see what reached the server)."""
        if self.log_path is not None:
            with self.log_path.open("a") as f:
                f.write(json.dumps(entry) + "\n")

    def allowed(self, token: dict[str, Any], verb: str, resource: str, namespace: str) -> bool:
        for rule in token.get("rules", []):
            if (verb in rule["verbs"] or "*" in rule["verbs"]) and (resource in rule["resources"] or "*" in rule["resources"]) \
                    and ("*" in rule.get("namespaces", ["*"]) or namespace in rule.get("namespaces", [])):
                return True
        return False


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: a=b, a==b, a!=b, a, !a (comma-separated, all must hold)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class Base(tornado.web.RequestHandler):
    """Bearer auth and RBAC, answered with Status objects like the real API server."""

    cluster: Cluster
    token: dict[str, Any]

    def initialize(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def check_xsrf_cookie(self) -> None:
        pass

    def send_status(self, doc: dict[str, Any]) -> None:
        self.set_status(doc["code"])
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))

    def send_json(self, doc: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))

    def authenticate(self) -> bool:
        header = self.request.headers.get("Authorization", "")
        token = self.cluster.tokens.get(header[7:]) if header.startswith("Bearer ") else None
        if token is None:
            self.send_status(status(401, "Unauthorized", "Unauthorized"))
            return False
        self.token = token
        return True

    def authorize(self, verb: str, resource: str, namespace: str, name: str = "") -> bool:
        if self.cluster.allowed(self.token, verb, resource, namespace):
            return True
        kind, _, sub = resource.partition("/")
        subject = f'{kind} "{name}"' if name else kind
        where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        self.send_status(status(403, "Forbidden", f'{subject} is forbidden: User "{self.token["user"]}" cannot {verb} '
                                                  f'resource "{resource}" in API group "" {where}',
                                {"name": name, "kind": kind} if name else {"kind": kind}))
        return False


class Version(Base):
    def get(self) -> None:
        self.send_json({"major": "1", "minor": "33", "gitVersion": "v1.33.0-bastion-test", "gitCommit": "0" * 40,
                        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
                        "compiler": "gc", "platform": "linux/amd64"})


class Discovery(Base):
    def get(self, which: str) -> None:
        if not self.authenticate():
            return
        host = self.request.host
        if which == "api":
            self.send_json({"kind": "APIVersions", "versions": ["v1"],
                            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
        elif which == "apis":
            self.send_json({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        else:
            self.send_json({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
                 "verbs": ["get", "list"], "shortNames": ["ns"]},
                {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                 "verbs": ["delete", "get", "list"], "shortNames": ["po"], "categories": ["all"]},
                {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions",
                 "verbs": ["create", "get"]},
            ]})


class Namespaces(Base):
    def get(self, name: str | None = None) -> None:
        if not self.authenticate():
            return
        if name:
            if not self.authorize("get", "namespaces", "", name):
                return
            if name not in self.cluster.namespaces:
                return self.send_status(status(404, "NotFound", f'namespaces "{name}" not found', {"name": name, "kind": "namespaces"}))
            return self.send_json(self._ns(name))
        if not self.authorize("list", "namespaces", ""):
            return
        self.send_json({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self.cluster.revision)},
                        "items": [self._ns(n) for n in self.cluster.namespaces]})

    def _ns(self, name: str) -> dict[str, Any]:
        return {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                "creationTimestamp": rfc3339(time.time() - 86400)}, "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}}


class Pods(Base):
    def get(self, namespace: str | None = None, name: str | None = None) -> None:
        if not self.authenticate():
            return
        if name:
            if not self.authorize("get", "pods", namespace or "", name):
                return
            pod = self.cluster.pods.get((namespace or "", name))
            if pod is None:
                return self.send_status(status(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}))
            return self.send_json(pod.to_json(str(self.cluster.revision)))
        if not self.authorize("list", "pods", namespace or ""):
            return
        selector = self.get_query_argument("labelSelector", "")
        pods = sorted((p for p in self.cluster.pods.values() if (namespace is None or p.namespace == namespace)
                       and selector_matches(selector, p.labels)), key=lambda p: (p.namespace, p.name))
        rv = str(self.cluster.revision)
        if "as=Table" in self.request.headers.get("Accept", ""):
            columns = [("Name", "string", "name", 0), ("Ready", "string", "", 0), ("Status", "string", "", 0),
                       ("Restarts", "string", "", 0), ("Age", "string", "", 0), ("IP", "string", "", 1),
                       ("Node", "string", "", 1), ("Nominated Node", "string", "", 1), ("Readiness Gates", "string", "", 1)]
            self.send_json({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
                            "columnDefinitions": [{"name": n, "type": t, "format": f, "description": n, "priority": p}
                                                  for n, t, f, p in columns],
                            "rows": [{"cells": p.table_cells(), "object": {
                                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                "metadata": p.to_json(rv)["metadata"]}} for p in pods]})
            return
        self.send_json({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv},
                        "items": [p.to_json(rv) for p in pods]})

    def delete(self, namespace: str, name: str) -> None:
        """Delete a pod: its containers are killed (running execs end as the runtime ends them), then it is gone."""
        if not self.authenticate() or not self.authorize("delete", "pods", namespace, name):
            return
        pod = self.cluster.pods.get((namespace, name))
        if pod is None:
            return self.send_status(status(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}))
        pod.deleted_at = time.time()
        self.cluster.revision += 1
        doc = pod.to_json(str(self.cluster.revision))
        pod.stop()
        del self.cluster.pods[(namespace, name)]
        self.cluster.note(event="deleted", pod=f"{namespace}/{name}")
        self.send_json(doc)


async def read_fd(fd: int) -> bytes:
    """Read what a non-blocking fd has, waiting for it on the loop; b"" at end of file (EIO: the PTY closed)."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, 65536)
        except BlockingIOError:
            waiter = loop.create_future()
            loop.add_reader(fd, lambda: waiter.done() or waiter.set_result(None))
            try:
                await waiter
            finally:
                loop.remove_reader(fd)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise


class Exec(tornado.websocket.WebSocketHandler):
    """The exec WebSocket (v4/v5 channel protocol) into a container's sandbox."""

    cluster: Cluster
    protocol = ""

    def initialize(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.process: subprocess.Popen | None = None
        self.master = -1
        self.stdin_pipe: asyncio.StreamWriter | None = None
        self.aproc: asyncio.subprocess.Process | None = None
        self.pending_in: list[bytes] = []
        self.close_pending = False  # a v5 CLOSE of stdin that came before the process started
        self.size: tuple[int, int] | None = None  # a resize that came before the PTY existed (applied to it)
        self.done = False

    def _status(self, doc: dict[str, Any]) -> None:
        self.set_status(doc["code"])
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))

    async def get(self, namespace: str, name: str) -> None:  # type: ignore[override]
        if self.cluster.config.get("exec_stall"):
            # what a proxy that swallows the upgrade does: it neither answers nor closes
            self.cluster.note(event="exec_stalled", pod=f"{namespace}/{name}")
            await asyncio.Event().wait()
        if self._admitted(namespace, name):
            await super().get(namespace, name)

    def post(self, namespace: str, name: str) -> None:
        """The SPDY flavour of exec (what kubectl falls back to): same checks, then refused (not implemented here)."""
        if self._admitted(namespace, name):
            self._status(status(400, "BadRequest", "this test server speaks only the WebSocket exec protocol"))

    def _admitted(self, namespace: str, name: str) -> bool:
        """The API server's and kubelet's checks before the upgrade; False once a Status has been answered."""
        header = self.request.headers.get("Authorization", "")
        token = self.cluster.tokens.get(header[7:]) if header.startswith("Bearer ") else None
        if token is None:
            self._status(status(401, "Unauthorized", "Unauthorized"))
            return False
        if not self.cluster.allowed(token, "create", "pods/exec", namespace):
            self._status(status(403, "Forbidden", f'pods "{name}" is forbidden: User "{token["user"]}" cannot create '
                                       f'resource "pods/exec" in API group "" in the namespace "{namespace}"',
                                       {"name": name, "kind": "pods"}))
            return False
        pod = self.cluster.pods.get((namespace, name))
        if pod is None:
            self._status(status(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"}))
            return False
        self.command = self.get_query_arguments("command")
        self.tty = self.get_query_argument("tty", "false") == "true"
        self.want_stdin = self.get_query_argument("stdin", "false") == "true"
        self.want_stdout = self.get_query_argument("stdout", "false") == "true"
        self.want_stderr = self.get_query_argument("stderr", "false") == "true" and not self.tty
        container = self.get_query_argument("container", "") or pod.containers[0]["name"]
        if container not in {c["name"] for c in pod.containers}:
            self._status(status(400, "BadRequest", f"container {container} is not valid for pod {name}"))
            return False
        if not self.command:
            self._status(status(400, "BadRequest", "you must specify at least 1 command"))
            return False
        if pod.phase == "Pending":
            self._status(status(400, "BadRequest", f"pod {name} does not have a host assigned"))
            return False
        sandbox = pod.sandboxes.get(container)
        if sandbox is None:
            self._status(status(400, "BadRequest", f'container not found ("{container}")'))
            return False
        if not self.cluster.config.get("websocket_exec", True) or self.request.headers.get("Upgrade", "").lower() != "websocket":
            # what a cluster (or a proxy in front of it) that does not pass WebSocket upgrades answers
            self._status(status(400, "BadRequest", "Upgrade request required"))
            return False
        offered = [p.strip() for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        supported = self.cluster.config.get("protocols", [V5, V4])
        if not any(p in supported for p in offered):
            self._status(status(400, "BadRequest", f"unable to upgrade: none of the requested protocols "
                                       f"{offered} is supported ({', '.join(supported)})"))
            return False
        self.sandbox = sandbox
        return True

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        for p in subprotocols:  # the client's order of preference, as the API server does
            if p in self.cluster.config.get("protocols", [V5, V4]):
                self.protocol = p
                return p
        return None

    async def open(self, namespace: str, name: str) -> None:  # type: ignore[override]
        self.set_nodelay(True)
        self.cluster.note(event="exec", pod=f"{namespace}/{name}", container=self.sandbox.name, command=self.command,
                          tty=self.tty, stdin=self.want_stdin, protocol=self.protocol)
        if not self.sandbox.resolves(self.command[0]):
            await self._send(STATUS, json.dumps(status(
                500, "InternalError", "Internal error occurred: error executing command in container: failed to exec in "
                f"container: failed to start exec: OCI runtime exec failed: exec failed: unable to start container process: "
                f'exec: "{self.command[0]}": executable file not found in $PATH: unknown',
                {"causes": [{"message": f'exec: "{self.command[0]}": executable file not found in $PATH'}]})).encode())
            self.close(1000)
            return
        asyncio.get_running_loop().create_task(self._run())

    async def _send(self, channel: int, data: bytes) -> None:
        try:
            await self.write_message(bytes([channel]) + data, binary=True)  # awaited: a slow reader pauses the process
        except tornado.websocket.WebSocketClosedError:
            pass

    async def _run(self) -> None:
        argv = self.sandbox.argv(self.command)
        env = self.sandbox.env(self.tty)
        if self.tty:
            master, slave = pty.openpty()
            if self.size is not None:
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", self.size[1], self.size[0], 0, 0))
            self.master = master
            os.set_blocking(master, False)

            def controlling_tty() -> None:
                _pdeathsig()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                                            preexec_fn=controlling_tty)
            os.close(slave)
            for data in self.pending_in:
                self._write_stdin(data)
            self.pending_in.clear()
            while True:
                data = await read_fd(master)
                if not data:
                    break
                await self._send(STDOUT, data)
            code = await asyncio.get_running_loop().run_in_executor(None, self.process.wait)
            os.close(master)
            self.master = -1
        else:
            self.aproc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=subprocess.PIPE if self.want_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_pdeathsig)
            self.stdin_pipe = self.aproc.stdin
            for data in self.pending_in:
                self._write_stdin(data)
            self.pending_in.clear()
            if self.close_pending and self.stdin_pipe is not None:
                self.stdin_pipe.close()

            async def pump(stream: asyncio.StreamReader, channel: int, wanted: bool) -> None:
                while data := await stream.read(65536):
                    if wanted:
                        await self._send(channel, data)
            assert self.aproc.stdout is not None and self.aproc.stderr is not None
            await asyncio.gather(pump(self.aproc.stdout, STDOUT, self.want_stdout),
                                 pump(self.aproc.stderr, STDERR, self.want_stderr))
            code = await self.aproc.wait()
        if code < 0:
            code = 128 - code
        self.done = True
        self.cluster.note(event="exit", command=self.command, code=code)
        if code == 0:
            doc: dict[str, Any] = {"metadata": {}, "status": "Success"}
        else:
            doc = {"metadata": {}, "status": "Failure",
                   "message": f"command terminated with non-zero exit code: error executing command {self.command}, exit code {code}",
                   "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        await self._send(STATUS, json.dumps(doc).encode())
        self.close(1000)

    def _write_stdin(self, data: bytes) -> None:
        if self.master >= 0:
            try:
                os.write(self.master, data)  # small interactive writes; a full PTY buffer is a test bug
            except OSError:
                pass
        elif self.stdin_pipe is not None:
            self.stdin_pipe.write(data)
        else:
            self.pending_in.append(data)

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, str) or not message:
            return
        channel, data = message[0], message[1:]
        if channel == STDIN and self.want_stdin:
            self._write_stdin(data)
        elif channel == RESIZE:
            size = json.loads(data)
            self.cluster.note(event="resize", width=size.get("Width"), height=size.get("Height"))
            self.size = (size["Width"], size["Height"])
            if self.master >= 0:
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", size["Height"], size["Width"], 0, 0))
        elif channel == CLOSE and self.protocol == V5 and data[:1] == bytes([STDIN]):
            self.cluster.note(event="close_stdin")
            if self.stdin_pipe is not None:
                self.stdin_pipe.close()
            elif self.master >= 0:
                self._write_stdin(b"\x04")
            else:
                self.close_pending = True

    def on_close(self) -> None:
        if self.done:
            return
        # the client went away: the runtime hangs up the terminal (or closes stdin) and the process ends
        for proc in (self.process, self.aproc):
            if proc is not None and proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    cluster = Cluster(config)
    cluster.start()
    args = {"cluster": cluster}
    app = tornado.web.Application([
        (r"/version/?", Version, args),
        (r"/(api|apis|api/v1)/?", Discovery, args),
        (r"/api/v1/namespaces/?", Namespaces, args),
        (r"/api/v1/namespaces/([a-z0-9-]+)/?", Namespaces, args),
        (r"/api/v1/pods/?", Pods, args),
        (r"/api/v1/namespaces/([a-z0-9-]+)/pods/?", Pods, args),
        (r"/api/v1/namespaces/([a-z0-9-]+)/pods/([a-z0-9.-]+)/exec", Exec, args),
        (r"/api/v1/namespaces/([a-z0-9-]+)/pods/([a-z0-9.-]+)", Pods, args),
    ], websocket_ping_interval=0)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(config["cert"], config["key"])

    async def serve() -> None:
        server = tornado.httpserver.HTTPServer(app, ssl_options=tls)
        sockets = tornado.netutil.bind_sockets(config.get("port", 0), "127.0.0.1")
        server.add_sockets(sockets)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        print(f"listening {sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()
        server.stop()

    try:
        asyncio.run(serve())
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
