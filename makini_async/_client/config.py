"""Configuration values: frozen, validated, with defaults from ``_constants``."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from makini_async._wire import constants as C
from makini_async.entities import DEFAULT_PAGE_SIZE, Entity, EntityLike, to_entity
from makini_async.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BreakerPolicy",
    "CallOptions",
    "Limits",
    "OutagePolicy",
    "PageSizes",
    "RetryPolicy",
    "Timeouts",
]


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not (_number(value) and value > 0):
        msg = f"{attr.name} must be > 0, got {value!r}"
        raise UsageError(msg)


def _non_negative(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not (_number(value) and value >= 0):
        msg = f"{attr.name} must be >= 0, got {value!r}"
        raise UsageError(msg)


def _positive_or_none(_inst: object, attr: attrs.Attribute[float | None], value: object) -> None:
    if value is not None and not (isinstance(value, (int, float)) and value > 0):
        msg = f"{attr.name} must be a number of seconds > 0 or None, got {value!r}"
        raise UsageError(msg)


def _positive_int(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        msg = f"{attr.name} must be an integer >= 1, got {value!r}"
        raise UsageError(msg)


@attrs.frozen(kw_only=True)
class Timeouts:
    """Per-attempt timeouts in seconds.

    ``connect`` bounds opening a new connection (TCP and TLS; a kept-alive
    one is reused at once), ``total`` bounds one attempt from start to the
    last body byte, and so a stalled server too. ``read``, when set, also
    bounds each wait for bytes from the socket, to give up on a stalled
    server sooner than ``total``. It is off by default: aiohttp arms and
    rearms a timer for it on every request, which measured about a tenth of
    the client's work for one small call on loopback.
    """

    connect: float = attrs.field(default=C.DEFAULT_CONNECT_TIMEOUT, validator=_positive)
    read: float | None = attrs.field(default=None, validator=_positive_or_none)
    total: float = attrs.field(default=C.DEFAULT_TOTAL_TIMEOUT, validator=_positive)


@attrs.frozen(kw_only=True)
class Limits:
    """Concurrency and size limits.

    ``max_in_flight`` caps requests in flight across the whole pool (and sizes
    the shared connector); ``per_connection`` caps them per customer
    connection. ``idle_evict_after`` is how long a handle must be idle before
    :meth:`MakiniPool.evict_idle` drops it.

    ``max_body_bytes`` caps a response body, both as received and once
    decompressed: a longer one raises :class:`ResponseTooLarge` (not retried).
    ``max_error_body_bytes`` is how much of an error answer's body is read;
    the rest is discarded with the connection.
    """

    max_in_flight: int = attrs.field(default=C.DEFAULT_MAX_IN_FLIGHT, validator=_positive_int)
    per_connection: int = attrs.field(default=C.DEFAULT_PER_CONNECTION, validator=_positive_int)
    idle_evict_after: float = attrs.field(
        default=C.DEFAULT_IDLE_EVICT_AFTER, validator=_non_negative
    )
    max_body_bytes: int = attrs.field(default=C.DEFAULT_MAX_BODY_BYTES, validator=_positive_int)
    max_error_body_bytes: int = attrs.field(
        default=C.DEFAULT_MAX_ERROR_BODY_BYTES, validator=_positive_int
    )


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how long to wait before sending a request again.

    The wait before retry *n* (n = 1, 2, ...) is::

        base = min(wait_max, wait_initial * wait_exp_base ** (n - 1))
        wait = base * (1 - jitter) + uniform(0, base * jitter)
        wait = max(wait, retry_after)            # when the server sent one

    A call gives up after ``attempts`` attempts in all, or when the next wait
    would end more than ``timeout`` seconds after the first attempt began. A
    ``Retry-After`` longer than ``max_retry_after`` is not slept through: the
    :class:`RateLimitError` (or 503) is raised at once, carrying it.
    ``budget_tokens``/``budget_ratio`` set the pool-wide retry budget (each
    retry costs one token, each success refunds ``budget_ratio``; retries stop
    while the bucket is at most half full). ``attempts=1`` disables retries.
    """

    attempts: int = attrs.field(default=C.DEFAULT_ATTEMPTS, validator=_positive_int)
    timeout: float = attrs.field(default=C.DEFAULT_RETRY_TIMEOUT, validator=_positive)
    wait_initial: float = attrs.field(default=C.DEFAULT_WAIT_INITIAL, validator=_non_negative)
    wait_max: float = attrs.field(default=C.DEFAULT_WAIT_MAX, validator=_non_negative)
    wait_exp_base: float = attrs.field(default=C.DEFAULT_WAIT_EXP_BASE, validator=_positive)
    jitter: float = attrs.field(default=C.DEFAULT_JITTER)
    max_retry_after: float = attrs.field(default=C.DEFAULT_MAX_RETRY_AFTER, validator=_non_negative)
    budget_tokens: float = attrs.field(default=C.DEFAULT_BUDGET_TOKENS, validator=_positive)
    budget_ratio: float = attrs.field(default=C.DEFAULT_BUDGET_RATIO, validator=_non_negative)

    @jitter.validator
    def _check_jitter(self, _attr: attrs.Attribute[float], value: float) -> None:
        if not (_number(value) and 0.0 <= value <= 1.0):
            msg = f"jitter must be within [0, 1], got {value!r}"
            raise UsageError(msg)


