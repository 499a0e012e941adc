"""Slow and hostile HTTP clients against a real `bastion serve`: raw sockets that never finish their headers
(a byte a second), never finish a body, or sit idle are closed at the configured timeouts; the open-files
limit is raised to the hard limit and checked at start."""
from __future__ import annotations

import os
import resource
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from bastion.limits import http_server_options
from conftest import free_port, make_config, stop_process, wait_port


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until `bastion serve` answers HTTP (it binds its port before it opens the store)."""
    import urllib.error
    import urllib.request
    wait_port("127.0.0.1", port, proc=proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bastion serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)  # polling interval of this wait_until loop
    raise RuntimeError("bastion serve did not answer HTTP")

IDLE = 3  # [server] idle_timeout for these tests (seconds)
BODY = 3  # [server] body_timeout


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    return {**os.environ, "BASTION_SERVER_PORT": str(port), "BASTION_SERVER_DATA_DIR": str(tmp_path / "var"),
            "BASTION_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'bastion.db'}",
            "BASTION_TERMINAL_RECORDS_DIR": str(tmp_path / "records"), "BASTION_MODULES_DIR": str(tmp_path / "modules"),
            "BASTION_SERVER_IDLE_TIMEOUT": str(IDLE), "BASTION_SERVER_BODY_TIMEOUT": str(BODY), **extra}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bastion", "serve"], env=_env(tmp_path, port),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        yield port, proc
    finally:
        stop_process(proc)


def _closed_by_peer(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset); never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(65536) == b""  # readable: recv returns at once (data, or b"" at EOF)
    except ConnectionResetError:
        return True


def _drip(sock: socket.socket, payload: bytes, limit: float) -> tuple[bool, int]:
    """Send payload one byte a second until the server closes (or limit seconds pass); (closed, bytes sent)."""
    sent = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            sock.send(payload[sent % len(payload):sent % len(payload) + 1])
            sent += 1
        except (BrokenPipeError, ConnectionResetError):
            return True, sent
        # the client's pace, not a synchronisation: the server is checked again after each byte
        if wait_until(lambda: _closed_by_peer(sock), 1.0, 0.1):
            return True, sent
    return False, sent


def test_slowloris_headers_are_cut_off(served: tuple[int, subprocess.Popen]) -> None:
    port, _ = served
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        started = time.monotonic()
        closed, sent = _drip(sock, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000, IDLE * 5)
        elapsed = time.monotonic() - started
        assert closed, f"still open after {elapsed:.1f}s and {sent} bytes"
        assert sent >= IDLE - 1  # it was kept open while it kept dripping, until the deadline
    finally:
        sock.close()


def test_slow_body_is_cut_off(served: tuple[int, subprocess.Popen]) -> None:
    port, _ = served
    sock = socket.create_connection(("127.0.0.1", port))
    try:
        sock.sendall(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n")
        closed, sent = _drip(sock, b'{"username": "' + b"a" * 99_000, BODY * 5)
        assert closed, f"still open after {sent} body bytes"
        assert sent >= BODY - 1
    finally:
        sock.close()


def test_idle_keepalive_and_silent_connections_are_closed(served: tuple[int, subprocess.Popen]) -> None:
    port, _ = served
    silent = socket.create_connection(("127.0.0.1", port))
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        idle.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: b"HTTP/1.1 200" in idle.recv(65536, socket.MSG_PEEK), 10)
        idle.recv(1 << 20)  # the whole answer: now the keep-alive connection is idle
        assert not _closed_by_peer(silent) and not _closed_by_peer(idle)
        assert wait_until(lambda: _closed_by_peer(silent), IDLE * 5)
        assert wait_until(lambda: _closed_by_peer(idle), IDLE * 5)
    finally:
        silent.close()
        idle.close()


def test_many_slow_clients_do_not_starve_others(served: tuple[int, subprocess.Popen]) -> None:
    """200 half-open requests are all dropped at the header deadline; a normal client is served meanwhile."""
    port, _ = served
    slow = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
            slow.append(s)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as ok:
            ok.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert ok.recv(64).startswith(b"HTTP/1.1 200")
        assert wait_until(lambda: all(_closed_by_peer(s) for s in slow), IDLE * 10, 0.2)
    finally:
        for s in slow:
            s.close()


def _limits_of(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-files line")


def test_open_files_limit_raised_to_hard_limit(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 2048:
        pytest.skip("needs a finite hard limit of at least 2048 to lower the soft one below it")
    port = free_port()

    def lower_soft() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    proc = subprocess.Popen([sys.executable, "-m", "bastion", "serve"], env=_env(tmp_path, port),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lower_soft)
    try:
        wait_ready(port, proc)
        assert _limits_of(proc.pid) == (min(hard, 1 << 20), hard)
    finally:
        stop_process(proc)


def test_too_low_open_files_limit_stops_startup_with_one_line(tmp_path: Path) -> None:
    def cap_hard() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    out = subprocess.run([sys.executable, "-m", "bastion", "serve"], env=_env(tmp_path, free_port()),
                         capture_output=True, text=True, timeout=60, preexec_fn=cap_hard)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "open-files limit is 256" in lines[0] and "min_open_files" in lines[0], out.stderr


def test_server_options_from_config(tmp_path: Path) -> None:
    config = make_config(tmp_path, server_idle_timeout=7, server_body_timeout=9)
    options = http_server_options(config)
    assert options["idle_connection_timeout"] == 7 and options["body_timeout"] == 9
    assert options["max_body_size"] == 1024 * 1024 and options["xheaders"] is False
