"""One customer connection: its identity, its counters and its API surface.

A :class:`Connection` is a cheap handle owned by a :class:`MakiniPool`. Its
health (concurrency limit, rate-limit cooldown, circuit breaker,
reauthorization mark; see :mod:`makini_async._client.health`) and its counters are
shared by every task that uses it. Each entity is a typed resource
(``conn.work_orders``); the string-entity calls (``conn.list("work-orders")``)
stay for code that picks the entity at run time.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import attrs

from makini_async._calls import EntityCalls
from makini_async._client import keys as _keys
from makini_async._client import listing as _listing
from makini_async._client.call import Call
from makini_async._client.config import CallOptions
from makini_async._client.gate import Gate
from makini_async._client.health import Health
from makini_async._client.send import send
from makini_async._client.tokens import Credentials
from makini_async._wire.arguments import AUTO, encode, entity_of
from makini_async._wire.responses import parse_single
from makini_async._wire.scrub import clean
from makini_async.errors import UsageError
from makini_async.instrumentation import ConnectionState
from makini_async.status import ConnectionInfo, SyncJob, SyncStatus

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable

    from makini_async._client.config import RetryPolicy
    from makini_async._client.shared import Shared
    from makini_async._client.transport import RawResponse
    from makini_async._client.walk import Sizing
    from makini_async._invalid import InvalidRecord
    from makini_async.entities import Entity, EntityLike
    from makini_async.pagination import Page

__all__ = [
    "AUTO",
    "Connection",
    "ConnectionStats",
    "ConnectionView",
    "default_name",
    "token_fingerprint",
]


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


def default_name(token: str) -> str:
    """A stable display name for a token that reveals nothing of it.

    ``conn-`` and 16 hex digits of an HMAC of the token under the
    installation's key (see :mod:`makini_async._client.keys`).
    """
    return _keys.name_of(token)


def token_fingerprint(token: str) -> str:
    """What a checkpoint records of a token: a keyed one-way hash, apart from the name's."""
    return _keys.fingerprint_of(token)