@attrs.frozen(kw_only=True)
class BreakerPolicy:
    """Per-connection circuit breaker.

    After ``threshold`` consecutive retryable failures (5xx, timeouts,
    connection errors; not 429) the connection refuses calls with
    :class:`CircuitOpenError` for ``cooldown`` seconds, then lets one probe
    through: success closes the breaker, failure opens it again.
    """

    threshold: int = attrs.field(default=C.DEFAULT_BREAKER_THRESHOLD, validator=_positive_int)
    cooldown: float = attrs.field(default=C.DEFAULT_BREAKER_COOLDOWN, validator=_non_negative)


@attrs.frozen(kw_only=True)
class OutagePolicy:
    """When the pool decides the API itself is down, and how long it waits for it.

    ``min_failures`` outage-class failures in a row (timeouts, failed
    connections, bodies that are not the API's, 5xx without the API's error
    body) from ``min_connections`` different connections, with no success
    anywhere in between and within ``window`` seconds, begin an outage:
    requests wait, one probe at a time goes out every ``probe_interval``
    seconds (doubling up to
    ``probe_interval_max``), and breakers do not count these failures. Any
    success ends it; after ``budget`` seconds every waiting call raises
    :class:`~makini_async.OutageError` (a single call also stops at its own
    ``RetryPolicy.timeout``).
    """

    min_connections: int = attrs.field(
        default=C.DEFAULT_OUTAGE_MIN_CONNECTIONS, validator=_positive_int
    )
    min_failures: int = attrs.field(default=C.DEFAULT_OUTAGE_MIN_FAILURES, validator=_positive_int)
    window: float = attrs.field(default=C.DEFAULT_OUTAGE_WINDOW, validator=_positive)
    budget: float = attrs.field(default=C.DEFAULT_OUTAGE_BUDGET, validator=_positive)
    probe_interval: float = attrs.field(
        default=C.DEFAULT_OUTAGE_PROBE_INTERVAL, validator=_non_negative
    )
    probe_interval_max: float = attrs.field(
        default=C.DEFAULT_OUTAGE_PROBE_INTERVAL_MAX, validator=_non_negative
    )


def _page_size_map(value: Mapping[EntityLike, int]) -> Mapping[Entity, int]:
    out: dict[Entity, int] = {}
    for key, size in value.items():
        entity = to_entity(key)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            msg = f"page size for {entity.value} must be an integer >= 1, got {size!r}"
            raise UsageError(msg)
        out[entity] = size
    return out


