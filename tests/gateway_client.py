"""The real OpenSSH client (ssh, scp, sftp) against a bastion's SSH gateway: keys, known_hosts, a PTY driver."""
from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import termios
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waiting import wait_until


def keygen(path: Path) -> str:
    """A fresh ed25519 key pair at path; returns the public line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(str(path) + ".pub").read_text().strip()


@dataclass
class GatewayClient:
    """OpenSSH options for one user against one gateway (pinned host key, one identity, no config file)."""

    port: int
    root: Path
    identity: Path | None
    known_hosts: Path

    @classmethod
    def make(cls, root: Path, port: int, public_key: str, identity: Path | None) -> "GatewayClient":
        root.mkdir(parents=True, exist_ok=True)
        known = root / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {public_key}\n")
        return cls(port=port, root=root, identity=identity, known_hosts=known)

    def options(self, *, batch: bool = True) -> list[str]:
        opts = ["-F", "/dev/null", "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10"]
        if self.identity is not None:
            opts += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes", "-o",
                     "PreferredAuthentications=publickey"]
        else:
            opts += ["-o", "PreferredAuthentications=keyboard-interactive", "-o", "PubkeyAuthentication=no"]
        if batch and self.identity is not None:
            opts += ["-o", "BatchMode=yes"]
        return opts

    def ssh_args(self, login: str, *command: str, tty: bool = False) -> list[str]:
        return ["ssh", *self.options(), "-p", str(self.port), *(["-tt"] if tty else ["-T"]), f"{login}@127.0.0.1",
                *command]

    async def ssh(self, login: str, *command: str, stdin: bytes = b"", timeout: float = 30,
                  prefix: list[str] | None = None) -> tuple[int, bytes, bytes]:
        """Run ssh to completion: (exit status, stdout, stderr)."""
        return await run([*(prefix or []), *self.ssh_args(login, *command)], stdin=stdin, timeout=timeout)

    def scp_args(self, *paths: str) -> list[str]:
        return ["scp", *self.options(), "-P", str(self.port), "-q", *paths]

    def sftp_args(self, login: str) -> list[str]:
        return ["sftp", *self.options(), "-P", str(self.port), "-b", "-", f"{login}@127.0.0.1"]


async def run(args: list[str], *, stdin: bytes = b"", timeout: float = 30,
              env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(*args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{args[0]} did not finish within {timeout}s") from None
    assert proc.returncode is not None
    return proc.returncode, out, err


class PtySSH:
    """ssh with a real PTY (what a person's terminal is), read and written from the event loop."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = env
        self.output = bytearray()
        self.proc: asyncio.subprocess.Process | None = None
        self._fd = -1

    async def start(self) -> "PtySSH":
        master, slave = pty.openpty()
        os.set_blocking(master, False)
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdin=slave, stdout=slave, stderr=slave,
                                                         env=self.env, start_new_session=True,
                                                         preexec_fn=_controlling_tty)
        os.close(slave)
        self._fd = master
        asyncio.get_running_loop().add_reader(master, self._read)
        return self

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._fd)
            return
        self.output += data

    def send(self, text: str) -> None:
        os.write(self._fd, text.encode())

    async def expect(self, text: str, timeout: float = 15) -> None:
        needle = text.encode()
        await wait_until(lambda: needle in self.output, timeout, what=f"{text!r} on the terminal "
                         f"(last: {bytes(self.output[-300:])!r})")

    async def prompt(self, timeout: float = 15) -> None:
        """Wait for the host's first output: ssh has put the terminal in raw mode by then (keys typed earlier
        may be flushed by the terminal driver when it switches)."""
        await wait_until(lambda: len(self.output) > 0, timeout, what="the shell's first output")

    async def wait(self, timeout: float = 15) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def close(self) -> None:
        if self._fd >= 0:
            try:
                asyncio.get_running_loop().remove_reader(self._fd)
            except Exception:
                pass
            os.close(self._fd)
            self._fd = -1
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def _controlling_tty() -> None:
    """In the child, after setsid: the PTY becomes its controlling terminal (ssh prompts on /dev/tty)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def gateway_public_key(app: Any) -> str:
    return app.services.gateway.public_key
