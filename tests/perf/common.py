"""Shared benchmark plumbing: a real sshd, a real Bastion process, the webssh peer, and session clients.

Everything listens on 127.0.0.1 only; every loop is bounded in count and time.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import asyncssh  # noqa: E402
import websockets  # noqa: E402

from procs import bastion_env, free_port, init_bastion, rss_kib, serve_bastion, stop_process, wait_port  # noqa: E402,F401
from scenario import run_steps_sync, sshd_steps  # noqa: E402
from sshd import make_sshd  # noqa: E402

ADMIN_PASSWORD = "bench-admin-password"
WEBSSH_VERSION = "1.6.3"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[k]


class Profile:
    """`py-spy record` on a running process while a block runs (`--profile DIR` in the benchmarks): collapsed
    stacks are written to DIR/<name>.txt and the functions with the most own samples printed."""

    def __init__(self, pid: int, directory: Path | None, name: str) -> None:
        self.pid, self.name = pid, name
        self.out = directory / f"{name}.txt" if directory else None
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Profile":
        if self.out:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            spy = Path(sys.executable).with_name("py-spy")
            self.proc = subprocess.Popen([str(spy), "record", "--pid", str(self.pid), "--format", "raw", "--rate",
                                          "250", "--nonblocking", "-o", str(self.out)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # py-spy attaches
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.proc:
            return
        self.proc.send_signal(2)  # SIGINT: py-spy writes what it has
        self.proc.wait(timeout=60)
        own: dict[str, int] = {}
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            leaf = stack.rsplit(";", 1)[-1]
            own[leaf] = own.get(leaf, 0) + int(count)
            total += int(count)
        print(f"profile {self.name}: {total} samples, top own time:")
        for leaf, count in sorted(own.items(), key=lambda x: -x[1])[:25]:
            print(f"  {100 * count / max(total, 1):5.1f}%  {leaf}")


class BastionAPI:
    """A blocking admin client for a bastion on 127.0.0.1:port (login cookie + XSRF header), for benchmark set-up
    and for the `cookie`/`xsrf` the benchmark's own sockets and requests carry."""

    def __init__(self, port: int) -> None:
        self.bastion_port = port
        self.xsrf = ""
        self.cookie = ""
        self.host_id = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One API call; returns the JSON answer (raises on an HTTP error)."""
        headers = {"Cookie": self.cookie, "Content-Type": "application/json", "X-XSRFToken": self.xsrf}
        req = urllib.request.Request(f"http://127.0.0.1:{self.bastion_port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            for header in resp.headers.get_all("Set-Cookie") or []:
                if header.startswith("bastion_login="):
                    self.cookie = f"_xsrf={self.xsrf}; {header.split(';')[0]}"
            return json.loads(resp.read() or b"null")

    def login(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
        """GET /login for the _xsrf cookie, then log in."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.bastion_port}/login", timeout=30) as resp:
            self.xsrf = [h.split(";")[0].split("=", 1)[1] for h in resp.headers.get_all("Set-Cookie") if h.startswith("_xsrf=")][0]
        self.cookie = f"_xsrf={self.xsrf}"
        self.call("POST", "/api/login", {"username": username, "password": password})

    def seed_host(self, sshd: Any, login: str) -> dict[str, Any]:
        """The tests' inventory steps: a category, a credential logging in as `login`, a host granted to me."""
        ids = run_steps_sync(self.call, sshd_steps(sshd, "bench", username=login, grant_to="me"))
        self.host_id = ids["host_id"]
        return ids


def stop(proc: subprocess.Popen | None) -> None:
    """End a process we started, by its PID (None: nothing to do)."""
    stop_process(proc)


