"""Disk faults a file sink waits out: a full disk, an I/O error, an interrupted call.

A transient ``OSError`` (:data:`TRANSIENT`) is retried with exponential
backoff (``backoff.expo`` behind :mod:`makini_async._client.retry`)::

    wait n = min(wait_max, wait_initial * 2 ** (n - 1)), less up to 20 % jitter

until ``deadline`` seconds have passed since the first attempt; then the
destination is declared down with :class:`~makini_async.errors.SinkUnavailable`.
Any other ``OSError`` is raised at once: it is not going to pass by waiting.
"""

from __future__ import annotations

import errno
import logging
import random
from typing import TYPE_CHECKING, Final, TypeVar

import attrs

from makini_async._client.config import RetryPolicy
from makini_async._client.retry import WaitSchedule
from makini_async.errors import SinkUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["DEFAULT_DISK_DEADLINE", "DiskRetry", "is_transient"]

#: Seconds a file sink keeps retrying a full or failing disk before it gives up.
DEFAULT_DISK_DEADLINE: Final = 120.0

#: Errors that may pass: space freed, a quota raised, a device back, a call interrupted.
TRANSIENT: Final = frozenset(
    getattr(errno, name)
    for name in (
        "ENOSPC",
        "EDQUOT",
        "EIO",
        "EAGAIN",
        "EWOULDBLOCK",
        "EINTR",
        "EBUSY",
        "ETIMEDOUT",
        "ESTALE",
        "ENOLCK",
        "ENOBUFS",
        "ENOMEM",
    )
    if hasattr(errno, name)
)

T = TypeVar("T")

logger = logging.getLogger("makini_async")


def is_transient(exc: OSError) -> bool:
    return exc.errno in TRANSIENT


def _transient_os_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and is_transient(exc)


def _os_reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__


@attrs.define
class DiskRetry:
    """Retries of one sink's work, sharing whether the destination is known to be down.

    Once a call has given up, the next ones try once and give up at once
    (until one succeeds): a pull that ends because its destination is down
    does not wait a second deadline to close. ``transient`` tells the errors
    worth waiting for (by default a full or failing disk) and ``describe``
    says what one was; any other error is raised as it is.
    """

    deadline: float
    sleep: Callable[[float], Awaitable[None]]
    clock: Callable[[], float]
    wait_initial: float = 0.5
    wait_max: float = 10.0
    transient: Callable[[BaseException], bool] = _transient_os_error
    describe: Callable[[BaseException], str] = _os_reason
    down: bool = False
    retries: int = 0
    _rng: random.Random = attrs.field(factory=random.Random)

    async def run(self, call: Callable[[], Awaitable[T]], where: str) -> T:
        """``await call()``, retrying transient errors, then :class:`SinkUnavailable`."""
        policy = RetryPolicy(
            attempts=1_000_000,
            timeout=max(self.deadline, 1e-9),
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
            jitter=0.2,
        )
        waits = WaitSchedule(policy, self._rng)
        start = self.clock()
        waited = False
        while True:
            try:
                result = await call()
            except Exception as exc:  # noqa: PERF203 - a retry loop
                if not self.transient(exc):
                    raise
                wait = waits.next_wait()
                if self.down or self.clock() - start + wait > self.deadline:
                    self.down = True
                    reason = self.describe(exc)
                    msg = (
                        f"sink unavailable: cannot write {where}: {reason} "
                        f"(retried for {self.clock() - start:.0f} s)"
                    )
                    raise SinkUnavailable(msg) from None
                if not waited:  # once per call: the outcome is logged or raised after
                    waited = True
                    logger.warning(
                        "cannot write %s: %s; retrying for up to %.0f s",
                        where,
                        self.describe(exc),
                        self.deadline,
                    )
                self.retries += 1
                await self.sleep(wait)
            else:
                self.down = False
                return result
