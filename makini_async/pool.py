"""MakiniPool: token-keyed connection handles over one shared HTTP connector."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from makini_async._config import BreakerPolicy, Limits, PageSizes, RetryPolicy, Timeouts
from makini_async._constants import API_PREFIX, DEFAULT_BASE_URL
from makini_async._retry import RetryBudget
from makini_async._sansio import check_base_url, check_token
from makini_async.connection import Connection
from makini_async.errors import UsageError
from makini_async.instrumentation import HookSet

if TYPE_CHECKING:
    from types import TracebackType

    from makini_async._transport import Transport

__all__ = ["MakiniPool"]

logger = logging.getLogger("makini_async")

ReauthCallback = Callable[[Connection], "Awaitable[None] | None"]


class MakiniPool:
    """Every customer connection, over one aiohttp connector.

    Use as ``async with MakiniPool() as pool:``; get a handle per token with
    :meth:`connection`. Closing the pool closes every socket. All
    configuration is keyword-only and has defaults (see ``_constants``).

    ``base_url`` must be ``https://``; plain ``http://`` is accepted for
    loopback hosts (a local mock server) and, with ``allow_insecure_http=True``,
    for any host. It may not carry a user name or password. (The http rule
    applies to the built-in transport; an injected ``transport`` decides how
    it talks to the network.)

    ``hooks`` receive request, retry, page and connection-state events (see
    :mod:`makini_async.instrumentation`). ``on_reauthorization_required`` is
    called once per connection when it is first found to need
    reauthorization. ``as_dicts=True`` makes listings and reads return plain
    dicts instead of typed records. ``clock``, ``sleep``, ``rng`` and
    ``transport`` are injection points for tests.
    """

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        page_sizes: PageSizes | None = None,
        hooks: Sequence[object] = (),
        on_reauthorization_required: ReauthCallback | None = None,
        as_dicts: bool = False,
        allow_insecure_http: bool = False,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        _check_options(
            hooks=hooks,
            flags={"as_dicts": as_dicts, "allow_insecure_http": allow_insecure_http},
            callables={
                "clock": clock,
                "sleep": sleep,
                "on_reauthorization_required": on_reauthorization_required,
            },
            rng=rng,
            transport=transport,
        )
        # The http rule is checked again when the built-in transport is made (open()).
        check_base_url(base_url, allow_insecure_http=True)
        self.base_url = base_url.rstrip("/")
        self.api_url = self.base_url + API_PREFIX
        self.allow_insecure_http = allow_insecure_http
        self.timeouts = _option(timeouts, Timeouts, "timeouts")
        self.limits = _option(limits, Limits, "limits")
        self.retry = _option(retry, RetryPolicy, "retry")
        self.breaker = _option(breaker, BreakerPolicy, "breaker")
        self.page_sizes = _option(page_sizes, PageSizes, "page_sizes")
        self.hooks = HookSet(hooks)
        self.as_dicts = as_dicts
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.budget = RetryBudget(self.retry.budget_tokens, self.retry.budget_ratio)
        self.semaphore = asyncio.Semaphore(self.limits.max_in_flight)
        self._on_reauth = on_reauthorization_required
        self._given_transport = transport
        self._transport: Transport | None = transport
        self._connections: dict[str, Connection] = {}
        self._state = "new"

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> MakiniPool:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the shared HTTP session (inside the running loop)."""
        if self._state == "closed":
            msg = "this MakiniPool is closed; create a new one"
            raise UsageError(msg)
        if self._transport is None:
            from makini_async._transport import AiohttpTransport  # noqa: PLC0415

            check_base_url(self.base_url, allow_insecure_http=self.allow_insecure_http)
            self._transport = AiohttpTransport(
                timeouts=self.timeouts,
                max_connections=self.limits.max_in_flight,
                max_body_bytes=self.limits.max_body_bytes,
                max_error_body_bytes=self.limits.max_error_body_bytes,
            )
        self._state = "open"

    async def close(self) -> None:
        """Close every socket. Idempotent. Later calls raise :class:`UsageError`."""
        if self._state == "closed":
            return
        self._state = "closed"
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    def ensure_open(self) -> None:
        if self._state != "open":
            if self._state == "closed":
                msg = "this MakiniPool is closed; create a new one"
            else:
                msg = "the pool is not open: use `async with MakiniPool(...) as pool:`"
            raise UsageError(msg)

    @property
    def transport(self) -> Transport:
        transport = self._transport
        if transport is None:
            self.ensure_open()
            msg = "the pool has no transport"
            raise UsageError(msg)
        return transport

    # -- connections ------------------------------------------------------------------

    def connection(
        self, token: str, *, name: str | None = None, max_concurrency: int | None = None
    ) -> Connection:
        """The handle for ``token`` (the same token always gives the same handle).

        ``name`` is how logs, errors, reports and output files refer to the
        connection; by default a hash prefix of the token. ``max_concurrency``
        overrides the pool's per-connection limit for this connection.
        """
        conn = self._connections.get(token) if isinstance(token, str) else None
        if conn is not None:
            if name is not None and name != conn.name:
                if conn._named:
                    msg = f"this token's connection is already named {conn.name!r}, not {name!r}"
                    raise UsageError(msg)
                conn._name = name
                conn._named = True
            return conn
        check_token(token)
        if max_concurrency is not None and (
            not isinstance(max_concurrency, int) or max_concurrency < 1
        ):
            msg = f"max_concurrency must be an integer >= 1, got {max_concurrency!r}"
            raise UsageError(msg)
        if self._state == "closed":
            self.ensure_open()
        conn = Connection(self, token, name=name, per_connection=max_concurrency)
        self._connections[token] = conn
        return conn

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._connections.values()))

    def evict_idle(self, *, idle_for: float | None = None) -> int:
        """Forget handles unused for ``idle_for`` seconds (default: the limits').

        Only handles with nothing in flight and no active mark (reauthorization,
        open breaker, rate-limit pause) are dropped, so no state that matters is
        lost. Returns how many were evicted.
        """
        horizon = self.clock() - (self.limits.idle_evict_after if idle_for is None else idle_for)
        now = self.clock()
        drop = [
            token
            for token, conn in self._connections.items()
            if conn.is_idle
            and conn._last_used <= horizon
            and conn._sticky is None
            and conn._open_until is None
            and conn._cooldown_until <= now
        ]
        for token in drop:
            del self._connections[token]
        return len(drop)

    async def notify_reauthorization(self, conn: Connection) -> None:
        callback = self._on_reauth
        if callback is None:
            return
        try:
            result = callback(conn)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_reauthorization_required raised for %s", conn.name)

    def __repr__(self) -> str:
        return f"<MakiniPool {self.base_url} connections={len(self._connections)} {self._state}>"

    def pull(self, *args: Any, **kwargs: Any) -> Any:
        """Bulk pull across connections: see :func:`makini_async.bulk.pull`."""
        from makini_async.bulk import pull  # noqa: PLC0415

        return pull(self, *args, **kwargs)


_T = TypeVar("_T")


def _option(value: _T | None, cls: type[_T], name: str) -> _T:
    if value is None:
        return cls()
    if not isinstance(value, cls):
        msg = f"{name} must be a {cls.__name__}, got {type(value).__name__}"
        raise UsageError(msg)
    return value


def _check_options(
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
