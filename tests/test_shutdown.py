"""Shutdown is bounded: a task whose cancellation is lost is cancelled again, and never awaited forever."""
from __future__ import annotations

import asyncio

from bastion.tasks import stop_tasks


def forgetful_job(lose: int | None, state: dict[str, int]) -> "asyncio.Task[None]":
    """A periodic job that loses `lose` cancellations (None: every one), as one did when Python 3.11's
    asyncio.wait_for inside a store call returned the call's result instead of the cancellation."""
    async def run() -> None:
        while not state.get("release"):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                state["lost"] = state.get("lost", 0) + 1
                if lose is not None and state["lost"] > lose:
                    raise
    return asyncio.get_running_loop().create_task(run())


async def test_a_job_that_lost_its_cancellation_is_stopped() -> None:
    state: dict[str, int] = {}
    job = forgetful_job(1, state)
    await asyncio.sleep(0)  # let it reach its sleep
    # a generous bound, the point of this test: the job must end through a second cancellation, not be waited for
    assert await asyncio.wait_for(stop_tasks([job], 30, "jobs"), 60)
    assert job.cancelled() and state["lost"] == 2


async def test_a_job_that_never_ends_is_left_behind_within_the_bound() -> None:
    state: dict[str, int] = {}
    job = forgetful_job(None, state)
    await asyncio.sleep(0)
    # the bound (1 s) is what is tested: the job ignores every cancellation, so stop_tasks must give up on it
    assert not await asyncio.wait_for(stop_tasks([job], 1.0, "jobs"), 30)
    assert not job.done() and state["lost"] >= 2  # it was cancelled again meanwhile
    state["release"] = 1
    job.cancel()
    await asyncio.wait([job])
    assert job.done()


async def test_a_close_whose_caller_is_cancelled_still_ends_the_session(bastion, sshd) -> None:
    """Shutdown cancels a job (the reaper, the policy re-check) while it is closing a session: the close goes on to
    the end, so the recording is sealed and the end is journaled (not left live until the next start)."""
    from client import TerminalClient
    from conftest import granted_host, wait_ended
    from scenario import StalledPool
    from waiting import wait_until
    _, user, ids = await granted_host(bastion, sshd)
    term = await TerminalClient.open(user, f"/ws/terminal/{ids['host_id']}")
    await term.control("session")
    session = bastion.services.hub.get(term.session_id)
    async with StalledPool(bastion.services.io, 2):  # the close waits on its recording's last write
        caller = asyncio.get_running_loop().create_task(session.close("expired"))
        await wait_until(lambda: session.closing and session.recorder.backlog > 0, 10, what="the close writing")
        caller.cancel()
        await asyncio.sleep(0.2)
    record = await wait_ended(bastion, term.session_id)
    assert record.end_reason == "expired" and record.recording_sha256 and record.recording_chain
    assert (await term.control("closed"))["code"] == "expired"
