"""The SSH gateway's front door: a live session's output to the user's own ssh client (FrontDoor protocol)."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncssh

# reasons after which the user's ssh exits quietly; any other ending is said on stderr first
QUIET_ENDINGS = ("exit", "closed", "")


class ChannelDoor:
    """Writes a live session's output to an SSH server channel; its futures complete while the channel drains."""

    def __init__(self, chan: asyncssh.SSHServerChannel, *, tty: bool) -> None:
        self.chan = chan
        self.tty = tty
        self.closed = False
        self.exit_status: int | None = None  # the remote command's status (exec), when it reported one
        self.end_code = ""
        self.end_text = ""
        self._paused = False
        self._waiting: list[asyncio.Future[Any]] = []

    # ---- FrontDoor ------------------------------------------------------------------------------------
    def send_output(self, data: bytes) -> "asyncio.Future[Any] | None":
        if self.closed:
            return None
        try:
            self.chan.write(data)
        except (asyncssh.Error, OSError, BrokenPipeError):
            return None
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._paused:
            self._waiting.append(fut)  # completes when asyncssh says the channel drained (resume_writing)
        else:
            fut.set_result(None)
        return fut

    def send_control(self, text: str) -> None:
        frame = json.loads(text)
        kind = frame.get("type")
        if kind == "notice":
            self.say(str(frame.get("message", "")))
        elif kind == "closed":
            self.end_code = str(frame.get("code", ""))
            self.end_text = str(frame.get("reason", ""))

    def hang_up(self) -> None:
        if self.closed:
            return
        if self.end_code not in QUIET_ENDINGS:
            self.say(self.end_text)
        status = self.exit_status if self.exit_status is not None else (0 if self.end_code in QUIET_ENDINGS else 1)
        self.closed = True
        self._release()
        try:
            self.chan.exit(status)
        except (asyncssh.Error, OSError):
            self.chan.close()

    # ---- extras of the SSH door ---------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """A line from Bastion to the user, on stderr (it never mixes with a command's stdout)."""
        if self.closed or not text:
            return
        nl = "\r\n" if self.tty else "\n"
        try:
            self.chan.write_stderr(f"{nl if self.tty else ''}[bastion] {text}{nl}".encode())
        except (asyncssh.Error, OSError):
            pass

    def send_stderr(self, data: bytes) -> None:
        """A remote command's stderr, passed back as stderr."""
        if not self.closed:
            try:
                self.chan.write_stderr(data)
            except (asyncssh.Error, OSError):
                pass

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._release()

    def _release(self) -> None:
        waiting, self._waiting = self._waiting, []
        for fut in waiting:
            if not fut.done():
                fut.set_result(None)
