"""Fault plans and rate limits for the mock server: seeded, reproducible."""

from __future__ import annotations

import collections
import hashlib
import math
import random
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["FAULT_KINDS", "FaultPlan", "RateLimit"]

#: Every fault kind, in the order the decision walks them.
FAULT_KINDS: Final[tuple[str, ...]] = (
    "error_500",
    "error_502",
    "error_503",
    "error_504",
    "html_error",
    "rate_limit_429",
    "stall",
    "drop",
    "truncate",
    "malformed",
    "empty_body",
    "wrong_content_type",
    "write_applied_503",
)

#: How a 429 says when to come back: seconds, an HTTP date, or not at all.
RETRY_AFTER_STYLES: Final[frozenset[str]] = frozenset({"seconds", "date", "none"})

_WRITE_METHODS: Final[frozenset[str]] = frozenset({"POST", "PATCH", "DELETE"})


def _rate(_inst: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        msg = f"{attribute.name} must be within [0, 1], got {value!r}"
        raise ValueError(msg)


def _non_negative(_inst: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        msg = f"{attribute.name} must not be negative, got {value!r}"
        raise ValueError(msg)


def _opt_frozenset(value: Any) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(value)


@attrs.frozen
class FaultPlan:
    """What goes wrong, how often. Rates are per-request probabilities in [0, 1].

    One uniform draw per request (that passes ``only_paths`` / ``methods``)
    picks at most one fault, walking :data:`FAULT_KINDS` in order; the rates
    must sum to at most 1. ``write_applied_503`` only applies to POST, PATCH
    and DELETE (its share of the draw means "no fault" for reads). Each token
    draws from its own RNG derived from ``(seed, token)``, so a token's fault
    sequence is the same run to run however requests of other tokens
    interleave.

    - ``error_500`` / ``error_502`` / ``error_503``: a structured error answer.
    - ``error_504`` / ``html_error``: a gateway's 504 or a proxy's 502, as an
      HTML page with no API error body (what nginx answers when it cannot
      reach the API).
    - ``rate_limit_429``: 429 with ``Retry-After: ceil(retry_after)``, as
      seconds, an HTTP date or no header at all (``retry_after_style``).
    - ``stall``: no answer for ``stall_seconds`` (woken and aborted on close).
    - ``drop``: headers with the full ``Content-Length``, half the body, then
      the connection is closed.
    - ``truncate``: a 200 whose JSON body is cut short (with a matching
      ``Content-Length``).
    - ``malformed``: a 200 with an HTML body.
    - ``empty_body``: a 200 with an empty body.
    - ``wrong_content_type``: the right JSON body labelled ``text/plain``.
    - ``write_applied_503``: the write is applied (and its idempotency key
      recorded) but the answer is 503 SERVICE_UNAVAILABLE.
    - ``latency`` (+ uniform ``[0, latency_jitter]``): seconds added before
      every answer of the token, fault or not.
    - Faults apply to every endpoint, ``GET /api/v1/connection`` included
      (restrict them with ``only_paths``). Refusing faults (5xx, 429, stall)
      never apply the request; "lost in transit" faults (drop, truncate,
      malformed) answer after the request was applied, like a real network.
    - ``only_paths``: path prefixes (e.g. ``"/api/v1/work-orders"``) faults
      apply to; ``methods``: HTTP methods faults apply to. ``None`` means all.
    - ``first``: faults apply only to a token's first ``first`` requests
      (that the plan applies to), for tests that need a fault, then recovery.
    """

    seed: int = 0
    error_500: float = attrs.field(default=0.0, validator=_rate)
    error_502: float = attrs.field(default=0.0, validator=_rate)
    error_503: float = attrs.field(default=0.0, validator=_rate)
    error_504: float = attrs.field(default=0.0, validator=_rate)
    html_error: float = attrs.field(default=0.0, validator=_rate)
    rate_limit_429: float = attrs.field(default=0.0, validator=_rate)
    retry_after: float = attrs.field(default=1.0, validator=_non_negative)
    retry_after_style: str = attrs.field(default="seconds")
    stall: float = attrs.field(default=0.0, validator=_rate)
    stall_seconds: float = attrs.field(default=3600.0, validator=_non_negative)
    drop: float = attrs.field(default=0.0, validator=_rate)
    truncate: float = attrs.field(default=0.0, validator=_rate)
    malformed: float = attrs.field(default=0.0, validator=_rate)
    empty_body: float = attrs.field(default=0.0, validator=_rate)
    wrong_content_type: float = attrs.field(default=0.0, validator=_rate)
    write_applied_503: float = attrs.field(default=0.0, validator=_rate)
    latency: float = attrs.field(default=0.0, validator=_non_negative)
    latency_jitter: float = attrs.field(default=0.0, validator=_non_negative)
    only_paths: frozenset[str] | None = attrs.field(default=None, converter=_opt_frozenset)
    methods: frozenset[str] | None = attrs.field(default=None, converter=_opt_frozenset)
    first: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.retry_after_style not in RETRY_AFTER_STYLES:
            msg = f"retry_after_style must be one of {sorted(RETRY_AFTER_STYLES)}"
            raise ValueError(msg)
        total = sum(getattr(self, kind) for kind in FAULT_KINDS)
        if total > 1.0 + 1e-9:
            msg = f"fault rates sum to {total:.3f}, more than 1"
            raise ValueError(msg)

    def applies_to(self, method: str, path: str) -> bool:
        """Whether requests with this method and path draw a fault."""
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.only_paths is None or any(path.startswith(p) for p in self.only_paths)

    def choose(self, u: float, method: str) -> str:
        """The fault for uniform draw ``u`` in [0, 1) on a ``method`` request."""
        acc = 0.0
        for kind in FAULT_KINDS:
            rate: float = getattr(self, kind)
            if rate <= 0.0:
                continue
            acc += rate
            if u < acc:
                if kind == "write_applied_503" and method.upper() not in _WRITE_METHODS:
                    return "none"
                return kind
        return "none"


@attrs.frozen
class RateLimit:
    """At most ``requests`` per ``per_seconds`` (sliding window) per token.

    A request over the limit gets 429 with ``Retry-After`` = ``retry_after``
    when given, else the time until the window frees a slot (rounded up to
    whole seconds, at least 1).
    """

    requests: int
    per_seconds: float
    retry_after: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.requests < 1 or self.per_seconds <= 0:
            msg = "RateLimit needs requests >= 1 and per_seconds > 0"
            raise ValueError(msg)


def token_rng(seed: int, token: str, salt: str) -> random.Random:
    """An RNG derived from ``(seed, token, salt)``, independent of other tokens."""
    digest = hashlib.sha256(f"{seed}\x00{salt}\x00{token}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


class FaultState:
    """One token's fault RNGs and log under one plan."""

    __slots__ = ("jitter_rng", "log", "plan", "rng")

    def __init__(self, plan: FaultPlan, token: str) -> None:
        self.plan = plan
        self.rng = token_rng(plan.seed, token, "faults")
        self.jitter_rng = token_rng(plan.seed, token, "jitter")
        self.log: list[str] = []

    def decide(self, method: str, path: str) -> str | None:
        """The fault for this request, or ``None`` when the plan skips it."""
        if not self.plan.applies_to(method, path):
            return None
        first = self.plan.first
        if first is not None and len(self.log) >= first:
            return None
        kind = self.plan.choose(self.rng.random(), method)
        self.log.append(kind)
        return kind

    def delay(self) -> float:
        """Seconds to wait before answering."""
        plan = self.plan
        if plan.latency_jitter > 0:
            return plan.latency + self.jitter_rng.uniform(0.0, plan.latency_jitter)
        return plan.latency


class SlidingWindowLimiter:
    """A sliding-log limiter for one token, on an injectable clock."""

    __slots__ = ("_clock", "_hits", "limit")

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._hits: collections.deque[float] = collections.deque()

    def acquire(self) -> int | None:
        """Count a request; ``None`` if allowed, else the Retry-After seconds."""
        now = self._clock()
        window = self.limit.per_seconds
        hits = self._hits
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) < self.limit.requests:
            hits.append(now)
            return None
        if self.limit.retry_after is not None:
            return max(0, math.ceil(self.limit.retry_after))
        return max(1, math.ceil(hits[0] + window - now))