@attrs.frozen
class PageSizes:
    """Page size per entity, and how it adapts while a listing runs.

    ``PageSizes({"work-orders": 50})`` overrides one entity and keeps the
    defaults (the contract's maxima) for the others. A listing starts at the
    entity's size and adapts, per connection and entity: a page that times
    out is fetched again at half the size, and a page slower than
    ``slow_page`` seconds halves the size for the next one (never below
    ``min_page_size``); after ``grow_after`` pages in a row faster than
    ``fast_page`` seconds the size doubles again, never above the entity's
    size nor above a limit the API gave (``INVALID_PAGE_SIZE``).
    ``slow_page`` defaults to half the read timeout, ``fast_page`` to a
    tenth of it (without a read timeout, half the total one stands for it:
    15 s and 3 s by default).
    """

    overrides: Mapping[Entity, int] = attrs.field(factory=dict, converter=_page_size_map)
    min_page_size: int = attrs.field(default=C.MIN_PAGE_SIZE, validator=_positive_int, kw_only=True)
    slow_page: float | None = attrs.field(default=None, validator=_positive_or_none, kw_only=True)
    fast_page: float | None = attrs.field(default=None, validator=_positive_or_none, kw_only=True)
    grow_after: int = attrs.field(default=C.PAGE_GROW_AFTER, validator=_positive_int, kw_only=True)

    def for_entity(self, entity: Entity) -> int:
        """The page size to ask for first."""
        return self.overrides.get(entity, DEFAULT_PAGE_SIZE[entity])


_T = TypeVar("_T")


def option(value: _T | None, cls: type[_T], name: str) -> _T:
    """``value``, or ``cls()`` for ``None``; :class:`UsageError` for anything else."""
    if value is None:
        return cls()
    if not isinstance(value, cls):
        msg = f"{name} must be a {cls.__name__}, got {type(value).__name__}"
        raise UsageError(msg)
    return value


def check_options(
    *,
    hooks: object,
    flags: dict[str, object],
    callables: dict[str, object],
    rng: object,
    transport: object,
) -> None:
    """:class:`UsageError` for an option of the wrong type, before anything is built."""
    problem = None
    if isinstance(hooks, (str, bytes)) or not isinstance(hooks, Iterable):
        problem = f"hooks must be a list of hook objects, got {type(hooks).__name__}"
    for name, value in flags.items():
        if not isinstance(value, bool):
            problem = f"{name} must be True or False, got {value!r}"
    for name, value in callables.items():
        if value is not None and not callable(value):
            problem = f"{name} must be callable, got {type(value).__name__}"
    if rng is not None and not isinstance(rng, random.Random):
        problem = f"rng must be a random.Random, got {type(rng).__name__}"
    if transport is not None and not (
        callable(getattr(transport, "request", None))
        and callable(getattr(transport, "close", None))
    ):
        problem = f"transport must have request() and close(), got {type(transport).__name__}"
    if problem is not None:
        raise UsageError(problem)


def _optional_positive(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not (_number(value) and value > 0):
        msg = f"{attr.name} must be a number of seconds > 0 or None, got {value!r}"
        raise UsageError(msg)


def _optional_count(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        msg = f"{attr.name} must be an int >= 0 or None, got {value!r}"
        raise UsageError(msg)


def _optional_policy(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, RetryPolicy):
        msg = f"{attr.name} must be a RetryPolicy or None, got {type(value).__name__}"
        raise UsageError(msg)


@attrs.frozen(kw_only=True)
class CallOptions:
    """Per-call overrides of a pool's retry policy (see ``with_options``).

    ``timeout`` bounds the whole call, retries and waits included: past it the
    call raises :class:`~makini_async.errors.RequestTimeout`. ``max_retries``
    is the number of retries after the first attempt (``0``: none).
    ``retry`` replaces the pool's :class:`RetryPolicy` for the call. ``None``
    leaves each to the pool (or the view the options were added to).
    """

    timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    max_retries: int | None = attrs.field(default=None, validator=_optional_count)
    retry: RetryPolicy | None = attrs.field(default=None, validator=_optional_policy)

    def over(self, base: CallOptions | None) -> CallOptions:
        """These options, with what they leave unset taken from ``base``."""
        if base is None:
            return self
        return CallOptions(
            timeout=base.timeout if self.timeout is None else self.timeout,
            max_retries=base.max_retries if self.max_retries is None else self.max_retries,
            retry=base.retry if self.retry is None else self.retry,
        )