class Connection(Health, EntityCalls):
    """The handle for one customer connection. Get it from :meth:`MakiniPool.connection`."""

    __slots__ = (
        "_auth",
        "_in_flight",
        "_last_used",
        "_max_page",
        "_name",
        "_named",
        "_per_connection",
        "_sem",
        "connection_id",
        "failures",
        "rate_limited",
        "requests",
        "retries",
    )

    def __init__(
        self,
        shared: Shared,
        token: str | None,
        *,
        name: str | None,
        per_connection: int | None,
        provider: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(shared)
        self._auth = Credentials(token, provider)
        self._name = name
        self._named = name is not None
        self._per_connection = per_connection
        self._sem: Gate | None = None
        self._max_page: dict[Entity, int] | None = None
        self._in_flight = 0
        self._last_used = 0.0
        self.requests = 0
        self.retries = 0
        self.rate_limited = 0
        self.failures = 0
        #: Makini's id of the connection (``GET /connection`` -> ``data.id``), once known:
        #: learnt by :meth:`info`, or given with ``pool.bind_connection_id()``.
        self.connection_id: str | None = None

    # -- identity and counters ---------------------------------------------------

    @property
    def name(self) -> str:
        """Display name: the one given, or ``conn-`` and a hash prefix of the token."""
        if self._name is None:
            self._name = default_name(self._auth.token or "")
        return self._name

    def _rename(self, name: str) -> None:
        """Give a handle that had only its default name the ``name`` asked for now."""
        if name != self.name:
            if self._named:
                msg = f"this token's connection is already named {self.name!r}, not {name!r}"
                raise UsageError(msg)
            self._name = name
        self._named = True

    def __repr__(self) -> str:
        return f"<Connection {self.name!r} token=<redacted> state={self.state.value}>"

    @property
    def shared(self) -> Shared:
        return self._shared

    @property
    def fingerprint(self) -> str:
        """A one-way hash of the token (checkpoints keep it to recognise the token)."""
        token = self._auth.token
        return token_fingerprint(token if token is not None else "provider:" + self.name)

    @property
    def _secrets(self) -> tuple[str, ...]:
        """What must never appear in text this connection shows: its tokens, old and new."""
        return self._auth.secrets

    @property
    def token_generation(self) -> int:
        """How many times this connection's token changed (``0``: never)."""
        return self._auth.generation

    @property
    def token_changed_at(self) -> float | None:
        """When the token last changed, on the pool clock (``None``: never)."""
        return self._auth.changed_at

    def replace_token(self, token: str) -> bool:
        """Send ``token`` from now on, keeping every state; whether it changed."""
        return self._auth.replace(token, self._shared.clock())

    async def _authorization(self) -> str:
        """The token for the next attempt (a provider is asked for the first one)."""
        return await self._auth.current(self.name)

    async def _refresh_token(self, used: str) -> bool:
        """A 401 answered ``used``: ask the provider once; whether there is a new token."""
        return await self._auth.refresh(used, self.name, self._shared.clock())

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

    def _idle_since(self, horizon: float) -> bool:
        """Idle, unused since ``horizon`` and without state worth keeping (evictable)."""
        return self._in_flight == 0 and self._last_used <= horizon and self._calm

    # -- what the send loop uses -------------------------------------------------

    def _headers(self, call: Call, token: str | None = None) -> dict[str, str]:
        headers = {"Authorization": "Bearer " + (token or self._auth.token or "")}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        if call.idempotency_key is not None:
            headers["Idempotency-Key"] = call.idempotency_key
        return headers

    @property
    def token(self) -> str:
        """The token, for the send loop's headers and scrubbing; never shown anywhere."""
        return self._auth.token or ""

    def _begin(self, now: float) -> None:
        self._last_used = now
        self._in_flight += 1

    def _end(self) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            # Nothing holds or waits on the semaphore: an idle handle keeps none.
            self._sem = None

    def _slot(self) -> Gate:
        """The connection's concurrency limit (made when first needed)."""
        sem = self._sem
        if sem is None:
            limit = self._per_connection or self._shared.limits.per_connection
            sem = self._sem = Gate(limit)
        return sem

    def _cleaned(self, invalid: builtins.list[InvalidRecord]) -> tuple[InvalidRecord, ...]:
        """Invalid records whose reasons (quoting server values) are scrubbed of the token."""
        return tuple(attrs.evolve(i, reason=clean(i.reason, self._secrets)) for i in invalid)

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> ConnectionView:
        """This connection with per-call options: a cheap view sharing its every state.

        ``timeout`` (seconds) bounds each call made through the view, retries
        and waits included, and raises :class:`RequestTimeout` past it;
        ``max_retries`` caps the retries after the first attempt (``0``:
        none); ``retry`` replaces the pool's :class:`RetryPolicy`. By default
        a call may retry for up to ``RetryPolicy.timeout`` (300 s): bound it
        this way where a person is waiting.
        """
        opts = CallOptions(timeout=timeout, max_retries=max_retries, retry=retry)
        return ConnectionView(self, opts)

    def _target(self, entity: Entity) -> tuple[Connection, Entity, CallOptions | None]:
        return self, entity, None

    def _as_dicts(self, as_dicts: bool | None) -> bool:  # noqa: FBT001
        return self._shared.as_dicts if as_dicts is None else as_dicts

    # -- listing pages (see makini_async._client.listing) ---------------------------------

    def _page_size_for(self, entity: Entity, page_size: int | None = None) -> int:
        """The page size to ask for: ``page_size``, else the pool's, within any learnt limit."""
        return _listing.page_size_for(self, entity, page_size)

    def sizing(self, entity: Entity, largest: int) -> Sizing:
        """How a walk of ``entity`` adapts its page size (see :class:`PageSizes`)."""
        return _listing.sizing_for(self, entity, largest)

    def _learnt_page_size(self, entity: Entity) -> int | None:
        """The page-size limit the API gave this connection for ``entity``, if any."""
        return None if self._max_page is None else self._max_page.get(entity)

    def _learn_page_size(self, entity: Entity, limit: int) -> None:
        if self._max_page is None:
            self._max_page = {}
        self._max_page[entity] = limit

    async def fetch_page(
        self,
        entity: Entity,
        *,
        cursor: str | None,
        page_size: int,
        modified_after: str | None = None,
        created_after: str | None = None,
        as_dicts: bool = False,
        options: CallOptions | None = None,
    ) -> Page[Any]:
        """Fetch one page, parsed and finished (records that fit, and invalid ones)."""
        return await _listing.fetch_page(
            self,
            entity,
            cursor=cursor,
            page_size=page_size,
            modified_after=modified_after,
            created_after=created_after,
            as_dicts=as_dicts,
            options=options,
        )

    # -- the connection itself ---------------------------------------------------

    async def info(self) -> ConnectionInfo:
        """``GET /connection``. Marks the handle when reauthorization is required."""
        info = await send(self, Call("GET", "/connection"), _connection_info)
        self.connection_id = info.id
        if info.reauthorization_required:
            await self._mark_reauthorization(info.request_id, "status endpoint")
        return info

    async def sync_status(self) -> SyncStatus:
        """``GET /sync-status``: last sync per entity (the next ``modified_after``)."""
        return await send(self, Call("GET", "/sync-status"), _sync_status)

    async def trigger_sync(self, entity: EntityLike, *, full: bool = False) -> SyncJob:
        """``POST /syncs``: start an incremental (or ``full``) sync of ``entity``."""
        body = encode({"entity": entity_of(entity).value, "full": bool(full)})
        call = Call("POST", "/syncs", None, body, uuid.uuid4().hex)
        return await send(self, call, _sync_job)

    async def disconnect(self) -> None:
        """``DELETE /connection``: the token stops working at once."""
        await send(self, Call("DELETE", "/connection"), _ignore)
        await self._set_sticky(ConnectionState.DISCONNECTED, "disconnected by the client", None)


class ConnectionView(EntityCalls):
    """A connection whose calls all use ``options`` (see :meth:`Connection.with_options`).

    A view holds the options and the connection it was made from and makes
    nothing of its own: every call made through it uses the connection's one
    state (429 cooldown, circuit breaker, reauthorization mark, counters), so
    a latency-sensitive route can bound its calls without a second pool::

        fast = conn.with_options(timeout=2.0, max_retries=0)
        order = await fast.work_orders.get("wo_1")  # at most 2 s, one attempt
    """

    __slots__ = ("_conn", "options")

    def __init__(self, conn: Connection, options: CallOptions) -> None:
        self._conn = conn
        self.options = options

    def __repr__(self) -> str:
        return f"<ConnectionView {self._conn.name!r} {self.options!r}>"

    @property
    def connection(self) -> Connection:
        """The connection itself (its state is this view's)."""
        return self._conn

    @property
    def name(self) -> str:
        return self._conn.name

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> ConnectionView:
        """This view with more options (what they leave unset stays as it is)."""
        opts = CallOptions(timeout=timeout, max_retries=max_retries, retry=retry)
        return ConnectionView(self._conn, opts.over(self.options))

    def _target(self, entity: Entity) -> tuple[Connection, Entity, CallOptions | None]:
        return self._conn, entity, self.options

    def _as_dicts(self, as_dicts: bool | None) -> bool:  # noqa: FBT001
        return self._conn._as_dicts(as_dicts)


def _ignore(_resp: RawResponse, _request_id: str | None) -> None:
    return None


def _connection_info(resp: RawResponse, request_id: str | None) -> ConnectionInfo:
    return ConnectionInfo.from_data(parse_single(resp.body, request_id=request_id), request_id)


def _sync_status(resp: RawResponse, request_id: str | None) -> SyncStatus:
    return SyncStatus.from_data(parse_single(resp.body, request_id=request_id), request_id)


def _sync_job(resp: RawResponse, request_id: str | None) -> SyncJob:
    return SyncJob(data=parse_single(resp.body, request_id=request_id), request_id=request_id)
