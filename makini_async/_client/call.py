"""What a call is (:class:`Call`) and what the send loop needs of a connection (:class:`Link`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

if TYPE_CHECKING:
    from makini_async._client.gate import Gate
    from makini_async._client.shared import Shared
    from makini_async.errors import CircuitOpenError, MakiniError

__all__ = ["Call", "Link", "Tally"]

_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class Call(NamedTuple):
    """One API call as the loop sends it (and sends it again)."""

    method: str
    path: str
    params: dict[str, str] | None = None
    body: bytes | None = None
    idempotency_key: str | None = None

    @property
    def may_retry(self) -> bool:
        """GET, PUT and DELETE are safe to repeat; POST and PATCH only with a key."""
        return self.idempotency_key is not None or self.method in _SAFE_METHODS


class Link(Protocol):
    """A connection as the send loop sees it (:class:`~makini_async.Connection` is one).

    Its counters, its health (:class:`~makini_async._client.health.Health`) and its
    concurrency slot; the loop needs nothing else of it.
    """

    requests: int
    retries: int
    rate_limited: int
    failures: int
    #: When the connection's shared 429 pause ends (0.0: none).
    _cooldown_until: float

    @property
    def name(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def shared(self) -> Shared: ...
    @property
    def breaker_open(self) -> bool: ...
    def _headers(self, call: Call, token: str | None = ...) -> dict[str, str]: ...
    async def _authorization(self) -> str: ...
    async def _refresh_token(self, used: str) -> bool: ...
    def _guard(self) -> bool: ...
    def _begin(self, now: float) -> None: ...
    def _end(self) -> None: ...
    def _end_probe(self) -> None: ...
    def _slot(self) -> Gate: ...
    def _cooldown_left(self) -> float: ...
    def _succeeded(self) -> None: ...
    async def _failed(
        self, error: MakiniError, *, probe: bool, pause: float, blameless: bool = ...
    ) -> None: ...
    async def _close_breaker(self, request_id: str | None) -> None: ...
    def _breaker_error(self, error: MakiniError, *, while_waiting: bool) -> CircuitOpenError: ...


class Tally:
    """Retries and 429 answers counted for one caller (a bulk-pull chain)."""

    __slots__ = ("rate_limited", "retries")

    def __init__(self) -> None:
        self.retries = 0
        self.rate_limited = 0
