"""Retry waits on the ``backoff`` package, behind our :class:`RetryPolicy`.

backoff supplies the exponential schedule (``backoff.expo``); jitter is
drawn from an injectable :class:`random.Random` so tests can pin it. Its
decorators are not used: they sleep with ``asyncio.sleep`` directly (so
tests could not inject a clock) and cannot share one rate-limit cooldown
between the tasks using a connection. Keeping backoff behind this module
keeps it cheap to replace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import backoff

if TYPE_CHECKING:
    import random
    from collections.abc import Iterator

    from makini_async._client.config import RetryPolicy

__all__ = ["RetryBudget", "TestingSwitch", "WaitSchedule", "is_testing", "set_testing"]


@attrs.define
class _Testing:
    enabled: bool = False
    attempts: int | None = None


_TESTING = _Testing()


class TestingSwitch:
    """What :func:`set_testing` returns: leaving it as a ``with`` block restores the switch."""

    __test__ = False  # not a test class, whatever a test runner makes of its name

    __slots__ = ("_before",)

    def __init__(self, before: tuple[bool, int | None]) -> None:
        self._before = before

    def __enter__(self) -> TestingSwitch:
        return self

    def __exit__(self, *_: object) -> None:
        _TESTING.enabled, _TESTING.attempts = self._before


def set_testing(enabled: bool, *, attempts: int | None = None) -> TestingSwitch:  # noqa: FBT001
    """Testing mode for your own test suites: every wait becomes zero.

    With ``attempts`` set, it also overrides every policy's attempt count (for
    example ``1`` to disable retries). Waits include retry backoff, Retry-After
    and rate-limit cooldowns (a 429 still pauses its connection, for zero
    seconds, and still emits its state event); circuit-breaker cool-downs are
    unchanged, and nothing else behaves differently: a Retry-After longer than
    the policy allows is still raised. ``set_testing(False)`` restores normal
    waits.

    The switch is process-wide. Used as a ``with`` block it holds for the block
    only, and the switch is then restored as it was::

        with set_testing(True):
            ...

    ``MakiniPool(testing=True)`` puts one pool in testing mode and no other.
    """
    before = (_TESTING.enabled, _TESTING.attempts)
    _TESTING.enabled = enabled
    _TESTING.attempts = attempts if enabled else None
    return TestingSwitch(before)


def is_testing() -> bool:
    """Whether testing mode is on."""
    return _TESTING.enabled


def effective_attempts(policy: RetryPolicy) -> int:
    return _TESTING.attempts if _TESTING.attempts is not None else policy.attempts


class WaitSchedule:
    """The waits of one call's retries, in order."""

    __slots__ = ("_gen", "_jitter", "_rng")

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        gen: Iterator[float] = backoff.expo(
            base=policy.wait_exp_base, factor=policy.wait_initial, max_value=policy.wait_max
        )
        next(gen)  # backoff's generators are primed with one send(None)
        self._gen = gen
        self._jitter = policy.jitter
        self._rng = rng

    def next_wait(self) -> float:
        """The next jittered wait, in seconds."""
        base = min(next(self._gen), 1e9)
        if not self._jitter:
            return base
        spread = base * self._jitter
        return base - spread + self._rng.uniform(0.0, spread)


class RetryBudget:
    """Pool-wide retry throttling (as gRPC does it).

    The bucket starts full with ``tokens``; a retry costs 1, a success refunds
    ``ratio``. Retries are allowed only while the bucket is above half full.
    """

    __slots__ = ("_max", "_ratio", "_tokens")

    def __init__(self, tokens: float, ratio: float) -> None:
        self._max = tokens
        self._tokens = tokens
        self._ratio = ratio

    @property
    def tokens(self) -> float:
        return self._tokens

    def on_success(self) -> None:
        if self._tokens < self._max:
            self._tokens = min(self._max, self._tokens + self._ratio)

    def try_spend(self) -> bool:
        """Take one token for a retry; ``False`` when retries are throttled."""
        if self._tokens <= self._max / 2:
            return False
        self._tokens -= 1.0
        return True
