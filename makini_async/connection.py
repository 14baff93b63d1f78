"""One customer connection: its API surface and its state.

A :class:`Connection` is a cheap handle owned by a :class:`MakiniPool`. Its
state (concurrency limit, rate-limit cooldown, circuit breaker,
reauthorization mark, counters) is shared by every task that uses it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

import attrs
import orjson

from makini_async._retry import WaitSchedule, effective_attempts, is_testing
from makini_async._sansio import (
    check_record_id,
    error_from_response,
    format_when,
    list_params,
    parse_page,
    parse_single,
)
from makini_async._scrub import clean
from makini_async.entities import Entity, EntityLike, to_entity
from makini_async.errors import (
    AuthenticationError,
    CircuitOpenError,
    InvalidPageSizeError,
    MakiniError,
    MalformedResponse,
    RateLimitError,
    ReauthorizationRequired,
    RequestTimeout,
    TransportError,
    UsageError,
)
from makini_async.instrumentation import (
    ConnectionState,
    ConnectionStateEvent,
    PageEvent,
    RequestEvent,
    RetryEvent,
    emit,
)
from makini_async.models import (
    ON_INVALID,
    InvalidRecord,
    Record,
    invalid_record_error,
    split_objects,
    structure_page,
    unstructure,
)
from makini_async.pagination import Listing, Page, RawPage
from makini_async.status import ConnectionInfo, SyncJob, SyncStatus

if TYPE_CHECKING:
    import builtins
    import datetime as dt
    from collections.abc import Callable, Mapping

    from makini_async._transport import RawResponse
    from makini_async.models import OnInvalid
    from makini_async.pool import MakiniPool

__all__ = ["AUTO", "Connection", "ConnectionStats", "Tally"]

logger = logging.getLogger("makini_async")

T = TypeVar("T")

_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Without a Retry-After, a 429 pauses the connection for at least this long.
_DEFAULT_COOLDOWN: Final = 1.0


class _Auto:
    def __repr__(self) -> str:
        return "AUTO"


#: Generate an idempotency key (the default for ``create`` and ``update``).
AUTO: Final = _Auto()


@attrs.frozen(kw_only=True)
class ConnectionStats:
    """A snapshot of one connection's counters."""

    name: str
    state: ConnectionState
    requests: int
    retries: int
    rate_limited: int
    failures: int
    in_flight: int


class Tally:
    """Retries and 429 answers counted for one caller (a bulk-pull chain)."""

    __slots__ = ("rate_limited", "retries")

    def __init__(self) -> None:
        self.retries = 0
        self.rate_limited = 0


def default_name(token: str) -> str:
    """A stable display name for a token that reveals nothing of it."""
    return "conn-" + hashlib.sha256(token.encode()).hexdigest()[:10]


def token_fingerprint(token: str) -> str:
    """What a checkpoint records of a token: a one-way hash, apart from the name's."""
    return hashlib.sha256(b"makini-checkpoint\0" + token.encode()).hexdigest()[:16]


def _encode(body: object) -> bytes:
    return orjson.dumps(body, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def _default(value: object) -> object:
    # Decimals go out as strings: the API's money and quantities are decimal strings.
    from decimal import Decimal  # noqa: PLC0415 - only reached for unusual bodies

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Record):
        return unstructure(value)
    msg = f"cannot send a {type(value).__name__} in a JSON body"
    raise TypeError(msg)


