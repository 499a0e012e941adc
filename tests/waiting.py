"""Polling instead of sleeping: wait until a condition holds, and fail saying what was last seen.

Tests never `sleep` to let something happen; they poll the store, the page, the file system or a socket with
`wait_until` (async) or `wait_until_sync` (plain threads and subprocess scenarios), which return as soon as the
predicate holds and raise AssertionError after `timeout` seconds.
"""
from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Awaitable, Callable, TypeVar, Union

T = TypeVar("T")
Predicate = Callable[[], Union[T, Awaitable[T]]]


async def wait_until(predicate: Predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or getattr(predicate, '__name__', 'condition')} did not hold within "
                                 f"{timeout}s; last value: {last!r}")
        await asyncio.sleep(interval)


def wait_until_sync(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05, what: str = "") -> T:
    """`wait_until` for code outside an event loop."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or getattr(predicate, '__name__', 'condition')} did not hold within "
                                 f"{timeout}s; last value: {last!r}")
        time.sleep(interval)


async def holds_for(check: Callable[[], Any], seconds: float, interval: float = 0.1) -> None:
    """Assert `check()` stays truthy for a whole soak window.

    Not synchronisation: for properties that only show over time (memory staying bounded while a host floods
    a paused session), the test must let the adversary run; every sample is checked, not only the last.
    """
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        assert value, f"{getattr(check, '__name__', 'check')} stopped holding: {value!r}"
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(interval)
