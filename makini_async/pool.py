"""MakiniPool: token-keyed connection handles over one shared HTTP connector."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

from makini_async._client.config import (
    BreakerPolicy,
    CallOptions,
    Limits,
    OutagePolicy,
    PageSizes,
    RetryPolicy,
    Timeouts,
    check_options,
    option,
)
from makini_async._client.retry import RetryBudget
from makini_async._client.shared import Shared
from makini_async._pool.status import PoolStatus
from makini_async._wire.constants import API_PREFIX, DEFAULT_BASE_URL
from makini_async._wire.requests import check_base_url, check_token
from makini_async.bulk import Pull
from makini_async.connection import Connection, ConnectionView
from makini_async.errors import UsageError
from makini_async.instrumentation import HookSet
from makini_async.telemetry import telemetry_for

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Unpack

    from makini_async._client.tokens import TokenProvider
    from makini_async._client.transport import Transport
    from makini_async.bulk import ConnectionSpec, PullKeywords, PullOptions, Sink
    from makini_async.bulk._options import CheckpointSpec
    from makini_async.entities import EntityLike
    from makini_async.models import Record

__all__ = ["MakiniPool", "PoolView"]

logger = logging.getLogger("makini_async")

_R = TypeVar("_R")

ReauthCallback = Callable[[Connection], "Awaitable[None] | None"]


#: The key of a handle whose token comes from a provider (no token starts with NUL).
_PROVIDED: Final = "\0provider:"


def _check_concurrency(max_concurrency: object) -> None:
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        msg = f"max_concurrency must be an integer >= 1, got {max_concurrency!r}"
        raise UsageError(msg)


class MakiniPool(PoolStatus):
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
    ``transport`` are injection points for tests. With ``opentelemetry-api``
    installed (the ``otel`` extra) the pool emits spans and metrics through the
    global providers (:mod:`makini_async.telemetry`); ``telemetry=False`` turns
    that off. ``testing=True`` makes this pool's waits zero (retry backoff,
    Retry-After, 429 cooldowns), as :func:`~makini_async.set_testing` does for
    every pool, without changing any other pool.
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
        outage: OutagePolicy | None = None,
        hooks: Sequence[object] = (),
        on_reauthorization_required: ReauthCallback | None = None,
        as_dicts: bool = False,
        allow_insecure_http: bool = False,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        telemetry: bool = True,
        testing: bool = False,
    ) -> None:
        check_options(
            hooks=hooks,
            flags={
                "as_dicts": as_dicts,
                "allow_insecure_http": allow_insecure_http,
                "telemetry": telemetry,
                "testing": testing,
            },
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
        self.timeouts = option(timeouts, Timeouts, "timeouts")
        self.limits = option(limits, Limits, "limits")
        self.retry = option(retry, RetryPolicy, "retry")
        self.breaker = option(breaker, BreakerPolicy, "breaker")
        self.page_sizes = option(page_sizes, PageSizes, "page_sizes")
        self.outage = option(outage, OutagePolicy, "outage")
        # OpenTelemetry, when installed (makini_async.telemetry): its metrics hook in too.
        self.telemetry = telemetry_for(self.api_url, enabled=telemetry)
        self.hooks = HookSet(hooks if self.telemetry is None else [*hooks, self.telemetry.hook])
        self.as_dicts = as_dicts
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.budget = RetryBudget(self.retry.budget_tokens, self.retry.budget_ratio)
        #: What every connection handle shares (handed to them instead of the pool).
        self.shared = Shared(
            api_url=self.api_url,
            timeouts=self.timeouts,
            limits=self.limits,
            retry=self.retry,
            breaker=self.breaker,
            page_sizes=self.page_sizes,
            outage=self.outage,
            hooks=self.hooks,
            budget=self.budget,
            as_dicts=as_dicts,
            clock=clock,
            sleep=sleep,
            rng=self.rng,
            on_reauthorization=on_reauthorization_required,
            transport=transport,
            telemetry=self.telemetry,
            testing=testing,
        )
        self._connections: dict[str, Connection] = {}
        self._by_name: dict[str, Connection] = {}  # named handles: a new token replaces in place

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
        shared = self.shared
        if shared.state == "closed":
            msg = "this MakiniPool is closed; create a new one"
            raise UsageError(msg)
        if shared.transport_or_none is None:
            from makini_async._client.transport import AiohttpTransport  # noqa: PLC0415

            check_base_url(self.base_url, allow_insecure_http=self.allow_insecure_http)
            shared.transport_or_none = AiohttpTransport(
                timeouts=self.timeouts,
                max_connections=self.limits.max_in_flight,
                max_body_bytes=self.limits.max_body_bytes,
                max_error_body_bytes=self.limits.max_error_body_bytes,
            )
        shared.state = "open"

    async def close(self) -> None:
        """Close every socket. Idempotent. Later calls raise :class:`UsageError`."""
        shared = self.shared
        if shared.state == "closed":
            return
        shared.state = "closed"
        if self.telemetry is not None:
            for conn in self._connections.values():
                self.telemetry.handle_closed(conn.state)
        transport, shared.transport_or_none = shared.transport_or_none, None
        if transport is not None:
            await transport.close()

    @property
    def closed(self) -> bool:
        return self.shared.state == "closed"

    def ensure_open(self) -> None:
        """Raise :class:`UsageError` unless the pool is open."""
        self.shared.ensure_open()

    @property
    def transport(self) -> Transport:
        return self.shared.transport

    # -- connections ------------------------------------------------------------------

    def connection(
        self,
        token: str | TokenProvider,
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
    ) -> Connection:
        """The handle for ``token`` (the same token always gives the same handle).

        ``name`` is how logs, errors, reports and output files refer to the
        connection; by default a hash prefix of the token. A ``name`` the pool
        already has, given with another token, is that connection's new token
        (a customer reconnected): the handle's token is replaced in place and
        its cooldown, breaker and counters are kept. ``token`` may also be a
        sync or async callable returning the current token (``name`` is then
        required): it is asked before the first call and once more when the
        API answers 401 ``AUTHENTICATION_FAILED`` (see :mod:`makini_async._client.tokens`).
        ``max_concurrency`` overrides the pool's per-connection limit.
        """
        if callable(token):
            return self._provided(token, name, max_concurrency)
        conn = self._connections.get(token) if isinstance(token, str) else None
        if conn is not None:
            if name is not None:
                conn._rename(name)
                self._by_name[name] = conn
            return conn
        check_token(token)
        _check_concurrency(max_concurrency)
        if self.closed:
            self.ensure_open()
        known = None if name is None else self._by_name.get(name)
        if known is not None:
            # The same connection with a new token: replaced in place, its state kept.
            known.replace_token(token)
            # Under its new token only (a handle from a provider had a key of its own).
            for key in [k for k, c in self._connections.items() if c is known]:
                del self._connections[key]
            self._connections[token] = known
            return known
        conn = Connection(self.shared, token, name=name, per_connection=max_concurrency)
        self._add(token, conn)
        return conn

    def _provided(
        self, provider: TokenProvider, name: str | None, max_concurrency: int | None
    ) -> Connection:
        if name is None:
            msg = "a connection whose token comes from a provider needs name="
            raise UsageError(msg)
        known = self._by_name.get(name)
        if known is not None:
            return known
        _check_concurrency(max_concurrency)
        if self.closed:
            self.ensure_open()
        conn = Connection(
            self.shared, None, name=name, per_connection=max_concurrency, provider=provider
        )
        self._add(_PROVIDED + name, conn)
        return conn

    def _add(self, key: str, conn: Connection) -> None:
        self._connections[key] = conn
        if conn._named:
            self._by_name[conn.name] = conn
        if self.telemetry is not None:
            self.telemetry.handle_opened()

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> PoolView:
        """The pool seen with per-call options: its connections' calls use them.

        See :meth:`Connection.with_options`; the handles are the pool's own.
        """
        return PoolView(self, CallOptions(timeout=timeout, max_retries=max_retries, retry=retry))

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
        drop = [token for token, conn in self._connections.items() if conn._idle_since(horizon)]
        for token in drop:
            conn = self._connections.pop(token)
            if self._by_name.get(conn.name) is conn:
                del self._by_name[conn.name]
            if self.telemetry is not None:
                self.telemetry.handle_closed(conn.state)
        return len(drop)

    def __repr__(self) -> str:
        state = self.shared.state
        return f"<MakiniPool {self.base_url} connections={len(self._connections)} {state}>"

    @overload
    def pull(
        self,
        entities: EntityLike | Iterable[EntityLike],
        connections: Iterable[ConnectionSpec],
        *,
        checkpoint: CheckpointSpec = ...,
        sink: Sink | None = ...,
        as_dicts: Literal[True],
        options: PullOptions | None = ...,
        **keywords: Unpack[PullKeywords],
    ) -> Pull[dict[str, Any]]: ...

    @overload
    def pull(
        self,
        entities: EntityLike | Iterable[EntityLike],
        connections: Iterable[ConnectionSpec],
        *,
        checkpoint: CheckpointSpec = ...,
        sink: Sink | None = ...,
        as_dicts: Literal[False],
        options: PullOptions | None = ...,
        **keywords: Unpack[PullKeywords],
    ) -> Pull[Record]: ...

    @overload
    def pull(
        self,
        entities: EntityLike | Iterable[EntityLike],
        connections: Iterable[ConnectionSpec],
        *,
        checkpoint: CheckpointSpec = ...,
        sink: Sink | None = ...,
        as_dicts: bool | None = ...,
        options: PullOptions | None = ...,
        **keywords: Unpack[PullKeywords],
    ) -> Pull[Any]: ...

    def pull(
        self,
        entities: EntityLike | Iterable[EntityLike],
        connections: Iterable[ConnectionSpec],
        *,
        checkpoint: CheckpointSpec = None,
        sink: Sink | None = None,
        as_dicts: bool | None = None,
        options: PullOptions | None = None,
        **keywords: Unpack[PullKeywords],
    ) -> Pull[Any]:
        """Pull ``entities`` from every one of ``connections``: see :class:`~makini_async.Pull`.

        ``connections`` are tokens, ``(name, token)`` pairs or handles. The
        pull's records are typed (``Pull[Record]``) or plain dicts
        (``as_dicts=True``: ``Pull[dict[str, Any]]``); ``None`` uses the pool's
        default. ``sink`` lands every page in a :mod:`makini_async.sinks` sink
        before its checkpoint moves. How the pull reads is a
        :class:`~makini_async.PullOptions`, given whole (``options=``) or as
        keywords (``modified_after=``, ``patience=``, ...) over it.
        """
        return Pull(
            self,
            entities,
            connections,
            checkpoint=checkpoint,
            sink=sink,
            as_dicts=as_dicts,
            options=options,
            **keywords,
        )


class PoolView:
    """A pool whose connections' calls all use ``options`` (see :meth:`MakiniPool.with_options`)."""

    __slots__ = ("_pool", "options")

    def __init__(self, pool: MakiniPool, options: CallOptions) -> None:
        self._pool = pool
        self.options = options

    def __repr__(self) -> str:
        return f"<PoolView {self._pool!r} {self.options!r}>"

    @property
    def pool(self) -> MakiniPool:
        return self._pool

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> PoolView:
        """This view with more options (what they leave unset stays as it is)."""
        opts = CallOptions(timeout=timeout, max_retries=max_retries, retry=retry)
        return PoolView(self._pool, opts.over(self.options))

    def connection(
        self,
        token: str | TokenProvider,
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
    ) -> ConnectionView:
        """The pool's own handle (as :meth:`MakiniPool.connection`), seen with these options."""
        conn = self._pool.connection(token, name=name, max_concurrency=max_concurrency)
        return ConnectionView(conn, self.options)
