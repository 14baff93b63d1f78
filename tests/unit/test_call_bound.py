"""A call's own timeout: the timer's cancellation becomes RequestTimeout, and only it."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from makini_async._client.send import _bounded
from makini_async.errors import RequestTimeout


class _Conn:
    name = "acme"


async def _slow(seconds: float, *, swallow: bool = False) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if not swallow:
            raise
        return "finished anyway"
    return "done"


async def test_a_call_within_its_bound_returns_and_leaves_no_timer() -> None:
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    assert await _bounded(_Conn(), _slow(0), 5.0) == "done"  # type: ignore[arg-type]
    # The timer was cancelled (a cancelled handle may wait in the heap until the loop drops it).
    assert all(h.cancelled() for h in loop._scheduled[before:])  # type: ignore[attr-defined]


async def test_a_call_past_its_bound_is_a_request_timeout_and_the_task_goes_on() -> None:
    with pytest.raises(RequestTimeout, match=r"within 0.01 s") as caught:
        await _bounded(_Conn(), _slow(5), 0.01)  # type: ignore[arg-type]
    assert caught.value.connection == "acme"
    assert caught.value.__cause__ is None
    task = asyncio.current_task()
    assert task is not None
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0  # the timer's request was taken back
    await asyncio.sleep(0)  # and this task is not cancelled at its next await


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    started = asyncio.Event()

    async def call() -> Any:
        started.set()
        return await _bounded(_Conn(), _slow(5), 10.0)  # type: ignore[arg-type]

    task = asyncio.create_task(call())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 bounds a call with wait_for")
async def test_a_call_that_finishes_despite_the_timer_returns_and_leaves_no_cancel() -> None:
    result = await _bounded(_Conn(), _slow(5, swallow=True), 0.01)  # type: ignore[arg-type]
    assert result == "finished anyway"
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 bounds a call with wait_for")
async def test_an_outside_cancel_after_the_timer_fired_is_not_swallowed() -> None:
    timed_out = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:  # the timer's cancellation
            timed_out.set()
            await asyncio.sleep(5)  # the outside one lands here
            raise

    task = asyncio.create_task(_bounded(_Conn(), stubborn(), 0.01))  # type: ignore[arg-type]
    await timed_out.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
