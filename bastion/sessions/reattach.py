"""A session whose browser went away for a moment (a page reload, a network blip) waits for it to come back.

While the user's door is gone the session keeps running behind a HeldDoor: output is held in memory and each
chunk's future completes only when a returning door has written it, so the session's usual backpressure pauses
the host once the held bytes pass its high water mark (memory stays bounded). A door that returns with a fresh
terminal (a reloaded page) is given the session's replay window instead (the screen as the user last saw it);
one that returns with its terminal intact (a blip) is given exactly the held bytes.
"""
from __future__ import annotations

import asyncio
from typing import Any

from .doors import FrontDoor


class HeldDoor:
    """Stands in for the user's door until it returns (implements FrontDoor); controls are dropped."""

    def __init__(self) -> None:
        self.held: list[tuple[bytes, asyncio.Future[Any]]] = []

    def send_output(self, data: bytes) -> "asyncio.Future[Any]":
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.held.append((data, fut))
        return fut

    def send_control(self, text: str) -> None:
        pass

    def hang_up(self) -> None:
        self.release()

    def release(self) -> None:
        """Nobody will write the held bytes: their futures complete, so the session's accounting drains."""
        for _, fut in self.held:
            if not fut.done():
                fut.set_result(None)
        self.held.clear()

    def hand_over(self, door: FrontDoor) -> None:
        """Write the held bytes to the returning door; each held future completes when its bytes are sent."""
        for data, fut in self.held:
            sent = door.send_output(data)
            if sent is None:
                if not fut.done():
                    fut.set_result(None)
            else:
                sent.add_done_callback(lambda _f, fut=fut: fut.done() or fut.set_result(None))
        self.held.clear()
