"""Starting the Kubernetes API test server (tests/kubeapi/server.py): a CA and a server certificate made here, the
tokens and their rules, the pods, a kubeconfig for the real kubectl, and restart/stop by PID."""
from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from waiting import wait_until, wait_until_sync

SERVER = Path(__file__).resolve().parent / "server.py"
START_TIMEOUT = 60.0  # seconds for the server to make its pods' sandboxes and listen (a loaded machine is slow)
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL

# Pods of the test cluster: several namespaces, a multi-container pod, a pod without bash, Pending and CrashLoopBackOff.
DEFAULT_PODS: list[dict[str, Any]] = [
    {"namespace": "team-a", "name": "web-0", "labels": {"app": "web", "tier": "front"}, "age": 3600,
     "containers": [{"name": "app", "image": "debian"}, {"name": "sidecar", "image": "debian"}]},
    {"namespace": "team-a", "name": "tools", "labels": {"app": "tools"}, "age": 600,
     "containers": [{"name": "box", "image": "busybox"}]},
    {"namespace": "team-a", "name": "queued", "labels": {"app": "web"}, "phase": "Pending", "age": 30,
     "containers": [{"name": "app", "image": "debian"}]},
    {"namespace": "team-a", "name": "crashy", "labels": {"app": "web"}, "age": 900,
     "containers": [{"name": "app", "image": "debian", "state": "waiting", "reason": "CrashLoopBackOff", "restarts": 7}]},
    {"namespace": "team-a", "name": "distroless", "labels": {"app": "static"}, "age": 600,
     "containers": [{"name": "static", "image": "scratch"}]},
    {"namespace": "team-b", "name": "db-0", "labels": {"app": "db"}, "age": 7200,
     "containers": [{"name": "db", "image": "debian"}]},
    {"namespace": "secret-ns", "name": "vault-0", "labels": {"app": "vault"}, "age": 7200,
     "containers": [{"name": "vault", "image": "debian"}]},
]

ALL = [{"verbs": ["*"], "resources": ["*"], "namespaces": ["*"]}]
READ_ONLY = [{"verbs": ["get", "list"], "resources": ["pods", "namespaces"], "namespaces": ["*"]}]


