"""Front doors and upstream connectors: the two small interfaces a live session talks through.

A front door is where the person is (the browser's WebSocket today, the SSH gateway next); an upstream is
what the session reaches (an SSH host today, a Kubernetes pod exec next). The session knows nothing else
about either.
"""
from __future__ import annotations

import asyncio
from typing import Any, Protocol


class FrontDoor(Protocol):
    """The user's (or a watcher's) end of a live session."""

    def send_output(self, data: bytes) -> "asyncio.Future[Any] | None":
        """Queue terminal output; the future completes when written (None: the door is closed)."""

    def send_control(self, text: str) -> None:
        """Send a JSON control frame (fire and forget)."""

    def hang_up(self) -> None:
        """Close the door (idempotent)."""


class UpstreamEvents(Protocol):
    """What an upstream connector reports to its session."""

    def on_output(self, data: bytes) -> None: ...

    def on_upstream_closed(self, reason: str, note: str = "") -> None:
        """The remote end went away: reason `exit` (it ended) or `host_lost`."""


class Upstream(Protocol):
    """A connected terminal on the far side."""

    def write(self, data: bytes) -> None: ...

    def resize(self, cols: int, rows: int) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def limit_buffer(self, size: int) -> None:
        """Buffer at most about `size` bytes of output from now on (the session's share of the output budget)."""

    def close(self) -> None: ...
