"""Stopping background tasks at shutdown: a lost cancellation is repeated, and the wait has a bound."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

log = logging.getLogger(__name__)
RECANCEL_INTERVAL = 0.5  # seconds between cancellations of a task that is still running


async def stop_tasks(tasks: Iterable["asyncio.Future[Any]"], timeout: float, what: str) -> bool:
    """Cancel `tasks` and wait at most `timeout` seconds for them to end; True when every one ended.

    A cancellation can be lost: on Python 3.11 `asyncio.wait_for` (still used by libraries) returns the awaited
    call's result instead of raising when the cancel arrives just as that call completes, and a periodic job
    then goes back to sleep as if nothing happened. So a task still running is cancelled again every
    RECANCEL_INTERVAL, and whatever is left at `timeout` is logged and left behind instead of awaited forever.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    given = list(tasks)
    pending = {task for task in given if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            log.warning("%d %s did not stop within %g s; left behind", len(pending), what, timeout)
            return False
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_INTERVAL, left))
    for task in given:  # what ended with an error is said once (and not reported later as never retrieved)
        if not task.cancelled() and task.exception() is not None:
            log.error("one of the %s failed", what, exc_info=task.exception())
    return True
