"""A real OpenSSH sshd on 127.0.0.x high ports with its own host key, config and authorized keys.

Used by the test fixtures and the benchmarks. Logs in as the current user with a generated key; when run as
root it also creates a local account `bastiontest` with a known password for password-auth tests.
"""
from __future__ import annotations

import getpass
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from procs import free_port, wait_port

SSHD = "/usr/sbin/sshd"
PASSWORD_USER = "bastiontest"
PASSWORD = "Bt-test-password-9"


def ensure_password_user() -> bool:
    """Create the password-auth test account when running as root (idempotent)."""
    if os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam(PASSWORD_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", PASSWORD_USER], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["chpasswd"], input=f"{PASSWORD_USER}:{PASSWORD}\n", text=True, check=True)
    return True


@dataclass
class SSHServer:
    """One sshd process; `endpoints` are its (address, port) pairs."""

    root: Path
    endpoints: list[tuple[str, int]]
    client_key: str  # private key (OpenSSH) that logs in as `username`
    username: str
    host_key_path: Path
    proc: subprocess.Popen | None = None
    extra_config: str = ""
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "sshd.log"

    @property
    def home(self) -> Path:
        """$HOME of the sessions (the working directory stays the account's own)."""
        return self.root / "home"

    @property
    def address(self) -> str:
        return self.endpoints[0][0]

    @property
    def port(self) -> int:
        return self.endpoints[0][1]

    def write_config(self) -> Path:
        listen = "\n".join(f"ListenAddress {a}:{p}" for a, p in self.endpoints)
        conf = self.root / "sshd_config"
        self.home.mkdir(exist_ok=True)
        self.home.chmod(0o755)  # whatever the umask: the password-auth account logs in with it too
        conf.write_text(f"""{listen}
HostKey {self.host_key_path}
PidFile {self.root / 'sshd.pid'}
AuthorizedKeysFile {self.root / 'authorized_keys'}
PermitRootLogin yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
MaxStartups 1000:30:2000
MaxSessions 1000
LoginGraceTime 30
ClientAliveInterval 0
LogLevel ERROR
PrintMotd no
PrintLastLog no
Subsystem sftp internal-sftp
AcceptEnv LANG LC_*
# Sessions get a home of their own, as on a fresh server: the login user's dotfiles on this machine are not the
# host under test (root's ~/.bashrc here runs `pyenv init`, whose rehash waits on a lock file that a shell killed
# mid-rehash leaves behind and prints "couldn't acquire lock ... for 1 seconds" into every later login).
SetEnv HOME={self.home}
{self.extra_config}
""")
        return conf

    def start(self) -> "SSHServer":
        conf = self.write_config()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        try:
            for addr, port in self.endpoints:
                wait_port(addr, port, timeout=max(0.1, deadline - time.monotonic()), proc=self.proc)
        except RuntimeError as err:
            raise RuntimeError(f"sshd does not listen: {err}; log: {self.log_path.read_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        """End the sshd we started (by its PID); its session children end with their connections."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill_sessions(self) -> None:
        """SIGKILL the listener and every per-connection sshd child it forked (the host 'dies')."""
        if not self.proc:
            return
        children = _descendants(self.proc.pid)
        for pid in [self.proc.pid] + children:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        self.proc.wait(10)

    def regenerate_host_key(self) -> None:
        self.host_key_path.unlink()
        Path(str(self.host_key_path) + ".pub").unlink()
        _keygen(self.host_key_path)


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = (int(x) for x in line.split())
        children.setdefault(pp, []).append(p)
    result, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            result.append(child)
            stack.append(child)
    return result


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def make_sshd(root: Path, addresses: list[str] | None = None, ports_per_address: int = 1) -> SSHServer:
    """Prepare (not start) an sshd with a fresh host key and a client key for the current user."""
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        raise RuntimeError("OpenSSH server is not installed (make test installs openssh-server)")
    root.mkdir(parents=True, exist_ok=True)
    host_key = root / "ssh_host_ed25519_key"
    _keygen(host_key)
    client = root / "client_key"
    _keygen(client)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    endpoints = [(a, free_port(a)) for a in (addresses or ["127.0.0.1"]) for _ in range(ports_per_address)]
    return SSHServer(root=root, endpoints=endpoints, client_key=client.read_text(), username=getpass.getuser(),
                     host_key_path=host_key)