class Connection:
    """The handle for one customer connection. Get it from :meth:`MakiniPool.connection`."""

    __slots__ = (
        "_cooldown_until",
        "_failures",
        "_in_flight",
        "_last_used",
        "_max_page",
        "_name",
        "_named",
        "_open_until",
        "_per_connection",
        "_pool",
        "_probing",
        "_reauth_request_id",
        "_sem",
        "_sticky",
        "_token",
        "failures",
        "rate_limited",
        "requests",
        "retries",
    )

    def __init__(
        self, pool: MakiniPool, token: str, *, name: str | None, per_connection: int | None
    ) -> None:
        self._pool = pool
        self._token = token
        self._name = name
        self._named = name is not None
        self._per_connection = per_connection
        self._sem: asyncio.Semaphore | None = None
        self._cooldown_until = 0.0
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False
        self._sticky: ConnectionState | None = None
        self._reauth_request_id: str | None = None
        self._max_page: dict[Entity, int] | None = None
        self._in_flight = 0
        self._last_used = 0.0
        self.requests = 0
        self.retries = 0
        self.rate_limited = 0
        self.failures = 0

    # -- identity and state -------------------------------------------------

    @property
    def name(self) -> str:
        """Display name: the one given, or ``conn-`` and a hash prefix of the token."""
        if self._name is None:
            self._name = default_name(self._token)
        return self._name

    def __repr__(self) -> str:
        return f"<Connection {self.name!r} token=<redacted> state={self.state.value}>"

    @property
    def state(self) -> ConnectionState:
        if self._sticky is not None:
            return self._sticky
        now = self._pool.clock()
        if self._open_until is not None:
            return ConnectionState.CIRCUIT_OPEN
        if self._cooldown_until > now:
            return ConnectionState.RATE_LIMITED
        return ConnectionState.ACTIVE

    @property
    def fingerprint(self) -> str:
        """A one-way hash of the token (checkpoints keep it to recognise the token)."""
        return token_fingerprint(self._token)

    @property
    def needs_reauthorization(self) -> bool:
        return self._sticky is ConnectionState.REAUTHORIZATION_REQUIRED

    @property
    def stats(self) -> ConnectionStats:
        return ConnectionStats(
            name=self.name,
            state=self.state,
            requests=self.requests,
            retries=self.retries,
            rate_limited=self.rate_limited,
            failures=self.failures,
            in_flight=self._in_flight,
        )

    @property
    def is_idle(self) -> bool:
        return self._in_flight == 0

    def reset(self) -> None:
        """Clear the reauthorization mark, breaker and cooldown (after a fix)."""
        self._sticky = None
        self._reauth_request_id = None
        self._open_until = None
        self._failures = 0
        self._probing = False
        self._cooldown_until = 0.0

    # -- listing --------------------------------------------------------------

    @overload
    def list(
        self,
        entity: EntityLike,
        *,
        page_size: int | None = ...,
        modified_after: dt.datetime | dt.date | str | None = ...,
        created_after: dt.datetime | dt.date | str | None = ...,
        cursor: str | None = ...,
        as_dicts: Literal[True],
    ) -> Listing[dict[str, Any]]: ...

    @overload
    def list(
        self,
        entity: EntityLike,
        *,
        page_size: int | None = ...,
        modified_after: dt.datetime | dt.date | str | None = ...,
        created_after: dt.datetime | dt.date | str | None = ...,
        cursor: str | None = ...,
        as_dicts: Literal[False],
        on_invalid: Literal["raise", "skip"] = ...,
    ) -> Listing[Record]: ...

    @overload
    def list(
        self,
        entity: EntityLike,
        *,
        page_size: int | None = ...,
        modified_after: dt.datetime | dt.date | str | None = ...,
        created_after: dt.datetime | dt.date | str | None = ...,
        cursor: str | None = ...,
        as_dicts: bool | None = ...,
        on_invalid: OnInvalid = ...,
    ) -> Listing[Any]: ...

    def list(
        self,
        entity: EntityLike,
        *,
        page_size: int | None = None,
        modified_after: dt.datetime | dt.date | str | None = None,
        created_after: dt.datetime | dt.date | str | None = None,
        cursor: str | None = None,
        as_dicts: bool | None = None,
        on_invalid: OnInvalid = "raise",
    ) -> Listing[Any]:
        """List ``entity`` records, oldest cursor first.

        ``page_size`` defaults to the pool's size for the entity (the
        contract's maximum). ``modified_after``/``created_after`` filter
        incrementally. ``cursor`` resumes a listing at a page's
        ``next_cursor``. ``as_dicts`` yields plain dicts instead of records
        (faster); ``None`` uses the pool's default. ``on_invalid`` says what
        happens to a record that does not fit its model (see
        :data:`~makini_async.models.OnInvalid`): by default it raises
        :class:`RecordStructureError`, which carries the record.
        """
        ent = _entity(entity)
        check_on_invalid(on_invalid)
        size = self.page_size_for(ent, page_size)
        return Listing(
            self,
            ent,
            page_size=size,
            cursor=cursor,
            modified_after=None
            if modified_after is None
            else format_when(modified_after, name="modified_after"),
            created_after=None
            if created_after is None
            else format_when(created_after, name="created_after"),
            as_dicts=self._pool.as_dicts if as_dicts is None else as_dicts,
            on_invalid=on_invalid,
        )

    def page_size_for(self, entity: Entity, page_size: int | None = None) -> int:
        """The page size to ask for: ``page_size``, else the pool's, within any learnt limit."""
        if page_size is None:
            size = self._pool.page_sizes.for_entity(entity)
        elif isinstance(page_size, int) and not isinstance(page_size, bool) and page_size >= 1:
            size = page_size
        else:
            msg = f"page_size must be an integer >= 1, got {page_size!r}"
            raise UsageError(msg)
        if self._max_page is not None:
            size = min(size, self._max_page.get(entity, size))
        return size

    async def fetch_page(
        self,
        entity: Entity,
        *,
        cursor: str | None,
        page_size: int,
        modified_after: str | None = None,
        created_after: str | None = None,
        as_dicts: bool = False,
        tally: Tally | None = None,
    ) -> Page[Any]:
        """Fetch one page (the building block of :class:`Listing`).

        A body that is not the contract's JSON is retried like a failed
        request. ``tally``, when given, counts retries and 429 answers.
        """
        page = await self._fetch_listing(
            entity,
            cursor,
            page_size=page_size,
            modified_after=modified_after,
            created_after=created_after,
            tally=tally,
            parse=True,
        )
        return await self.finish_page(page, as_dicts=as_dicts)

    async def fetch_page_bytes(
        self,
        entity: Entity,
        *,
        cursor: str | None,
        page_size: int,
        modified_after: str | None = None,
        created_after: str | None = None,
        tally: Tally | None = None,
    ) -> RawPage:
        """Fetch one page without parsing it (bulk pulls parse in the consumer).

        Parse it with :meth:`parse_page_bytes`; if that raises
        :class:`MalformedResponse`, fetch the page again with :meth:`fetch_page`.
        """
        raw: RawPage = await self._fetch_listing(
            entity,
            cursor,
            page_size=page_size,
            modified_after=modified_after,
            created_after=created_after,
            tally=tally,
            parse=False,
        )
        return raw

    @staticmethod
    def parse_page_bytes(raw: RawPage) -> Page[dict[str, Any]]:
        """Parse a page fetched by :meth:`fetch_page_bytes` (records as dicts)."""
        data, next_cursor, total = parse_page(raw.body, request_id=raw.request_id)
        return Page(raw.entity, data, raw.cursor, next_cursor, total, raw.request_id, raw.page_size)

    async def finish_page(self, page: Page[Any], *, as_dicts: bool) -> Page[Any]:
        """Set apart the records that do not fit, structure the rest, tell the hooks.

        Structuring takes over ``page.records`` when it is a list: each dict in
        it is replaced by its record (see :func:`~makini_async.models.structure_page`).
        Records that do not fit (not an object; with ``as_dicts=False``, any
        value the model cannot read) go to ``page.invalid``, never lost.
        """
        split = split_objects if as_dicts else structure_page
        records, invalid = split(
            page.entity, page.records, request_id=page.request_id, connection=self.name
        )
        if invalid or records is not page.records:
            page = attrs.evolve(page, records=records, invalid=self._cleaned(invalid))
        listeners = self._pool.hooks.on_page
        if listeners:
            await emit(
                listeners,
                PageEvent(
                    self.name,
                    page.entity.value,
                    len(page.records),
                    page.page_size,
                    page.next_cursor is not None,
                    page.request_id,
                    len(page.invalid),
                ),
            )
        return page

    async def _fetch_listing(
        self,
        entity: Entity,
        cursor: str | None,
        *,
        page_size: int,
        modified_after: str | None,
        created_after: str | None,
        tally: Tally | None,
        parse: bool,
    ) -> Any:
        params = list_params(page_size, cursor, modified_after, created_after)
        floor = min(self._pool.page_sizes.min_page_size, page_size)

        def adapt(error: MakiniError, params: dict[str, str]) -> bool:
            current = int(params["page_size"])
            if isinstance(error, InvalidPageSizeError):
                limit = error.max_page_size
                if limit is not None and limit < current:
                    if self._max_page is None:
                        self._max_page = {}
                    self._max_page[entity] = limit
                    params["page_size"] = str(limit)
                    return True
            elif isinstance(error, RequestTimeout) and current > floor:
                params["page_size"] = str(max(floor, current // 2))
            return False

        def answer(resp: RawResponse, request_id: str | None) -> Any:
            raw = RawPage(entity, resp.body, cursor, request_id, int(params["page_size"]))
            return self.parse_page_bytes(raw) if parse else raw

        return await self._call(
            "GET", "/" + entity.value, answer, params=params, adapt=adapt, tally=tally
        )

    # -- single records and writes -------------------------------------------

    async def get(self, entity: EntityLike, id: str, *, as_dicts: bool | None = None) -> Any:
        """``GET /{entity}/{id}``: one record (or dict). Raises :class:`NotFound`."""
        ent = _entity(entity)
        answer = await self._call("GET", _record_path(ent, id), _single)
        return self._shape(ent, answer, as_dicts)

    async def create(
        self,
        entity: EntityLike,
        body: Mapping[str, Any] | Any,
        *,
        idempotency_key: str | _Auto | None = AUTO,
        as_dicts: bool | None = None,
    ) -> Any:
        """``POST /{entity}``: create a record, return it as the API stored it.

        An idempotency key is generated unless one is given, and kept
        identical across retries, so a retried create never creates twice.
        ``idempotency_key=None`` sends none and disables retries.
        """
        ent = _entity(entity)
        key = _idempotency_key(idempotency_key)
        answer = await self._call(
            "POST", "/" + ent.value, _single, body=_encode(body), idempotency_key=key
        )
        return self._shape(ent, answer, as_dicts)

    async def update(
        self,
        entity: EntityLike,
        id: str,
        changes: Mapping[str, Any],
        *,
        idempotency_key: str | _Auto | None = AUTO,
        as_dicts: bool | None = None,
    ) -> Any:
        """``PATCH /{entity}/{id}`` with ``changes``; returns the updated record."""
        ent = _entity(entity)
        key = _idempotency_key(idempotency_key)
        answer = await self._call(
            "PATCH", _record_path(ent, id), _single, body=_encode(changes), idempotency_key=key
        )
        return self._shape(ent, answer, as_dicts)

    async def delete(self, entity: EntityLike, id: str) -> None:
        """``DELETE /{entity}/{id}``. Many systems answer :class:`OperationNotSupported`."""
        ent = _entity(entity)
        await self._call("DELETE", _record_path(ent, id), _ignore)

    async def status(self) -> ConnectionInfo:
        """``GET /connection``. Marks the handle when reauthorization is required."""
        info = await self._call("GET", "/connection", _connection_info)
        if info.reauthorization_required:
            await self._mark_reauthorization(info.request_id, "status endpoint")
        return info

    async def sync_status(self) -> SyncStatus:
        """``GET /sync-status``: last sync per entity (the next ``modified_after``)."""
        return await self._call("GET", "/sync-status", _sync_status)

    async def trigger_sync(self, entity: EntityLike, *, full: bool = False) -> SyncJob:
        """``POST /syncs``: start an incremental (or ``full``) sync of ``entity``."""
        ent = _entity(entity)
        body = _encode({"entity": ent.value, "full": bool(full)})
        return await self._call(
            "POST", "/syncs", _sync_job, body=body, idempotency_key=uuid.uuid4().hex
        )

    async def disconnect(self) -> None:
        """``DELETE /connection``: the token stops working at once."""
        await self._call("DELETE", "/connection", _ignore)
        await self._set_sticky(ConnectionState.DISCONNECTED, "disconnected by the client", None)

    def _cleaned(self, invalid: builtins.list[InvalidRecord]) -> tuple[InvalidRecord, ...]:
        # A reason quotes the server's value: it reaches logs and messages, so it is
        # scrubbed of this connection's token like any other server text.
        secrets = (self._token,)
        return tuple(attrs.evolve(i, reason=clean(i.reason, secrets)) for i in invalid)

    def _shape(
        self,
        entity: Entity,
        answer: tuple[dict[str, Any], str | None],
        as_dicts: bool | None,  # noqa: FBT001
    ) -> Any:
        data, request_id = answer
        if self._pool.as_dicts if as_dicts is None else as_dicts:
            return data
        records, invalid = structure_page(
            entity, [data], request_id=request_id, connection=self.name
        )
        if invalid:
            raise invalid_record_error(self._cleaned(invalid)[0])
        return records[0]

    # -- the request loop -------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        parse: Callable[[RawResponse, str | None], T],
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        idempotency_key: str | None = None,
        adapt: Callable[[MakiniError, dict[str, str]], bool] | None = None,
        tally: Tally | None = None,
    ) -> T:
        """Send with retries; return ``parse(response, request_id)``."""
        pool = self._pool
        pool.ensure_open()
        probe = self._guard()
        headers = {"Authorization": "Bearer " + self._token}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        url = pool.api_url + path
        may_retry = idempotency_key is not None or method in _SAFE_METHODS
        clock = pool.clock
        hooks = pool.hooks
        timed = bool(hooks.on_request)
        started = clock()
        self._last_used = started
        self._in_flight += 1
        schedule: WaitSchedule | None = None
        attempt = 0
        try:
            while True:
                attempt += 1
                t0 = clock() if timed else 0.0
                request_id: str | None = None
                status: int | None = None
                error: MakiniError
                try:
                    resp = await self._attempt(method, url, headers, params, body)
                except TransportError as exc:
                    error = exc
                else:
                    status = resp.status
                    request_id = resp.headers.get("X-Request-Id")
                    if status < 400:
                        try:
                            result = parse(resp, request_id)
                        except MalformedResponse as exc:
                            error = exc
                        except MakiniError as exc:  # e.g. a record that is not an object
                            exc.connection = self.name
                            raise
                        else:
                            self._succeeded()
                            if timed:
                                await emit(
                                    hooks.on_request,
                                    RequestEvent(
                                        self.name,
                                        method,
                                        path,
                                        status,
                                        request_id,
                                        clock() - t0,
                                        attempt,
                                    ),
                                )
                            if probe:
                                probe = False
                                await self._close_breaker(request_id)
                            return result
                    else:
                        error = error_from_response(
                            status, resp.headers, resp.body, token=self._token
                        )
                self.failures += 1
                error.connection = self.name
                if error.request_id is None:
                    error.request_id = request_id
                if timed:
                    await emit(
                        hooks.on_request,
                        RequestEvent(
                            self.name,
                            method,
                            path,
                            status,
                            error.request_id,
                            clock() - t0,
                            attempt,
                            type(error).__name__,
                        ),
                    )
                await self._failed(error, probe=probe)
                probe = False
                if tally is not None and isinstance(error, RateLimitError):
                    tally.rate_limited += 1
                if adapt is not None and params is not None and adapt(error, params):
                    attempt -= 1  # a page-size clamp is a correction, not a retry
                    continue
                if not (error.retryable and may_retry):
                    raise error
                if attempt >= effective_attempts(pool.retry):
                    raise error
                if self._open_until is not None:
                    msg = (
                        f"circuit breaker opened after {self._failures} consecutive failures; "
                        f"last: {type(error).__name__}: {error.message}"
                    )
                    raise CircuitOpenError(
                        msg,
                        retry_at=self._open_until,
                        connection=self.name,
                        request_id=error.request_id,
                    ) from error
                if schedule is None:
                    schedule = WaitSchedule(pool.retry, pool.rng)
                wait = self._retry_wait(error, started, schedule)
                self.retries += 1
                if tally is not None:
                    tally.retries += 1
                if logger.isEnabledFor(logging.INFO):
                    logger.info(
                        "retrying %s %s in %.2fs after %s (connection=%s, attempt=%d, "
                        "request_id=%s)",
                        method,
                        path,
                        wait,
                        type(error).__name__,
                        self.name,
                        attempt,
                        error.request_id,
                    )
                if hooks.on_retry:
                    await emit(
                        hooks.on_retry,
                        RetryEvent(
                            self.name,
                            method,
                            path,
                            attempt,
                            wait,
                            type(error).__name__,
                            error.request_id,
                        ),
                    )
                if wait > 0:
                    await pool.sleep(wait)
                if self._open_until is not None:
                    # Another task's failures opened the breaker while this one waited.
                    msg = f"circuit breaker opened while retrying; last: {type(error).__name__}"
                    raise CircuitOpenError(
                        msg,
                        retry_at=self._open_until,
                        connection=self.name,
                        request_id=error.request_id,
                    ) from error
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                # Nothing holds or waits on the semaphore: an idle handle keeps none.
                self._sem = None
            if probe:
                # A probe that ended without an answer (cancelled) frees the slot.
                self._probing = False

    def _retry_wait(self, error: MakiniError, started: float, schedule: WaitSchedule) -> float:
        """The wait before the next attempt, or raise ``error`` to give up."""
        pool = self._pool
        policy = pool.retry
        wait = schedule.next_wait()
        retry_after: float | None = getattr(error, "retry_after", None)
        testing = is_testing()
        if retry_after is not None and not testing:
            if retry_after > policy.max_retry_after:
                raise error
            wait = max(wait, retry_after)
        if isinstance(error, RateLimitError) and not testing:
            # Never earlier than the connection's shared cooldown.
            wait = max(wait, self._cooldown_until - pool.clock())
        if pool.clock() + wait - started > policy.timeout:
            raise error
        if not isinstance(error, RateLimitError) and not pool.budget.try_spend():
            logger.warning(
                "retry budget exhausted: not retrying %s (connection=%s, request_id=%s)",
                type(error).__name__,
                self.name,
                error.request_id,
            )
            raise error
        return wait

    async def _attempt(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        body: bytes | None,
    ) -> RawResponse:
        pool = self._pool
        sem = self._sem
        if sem is None:
            sem = self._sem = asyncio.Semaphore(self._per_connection or pool.limits.per_connection)
        async with sem:
            if self._cooldown_until and not is_testing():
                # One shared pause per connection: every task waits out the same 429.
                while (delay := self._cooldown_until - pool.clock()) > 0:
                    if delay > pool.retry.max_retry_after:
                        msg = f"connection paused by a 429 for another {delay:.0f}s"
                        raise RateLimitError(
                            msg, status=429, retry_after=delay, connection=self.name
                        )
                    await pool.sleep(delay)
            async with pool.semaphore:
                self.requests += 1
                return await pool.transport.request(
                    method, url, headers=headers, params=params, body=body
                )

    # -- state transitions -------------------------------------------------------

    def _guard(self) -> bool:
        """Fail fast on a marked connection; return True if this call is the breaker probe."""
        sticky = self._sticky
        if sticky is ConnectionState.REAUTHORIZATION_REQUIRED:
            msg = (
                "the customer must reconnect this connection (reauthorization required); "
                "a new token will follow"
            )
            raise ReauthorizationRequired(
                msg, status=401, request_id=self._reauth_request_id, connection=self.name
            )
        if sticky is ConnectionState.DISCONNECTED:
            msg = "this connection was disconnected; its token no longer works"
            raise AuthenticationError(msg, connection=self.name)
        if self._open_until is None:
            return False
        now = self._pool.clock()
        if now < self._open_until or self._probing:
            msg = (
                f"circuit breaker open after {self._failures} consecutive failures; "
                f"next probe in {max(0.0, self._open_until - now):.1f}s"
            )
            raise CircuitOpenError(msg, retry_at=self._open_until, connection=self.name)
        self._probing = True
        return True

    def _succeeded(self) -> None:
        self._failures = 0
        self._pool.budget.on_success()

    async def _failed(self, error: MakiniError, *, probe: bool) -> None:
        if probe and not (error.retryable and not isinstance(error, RateLimitError)):
            # The probe got an answer from Makini (a 429, a 4xx, a reauthorization
            # mark): the connection is reachable again, so the breaker closes.
            await self._close_breaker(error.request_id)
        if isinstance(error, RateLimitError):
            self.rate_limited += 1
            if is_testing():
                return
            pause = error.retry_after if error.retry_after is not None else _DEFAULT_COOLDOWN
            until = self._pool.clock() + pause
            if until > self._cooldown_until:
                was_limited = self._cooldown_until > self._pool.clock()
                self._cooldown_until = until
                if not was_limited:
                    await self._emit_state(
                        ConnectionState.ACTIVE,
                        ConnectionState.RATE_LIMITED,
                        f"429, pausing {pause:.1f}s",
                        error.request_id,
                    )
            return
        if isinstance(error, ReauthorizationRequired):
            await self._mark_reauthorization(error.request_id, "API error code")
            return
        if not error.retryable:
            # The connection answered: it is up, whatever the request's fault.
            self._failures = 0
            return
        self._failures += 1
        threshold = self._pool.breaker.threshold
        if probe or (self._open_until is None and self._failures >= threshold):
            self._probing = False
            was_open = self._open_until is not None
            self._open_until = self._pool.clock() + self._pool.breaker.cooldown
            logger.warning(
                "circuit breaker %s for connection %s after %d consecutive failures "
                "(last: %s, request_id=%s)",
                "re-opened" if was_open else "opened",
                self.name,
                self._failures,
                type(error).__name__,
                error.request_id,
            )
            if not was_open:
                await self._emit_state(
                    ConnectionState.ACTIVE,
                    ConnectionState.CIRCUIT_OPEN,
                    f"{self._failures} consecutive failures",
                    error.request_id,
                )

    async def _close_breaker(self, request_id: str | None) -> None:
        self._probing = False
        if self._open_until is not None:
            self._open_until = None
            self._failures = 0
            logger.info("circuit breaker closed for connection %s", self.name)
            await self._emit_state(
                ConnectionState.CIRCUIT_OPEN, ConnectionState.ACTIVE, "probe succeeded", request_id
            )

    async def _mark_reauthorization(self, request_id: str | None, reason: str) -> None:
        if self._sticky is ConnectionState.REAUTHORIZATION_REQUIRED:
            return
        self._reauth_request_id = request_id
        logger.warning(
            "connection %s requires reauthorization (%s, request_id=%s)",
            self.name,
            reason,
            request_id,
        )
        await self._set_sticky(ConnectionState.REAUTHORIZATION_REQUIRED, reason, request_id)
        await self._pool.notify_reauthorization(self)

    async def _set_sticky(self, new: ConnectionState, reason: str, request_id: str | None) -> None:
        old = self.state
        self._sticky = new
        if old is not new:
            await self._emit_state(old, new, reason, request_id)

    async def _emit_state(
        self, old: ConnectionState, new: ConnectionState, reason: str, request_id: str | None
    ) -> None:
        listeners = self._pool.hooks.on_connection_state
        if listeners:
            await emit(
                listeners,
                ConnectionStateEvent(self.name, old, new, reason, request_id),
            )


def _entity(entity: EntityLike) -> Entity:
    try:
        return to_entity(entity)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_on_invalid(on_invalid: object) -> None:
    """Raise :class:`UsageError` unless ``on_invalid`` is one of the policies."""
    if on_invalid not in ON_INVALID:
        msg = f"on_invalid must be one of {sorted(ON_INVALID)}, got {on_invalid!r}"
        raise UsageError(msg)


def _record_path(entity: Entity, id: str) -> str:
    return f"/{entity.value}/{check_record_id(id)}"


def _idempotency_key(value: str | _Auto | None) -> str | None:
    if value is AUTO:
        return uuid.uuid4().hex
    if value is None or (isinstance(value, str) and value):
        return value
    msg = "idempotency_key must be a non-empty string, AUTO or None"
    raise UsageError(msg)


def _single(resp: RawResponse, request_id: str | None) -> tuple[dict[str, Any], str | None]:
    return parse_single(resp.body, request_id=request_id), request_id


def _ignore(_resp: RawResponse, _request_id: str | None) -> None:
    return None


def _connection_info(resp: RawResponse, request_id: str | None) -> ConnectionInfo:
    return ConnectionInfo.from_data(parse_single(resp.body, request_id=request_id), request_id)


def _sync_status(resp: RawResponse, request_id: str | None) -> SyncStatus:
    return SyncStatus.from_data(parse_single(resp.body, request_id=request_id), request_id)


def _sync_job(resp: RawResponse, request_id: str | None) -> SyncJob:
    return SyncJob(data=parse_single(resp.body, request_id=request_id), request_id=request_id)
