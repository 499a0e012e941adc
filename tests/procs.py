"""Processes the tests and the benchmarks start: free ports, waiting for a listener, ending by PID, and a real
`bastion serve` (init, admin password, serve). Standard library only, so tests/perf/ can use it as it is."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from waiting import wait_until_sync

VENV_BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Poll until something accepts connections on host:port (fail early if `proc` exits)."""
    def listening() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False
    try:
        wait_until_sync(listening, timeout, what=f"a listener on {host}:{port}")
    except AssertionError:
        raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s") from None


def wait_ready(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    """Wait until a `bastion serve` answers /healthz (it binds its port before opening the database)."""
    import urllib.error
    import urllib.request
    wait_port("127.0.0.1", port, timeout=timeout, proc=proc)

    def answers() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # it answers (503 while a dependency is down is still an answer)
        except OSError:
            return False
    wait_until_sync(answers, timeout, what=f"bastion on port {port} answering")


def stop_process(proc: subprocess.Popen | None) -> None:
    """End a process we started, by its PID."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_nx(data: Path, port: int) -> subprocess.Popen:
    """nx-27017 (a MongoDB-wire server on SQLite) on 127.0.0.1:port with its data in `data`."""
    proc = subprocess.Popen([str(VENV_BIN / "nx-27017"), "--data-dir", str(data), "--host", "127.0.0.1",
                             "--port", str(port), "--log-file", str(data / "nx.log"), "--pid-file", str(data / "nx.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port("127.0.0.1", port, proc=proc)
    return proc


def bastion_env(work: Path, **extra: str) -> dict[str, str]:
    """Environment for a `bastion` process with its data, database and recordings under `work`, on a free port."""
    return {**os.environ, "BASTION_SERVER_PORT": str(free_port()), "BASTION_SERVER_DATA_DIR": str(work / "var"),
            "BASTION_DATABASE_URL": f"sqlite:///{work / 'var' / 'bastion.db'}",
            "BASTION_TERMINAL_RECORDS_DIR": str(work / "records"), **extra}


def bastion_cli(env: dict[str, str], *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python -m bastion ARGS` with `env`."""
    return subprocess.run([sys.executable, "-m", "bastion", *args], env=env, input=stdin, text=True,
                          capture_output=True, check=check, timeout=timeout)


def init_bastion(env: dict[str, str], admin_password: str) -> None:
    """`bastion init`, then set the first admin's password."""
    bastion_cli(env, "init")
    bastion_cli(env, "user", "passwd", "admin", "--password-stdin", stdin=admin_password + "\n")


def serve_bastion(env: dict[str, str], log: Path | None = None, timeout: float = 30) -> subprocess.Popen:
    """Start `bastion serve` and wait until it listens; its output goes to `log` (or nowhere)."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([sys.executable, "-m", "bastion", "serve"], env=env, stdout=out, stderr=out)
    finally:
        if log is not None:
            out.close()  # the child holds its own descriptor
    wait_ready(int(env["BASTION_SERVER_PORT"]), proc=proc, timeout=timeout)
    return proc
