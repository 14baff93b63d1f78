"""The send loop's concurrency limit: slots, order, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from makini_async._client.gate import Gate


async def test_never_more_holders_than_slots() -> None:
    gate = Gate(3)
    holding = 0
    most = 0

    async def work() -> None:
        nonlocal holding, most
        await gate.enter()
        try:
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        finally:
            holding -= 1
            gate.leave()

    await asyncio.gather(*(work() for _ in range(20)))
    assert most == 3
    assert gate.free == 3
    assert gate.waiting == 0


async def test_waiters_are_served_in_order_and_a_newcomer_waits_behind_them() -> None:
    gate = Gate(1)
    await gate.enter()
    order: list[int] = []

    async def wait(n: int) -> None:
        await gate.enter()
        order.append(n)
        gate.leave()

    tasks = [asyncio.create_task(wait(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert gate.waiting == 3
    gate.leave()  # handed to waiter 0, not returned to free
    assert gate.free == 0
    late = asyncio.create_task(wait(99))
    await asyncio.gather(*tasks, late)
    assert order == [0, 1, 2, 99]
    assert gate.free == 1


async def test_a_cancelled_waiter_gives_up_its_place_without_taking_a_slot() -> None:
    gate = Gate(1)
    await gate.enter()
    waiter = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.waiting == 0
    gate.leave()
    assert gate.free == 1


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on() -> None:
    gate = Gate(1)
    await gate.enter()
    first = asyncio.create_task(gate.enter())
    second = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    gate.leave()  # handed to first, which has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # the slot went on to second
    assert gate.free == 0
    gate.leave()
    assert gate.free == 1
    assert gate.waiting == 0


async def test_a_cancelled_waiter_already_skipped_by_leave_is_not_removed_twice() -> None:
    gate = Gate(1)
    await gate.enter()
    first = asyncio.create_task(gate.enter())
    second = asyncio.create_task(gate.enter())
    await asyncio.sleep(0)
    first.cancel()  # its future is cancelled now; its task has not run yet
    gate.leave()  # skips first's cancelled future, hands the slot to second
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert gate.waiting == 0
    gate.leave()
    assert gate.free == 1