class Environment(BastionAPI):
    """sshd + Bastion (+ webssh) for one benchmark run."""

    def __init__(self, work: Path, *, webssh: bool = True, bastion_env: dict[str, str] | None = None) -> None:
        self.work = work
        work.chmod(0o755)  # sshd reads authorized_keys as the login user
        self.sshd = make_sshd(work / "sshd")
        self.sshd.start()
        # Log in as a plain account when we can: root's shell start-up on these machines runs `pyenv init`
        # (0.15 CPU-s and a lock per login), which would measure the machine's dotfiles, not the bastion.
        from sshd import PASSWORD_USER, ensure_password_user
        self.login_name = PASSWORD_USER if ensure_password_user() else self.sshd.username
        self.bastion_proc: subprocess.Popen | None = None
        self.webssh_proc: subprocess.Popen | None = None
        self.webssh_port = 0
        self.relay_proc: subprocess.Popen | None = None
        self._relay_port = 0
        self._start_bastion(bastion_env or {})
        if webssh:
            self._start_webssh()

    # ---- Bastion ---------------------------------------------------------------------------
    def _start_bastion(self, extra: dict[str, str]) -> None:
        env = bastion_env(self.work, BASTION_TERMINAL_MAX_SESSIONS_PER_USER="10000",
                          BASTION_TERMINAL_NOTIFY_MONITORED="false", BASTION_LOG_LEVEL="WARNING", **extra)
        super().__init__(int(env["BASTION_SERVER_PORT"]))
        init_bastion(env, ADMIN_PASSWORD)
        self.bastion_proc = serve_bastion(env, self.work / "bastion.log")
        self.login()
        self.seed_host(self.sshd, self.login_name)

    # ---- webssh (its own virtualenv) -----------------------------------------------------------
    def _start_webssh(self) -> None:
        venv = self.work.parent / f"webssh-venv-{WEBSSH_VERSION}"
        if not (venv / "bin" / "wssh").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"webssh=={WEBSSH_VERSION}"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.webssh_port = free_port()
        self.webssh_proc = subprocess.Popen(
            [str(venv / "bin" / "wssh"), "--address=127.0.0.1", f"--port={self.webssh_port}", "--policy=autoadd",
             "--xsrf=False", "--maxconn=100000", "--redirect=False", "--fbidhttp=False", "--logging=error",
             "--timeout=30", "--delay=60"],
            stdout=subprocess.DEVNULL, stderr=open(self.work / "webssh.log", "wb"))
        wait_port("127.0.0.1", self.webssh_port, proc=self.webssh_proc, timeout=30)

    def relay_port(self) -> int:
        """A socat TCP relay to the sshd (started on first use): the extra-hop peer."""
        if not self._relay_port:
            self._relay_port = free_port()
            self.relay_proc = subprocess.Popen(
                ["socat", f"TCP-LISTEN:{self._relay_port},bind=127.0.0.1,reuseaddr,fork,backlog=256,nodelay",
                 f"TCP:{self.sshd.address}:{self.sshd.port},nodelay"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_port("127.0.0.1", self._relay_port, proc=self.relay_proc, timeout=30)
        return self._relay_port

    def close(self) -> None:
        stop(self.relay_proc)
        stop(self.bastion_proc)
        stop(self.webssh_proc)
        self.sshd.stop()


class Session:
    """One interactive PTY session, whatever carries it."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.total = 0
        self._event = asyncio.Event()

    def _feed(self, data: bytes) -> None:
        self.buf += data
        self.total += len(data)
        if len(self.buf) > 65536:  # only the tail is searched for markers
            del self.buf[:-4096]
        self._event.set()

    async def read_until(self, needle: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{needle!r} not seen; tail {bytes(self.buf[-200:])!r}")
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        idx = self.buf.index(needle)
        del self.buf[:idx + len(needle)]

    def clear(self) -> None:
        self.buf.clear()


class RawSSH(Session):
    name = "raw SSH"

    async def open(self, env: Environment, cols: int = 120, rows: int = 40) -> "RawSSH":
        s = env.sshd
        self.conn = await asyncssh.connect(s.address, s.port, username=env.login_name, known_hosts=None,
                                           client_keys=[asyncssh.import_private_key(s.client_key)], agent_path=None,
                                           config=None, encryption_algs=["aes128-gcm@openssh.com"])
        self.proc = await self.conn.create_process(term_type="xterm-256color", term_size=(cols, rows), encoding=None)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            data = await self.proc.stdout.read(65536)
            if not data:
                return
            self._feed(data)

    async def send(self, text: str) -> None:
        self.proc.stdin.write(text.encode())

    async def close(self) -> None:
        self._reader.cancel()
        self.conn.close()


class RelayedSSH(RawSSH):
    """Raw SSH through socat, a TCP relay in C that decrypts nothing: what one extra process in the path costs on
    this machine, the floor for any proxy (Bastion decrypts, records and re-frames on top of that)."""
    name = "raw SSH via relay"

    async def open(self, env: Environment, cols: int = 120, rows: int = 40) -> "RelayedSSH":
        port = env.relay_port()
        self.conn = await asyncssh.connect("127.0.0.1", port, username=env.login_name, known_hosts=None,
                                           client_keys=[asyncssh.import_private_key(env.sshd.client_key)],
                                           agent_path=None, config=None, encryption_algs=["aes128-gcm@openssh.com"])
        self.proc = await self.conn.create_process(term_type="xterm-256color", term_size=(cols, rows), encoding=None)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self


class WebSession(Session):
    """A WebSocket terminal (Bastion or webssh)."""

    session_id = ""
    closed_at = 0.0
    on_bytes = None  # optional hook(bytes, arrival time)

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if isinstance(msg, bytes):
                    if self.on_bytes is not None:
                        self.on_bytes(msg, time.monotonic())
                    self._feed(msg)
                elif '"session"' in msg:
                    self.session_id = json.loads(msg).get("id", "")
        except websockets.ConnectionClosed:
            pass
        self.closed_at = time.monotonic()

    def stop_reading(self) -> None:
        """Stop reading the socket (a slow client): the server's buffers for it fill up."""
        self._reader.cancel()

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


class BastionSession(WebSession):
    name = "Bastion"

    async def open(self, env: Environment, cols: int = 120, rows: int = 40) -> "BastionSession":
        url = f"ws://127.0.0.1:{env.bastion_port}/ws/terminal/{env.host_id}?cols={cols}&rows={rows}"
        self.ws = await websockets.connect(url, additional_headers={"Cookie": env.cookie},
                                           origin=f"http://127.0.0.1:{env.bastion_port}", max_size=None,
                                           compression=None, open_timeout=60, ping_interval=None)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def send(self, text: str) -> None:
        await self.ws.send(json.dumps({"type": "input", "data": text}))


class MonitorSession(WebSession):
    name = "monitor"

    async def open(self, env: Environment, session_id: str) -> "MonitorSession":
        self.ws = await websockets.connect(f"ws://127.0.0.1:{env.bastion_port}/ws/monitor/{session_id}",
                                           additional_headers={"Cookie": env.cookie},
                                           origin=f"http://127.0.0.1:{env.bastion_port}", max_size=None,
                                           compression=None, open_timeout=60, ping_interval=None)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self


class WebSSHSession(WebSession):
    name = "webssh"

    async def open(self, env: Environment, cols: int = 120, rows: int = 40) -> "WebSSHSession":
        keyfile = env.work / "client_key_for_webssh"
        if not keyfile.exists():
            keyfile.write_text(env.sshd.client_key)
        form = urllib.parse.urlencode({"hostname": env.sshd.address, "port": env.sshd.port,
                                       "username": env.login_name, "password": "",
                                       "term": "xterm-256color"}).encode()
        boundary = "----bench"
        body = b""
        for key, value in urllib.parse.parse_qsl(form.decode(), keep_blank_values=True):
            body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n{value}\r\n".encode()
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"privatekey\"; filename=\"id\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + env.sshd.client_key.encode() + b"\r\n"
        body += f"--{boundary}--\r\n".encode()

        def post() -> dict:
            req = urllib.request.Request(f"http://127.0.0.1:{env.webssh_port}/", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read())
        result = await asyncio.get_running_loop().run_in_executor(None, post)
        if not result.get("id"):
            raise RuntimeError(f"webssh refused: {result}")
        self.ws = await websockets.connect(f"ws://127.0.0.1:{env.webssh_port}/ws?id={result['id']}",
                                           origin=f"http://127.0.0.1:{env.webssh_port}", max_size=None,
                                           compression=None, open_timeout=60, ping_interval=None)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        await self.ws.send(json.dumps({"resize": [cols, rows]}))
        return self

    async def send(self, text: str) -> None:
        await self.ws.send(json.dumps({"data": text}))


def summarize(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p99": pct(values, 99), "mean": statistics.fmean(values) if values else float("nan"),
            "n": len(values)}


def machine() -> dict[str, Any]:
    import platform
    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "openssh": ssh_version}


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