def _outside_loop(what: str) -> None:
    """Refuse a blocking call on a running event loop: it would freeze Bastion (same loop) while it waits."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"KubeAPI.{what}() blocks; on the event loop, await KubeAPI.a{what}() instead")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "bastion-test-ca") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA key and certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> tuple[bytes, bytes]:
    """A server certificate for 127.0.0.1 and localhost signed by the CA: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("kube-apiserver")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.DNSName("kubernetes"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@dataclass
class KubeAPI:
    """A running test API server: its URL, CA bundle, tokens by role, and the log of what reached it."""

    dir: Path
    ca_pem: str
    tokens: dict[str, str]  # role name → bearer token
    config: dict[str, Any]
    proc: subprocess.Popen | None = None
    port: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _launch(self) -> None:
        """Start the server process. Its stdout goes to a file, not a pipe: the pods' sandboxes inherit it, and a
        pipe they hold open would keep a reader waiting after the server itself has died."""
        self.config["port"] = self.port
        cfg = self.dir / "config.json"
        cfg.write_text(json.dumps(self.config))
        out = self.dir / "server.out"
        out.write_text("")
        with out.open("ab") as stdout, (self.dir / "server.err").open("ab") as stderr:
            self.proc = subprocess.Popen([sys.executable, str(SERVER), str(cfg)], stdin=subprocess.DEVNULL,
                                         stdout=stdout, stderr=stderr)

    def _listening(self) -> bool:
        """Whether the server has said `listening <port>` (then the port is known); raise if it died first."""
        for line in (self.dir / "server.out").read_text().splitlines():
            if line.startswith("listening "):
                self.port = int(line.split()[1])
                return True
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError("the Kubernetes API test server did not start (exit status "
                               f"{self.proc.returncode}): " + (self.dir / "server.err").read_text()[-2000:])
        return False

    def _not_started(self) -> None:
        self._kill()
        raise AssertionError(f"the Kubernetes API test server did not listen within {START_TIMEOUT:.0f}s: "
                             + (self.dir / "server.err").read_text()[-2000:])

    def start(self) -> None:
        """Start (or restart on the same port) the server process and wait, at most START_TIMEOUT, for it to
        listen. Blocking: for fixtures outside the event loop; a test inside it awaits `astart()`."""
        _outside_loop("start")
        self._launch()
        try:
            wait_until_sync(self._listening, START_TIMEOUT, what="the Kubernetes API test server listening")
        except AssertionError:
            self._not_started()

    async def astart(self) -> None:
        """`start()` for code on the event loop: the loop keeps running (Bastion in this process with it)."""
        self._launch()
        try:
            await wait_until(self._listening, START_TIMEOUT, what="the Kubernetes API test server listening")
        except AssertionError:
            self._not_started()

    def _exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)  # SIGKILL: bounded by the kernel, not by the server

    def stop(self) -> None:
        """End the server process we started (its sandboxes die with it): SIGTERM, then SIGKILL after
        STOP_TIMEOUT. Blocking, for fixtures; a test on the event loop awaits `astop()`."""
        _outside_loop("stop")
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
        self.proc = None

    async def astop(self) -> None:
        """`stop()` for code on the event loop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await wait_until(self._exited, STOP_TIMEOUT, what="the Kubernetes API test server ending")
            except AssertionError:
                self._kill()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    async def arestart(self) -> None:
        """Stop and start again on the same port, without blocking the event loop."""
        await self.astop()
        await self.astart()

    def log(self) -> list[dict[str, Any]]:
        """What the server noted: exec requests (with protocol, tty), resizes, stdin closes, exits, deletions."""
        path = self.dir / "server.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    async def delete_pod(self, namespace: str, name: str) -> int:
        """DELETE a pod through the API as the admin role; return the HTTP status."""
        import ssl
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest
        request = HTTPRequest(f"{self.url}/api/v1/namespaces/{namespace}/pods/{name}", method="DELETE",
                              headers={"Authorization": f"Bearer {self.tokens['admin']}"},
                              ssl_options=ssl.create_default_context(cadata=self.ca_pem))
        return (await AsyncHTTPClient().fetch(request, raise_error=False)).code

    def kubeconfig(self, role: str, name: str = "kubeconfig") -> Path:
        """A kubeconfig for the real kubectl with this role's token and the CA."""
        path = self.dir / f"{name}-{role}.json"
        ca = self.dir / "ca.crt"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority": str(ca)}}],
            "users": [{"name": role, "user": {"token": self.tokens[role]}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": role, "namespace": "team-a"}}]}))
        return path


def make_kubeapi(dir: Path, *, pods: list[dict[str, Any]] | None = None, **options: Any) -> KubeAPI:
    """Write CA, certificate and config for a test cluster (not started). Roles: admin (everything), reader (get/list
    pods everywhere, no exec), team-a (list pods and exec in team-a only)."""
    dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca = make_ca()
    cert_pem, key_pem = make_server_cert(ca_key, ca)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    (dir / "ca.crt").write_text(ca_pem)
    (dir / "server.crt").write_bytes(cert_pem)
    key_path = dir / "server.key"
    key_path.write_bytes(key_pem)
    os.chmod(key_path, 0o600)
    roles = {
        "admin": ALL,
        "reader": READ_ONLY,
        "team-a": [{"verbs": ["get", "list"], "resources": ["pods"], "namespaces": ["team-a"]},
                   {"verbs": ["create"], "resources": ["pods/exec"], "namespaces": ["team-a"]}],
    }
    tokens = {role: secrets.token_urlsafe(24) for role in roles}
    config: dict[str, Any] = {
        "cert": str(dir / "server.crt"), "key": str(key_path), "state_dir": str(dir / "state"), "log": str(dir / "server.log"),
        "tokens": {tokens[r]: {"user": f"system:serviceaccount:bastion:{r}", "rules": rules} for r, rules in roles.items()},
        "pods": pods if pods is not None else DEFAULT_PODS,
    }
    config.update(options)
    return KubeAPI(dir=dir, ca_pem=ca_pem, tokens=tokens, config=config)
