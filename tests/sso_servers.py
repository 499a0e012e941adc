"""Real identity servers for the SSO tests: an OpenID provider process (PyPI oidc-provider-mock) and Debian's
slapd, each started in a temporary directory on a free loopback port, with a test CA for TLS."""
from __future__ import annotations

import datetime
import json
import signal
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import VENV_BIN, free_port, stop_process, wait_port

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret-1"
READER_DN = f"cn=reader,{SUFFIX}"
READER_PW = "reader-secret-1"


# ---- OpenID provider ---------------------------------------------------------------------------------------
@dataclass
class OpenIdProvider:
    """A running oidc-provider-mock: its issuer URL and process."""

    issuer: str
    proc: subprocess.Popen

    def stop(self) -> None:
        stop_process(self.proc)

    def set_user(self, sub: str, claims: dict[str, Any]) -> None:
        """Give a subject its claims (the provider's own API: PUT /users/<sub>)."""
        import urllib.request
        request = urllib.request.Request(f"{self.issuer}/users/{sub}", data=json.dumps(claims).encode(), method="PUT",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 204, response.status


def start_openid_provider(log: Path, *, token_max_age: int | None = None, host: str = "127.0.0.1") -> OpenIdProvider:
    """oidc-provider-mock on a free port (nonce required, like a strict provider)."""
    port = free_port()
    args = [str(VENV_BIN / "oidc-provider-mock"), "--host", "127.0.0.1", "--port", str(port), "--require-nonce", "true"]
    if token_max_age is not None:
        args += ["--token-max-age", str(token_max_age)]
    out = open(log, "ab")
    try:
        proc = subprocess.Popen(args, stdout=out, stderr=out, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    finally:
        out.close()
    wait_port("127.0.0.1", port, proc=proc)
    return OpenIdProvider(issuer=f"http://{host}:{port}", proc=proc)


# ---- a test CA -------------------------------------------------------------------------------------------
@dataclass
class TestCA:
    """A CA and one server certificate for 127.0.0.1 / localhost, as PEM files in a directory."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_ca(where: Path, name: str = "Bastion test CA") -> TestCA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    where.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = TestCA(where / "ca.pem", where / "server.pem", where / "server.key")
    out.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    out.key_file.chmod(0o600)
    return out


# ---- slapd -------------------------------------------------------------------------------------------------
SEED = f"""\
dn: {SUFFIX}
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: {READER_DN}
objectClass: simpleSecurityObject
objectClass: organizationalRole
cn: reader
userPassword: {READER_PW}

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups
"""


@dataclass
class Slapd:
    """A private slapd: its directory, port, CA, and the process (started by `start`)."""

    root: Path
    ca: TestCA
    port: int = 0
    ldaps_port: int = 0
    proc: subprocess.Popen | None = None
    users: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def _conf(self) -> Path:
        conf = self.root / "slapd.conf"
        conf.write_text(textwrap.dedent(f"""\
            include /etc/ldap/schema/core.schema
            include /etc/ldap/schema/cosine.schema
            include /etc/ldap/schema/inetorgperson.schema
            include /etc/ldap/schema/nis.schema
            modulepath /usr/lib/ldap
            moduleload back_mdb
            pidfile {self.root}/slapd.pid
            TLSCACertificateFile {self.ca.ca_file}
            TLSCertificateFile {self.ca.cert_file}
            TLSCertificateKeyFile {self.ca.key_file}
            database mdb
            maxsize 16777216
            suffix "{SUFFIX}"
            rootdn "{ROOT_DN}"
            rootpw {ROOT_PW}
            directory {self.root}/db
            access to attrs=userPassword by anonymous auth by * none
            access to * by users read by * none
            """))
        return conf

    def seed(self, users: dict[str, dict[str, Any]], groups: dict[str, list[str]]) -> None:
        """Write the tree offline (slapadd): users {uid: {password, employeeType?}}, groups {cn: [uid, ...]}."""
        (self.root / "db").mkdir(parents=True, exist_ok=True)
        parts = [SEED]
        for uid, attrs in users.items():
            extra = f"employeeType: {attrs['employeeType']}\n" if attrs.get("employeeType") else ""
            parts.append(f"dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\n"
                         f"sn: {uid}\nuserPassword: {attrs['password']}\n{extra}")
        for cn, members in groups.items():
            lines = "".join(f"member: uid={m},ou=people,{SUFFIX}\n" for m in members)
            parts.append(f"dn: cn={cn},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {cn}\n{lines}")
        ldif = self.root / "seed.ldif"
        ldif.write_text("\n".join(parts))
        subprocess.run([SLAPADD, "-f", str(self._conf()), "-l", str(ldif)], check=True, capture_output=True, timeout=60)

    def start(self) -> "Slapd":
        self.port = self.port or free_port()
        self.ldaps_port = self.ldaps_port or free_port()
        log = open(self.root / "slapd.log", "ab")
        try:
            # -d 0: stay in the foreground (our child, ended by PID), logging nothing
            listen = f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.ldaps_port}/"
            self.proc = subprocess.Popen([SLAPD, "-f", str(self._conf()), "-h", listen, "-d", "0"], stdout=log, stderr=log)
        finally:
            log.close()
        wait_port("127.0.0.1", self.port, proc=self.proc)
        wait_port("127.0.0.1", self.ldaps_port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a test may have frozen it
        stop_process(self.proc)

    def admin(self) -> Any:
        """An ldap3 connection bound as the root DN (to change the tree while slapd runs)."""
        from ldap3 import Connection, Server
        conn = Connection(Server("127.0.0.1", port=self.port, connect_timeout=5), ROOT_DN, ROOT_PW, receive_timeout=5,
                          auto_bind=True)
        return conn
