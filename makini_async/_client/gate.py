"""A concurrency limit whose free entry costs no await.

Every request passes two limits (its connection's and the pool's). With
:class:`asyncio.Semaphore` each costs ``async with``: two coroutines and
four calls, even when nothing waits, which is the usual case. A
:class:`Gate` is entered by the caller itself when a slot is free
(``if gate.free > 0: gate.free -= 1``) and awaited only when it is not.

A freed slot is handed to the longest waiter directly, never returned to
``free`` while anyone waits, so a newcomer cannot overtake a waiter and
``free > 0`` implies that nobody waits.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Gate"]


class Gate:
    """``limit`` slots: :meth:`enter` (or ``free -= 1`` while free) takes one; :meth:`leave`."""

    __slots__ = ("_waiters", "free")

    def __init__(self, limit: int) -> None:
        #: Slots nobody holds; while positive, nobody waits.
        self.free = limit
        self._waiters: deque[asyncio.Future[None]] | None = None

    async def enter(self) -> None:
        """Take a slot, waiting in line for one when none is free."""
        if self.free > 0:
            self.free -= 1
            return
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = deque()
        slot = asyncio.get_running_loop().create_future()
        waiters.append(slot)
        try:
            await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self.leave()  # handed a slot, then cancelled before using it: pass it on
            elif slot in waiters:  # leave() may have dropped it already
                waiters.remove(slot)
            raise

    def leave(self) -> None:
        """Give a slot back: to the longest waiter, or to ``free``."""
        waiters = self._waiters
        while waiters:
            slot = waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return
        self.free += 1

    @property
    def waiting(self) -> int:
        """How many wait for a slot."""
        return len(self._waiters) if self._waiters else 0
