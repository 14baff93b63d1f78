"""The instruments: spans and metrics for calls, attempts, waits, pulls and chains."""

from __future__ import annotations

import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Final, Protocol

from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import _internal as _metrics_globals
from opentelemetry.trace import SpanKind, Status, StatusCode

from makini_async._wire.constants import VERSION
from makini_async.entities import Entity
from makini_async.errors import APIError, MakiniError, RequestTimeout
from makini_async.instrumentation import ConnectionState, ConnectionStateEvent, Hook

if TYPE_CHECKING:
    import enum
    from collections.abc import Mapping, Sequence, Sized

__all__ = ["Attempt", "Telemetry", "url_template"]


# What telemetry reads of the client's calls and of a pull, as protocols: the
# client and the bulk layer sit above telemetry and hand it these objects.


class Call(Protocol):
    """One API call (a ``_client.call.Call`` is one)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...


class Chain(Protocol):
    """One (connection, entity) of a pull (a ``bulk._chain.Chain`` is one)."""

    span: Any

    @property
    def connection(self) -> str: ...
    @property
    def entity(self) -> Entity: ...
    @property
    def records(self) -> int: ...
    @property
    def pages(self) -> int: ...
    @property
    def outcome(self) -> enum.Enum: ...
    @property
    def error(self) -> BaseException | None: ...


class PullReport(Protocol):
    """A pull's report (a :class:`~makini_async.bulk.PullReport` is one)."""

    @property
    def records(self) -> int: ...
    @property
    def pages(self) -> int: ...
    @property
    def failed_connections(self) -> Sized: ...


_ENTITIES: Final = frozenset(e.value for e in Entity)
_API: Final = "/api/v1"
# Seconds: the semantic conventions' advice for HTTP client durations.
_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


def url_template(path: str) -> tuple[str, str | None]:
    """``(template, entity)`` of an API path: ids and entities become placeholders.

    ``/work-orders/42`` is ``/api/v1/{entity}/{id}`` for the entity
    ``work-orders``; anything else keeps its fixed segments (``/connection``).
    """
    parts = path.strip("/").split("/")
    entity = parts[0] if parts and parts[0] in _ENTITIES else None
    if entity is None:
        return _API + "/" + "/".join(parts), None
    shown = ["{entity}", *("{id}" if i == 0 else p for i, p in enumerate(parts[1:]))]
    return _API + "/" + "/".join(shown), entity


def _reason(error: MakiniError) -> str:
    """A retry's reason, low in cardinality: a status code, a timeout or a connection error."""
    if error.status is not None:
        return str(error.status)
    return "timeout" if isinstance(error, RequestTimeout) else "connection_error"


class Attempt:
    """One HTTP attempt's span, the headers that carry its context, and its clock."""

    __slots__ = ("attributes", "headers", "span", "started", "telemetry")

    def __init__(
        self,
        telemetry: Telemetry,
        span: Any,
        headers: dict[str, str],
        attributes: dict[str, Any],
    ) -> None:
        self.telemetry = telemetry
        self.span = span
        self.headers = headers
        self.attributes = attributes
        self.started = time.perf_counter()

    def done(
        self, *, status: int | None, request_id: str | None, error: MakiniError | None = None
    ) -> None:
        """End the attempt's span and record its duration."""
        self.telemetry.attempt_done(self, status=status, request_id=request_id, error=error)


def _unset(provider: object) -> bool:
    """A global provider the application has not set (the API's stand-in, doing nothing)."""
    return type(provider).__name__ in ("ProxyTracerProvider", "_ProxyMeterProvider")


class Telemetry:
    """One pool's tracer, meter and instruments (from the global providers).

    Until the application sets a tracer or meter provider, every span and
    metric would be dropped: :meth:`live` says so, and the pool then skips
    the work of making them (checked per call, so an SDK configured after
    the pool was made is used from then on).
    """

    def __init__(self, api_url: str) -> None:
        self._tracer = trace.get_tracer("makini_async", VERSION)
        meter = metrics.get_meter("makini_async", VERSION)
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self._records = meter.create_counter(
            "makini.client.records", unit="{record}", description="Records received, by entity."
        )
        self._retries = meter.create_counter(
            "makini.client.retries", unit="{retry}", description="Attempts retried, by reason."
        )
        self._lag = meter.create_histogram(
            "makini.sync.lag",
            unit="s",
            description="A sync's lag after each pull: now minus the newest change landed.",
        )
        self._connections = meter.create_up_down_counter(
            "makini.client.connections",
            unit="{connection}",
            description="Connection handles, by state.",
        )
        parts = urllib.parse.urlsplit(api_url)
        default_port = 443 if parts.scheme == "https" else 80
        self._server = {
            "server.address": parts.hostname or "",
            "server.port": parts.port or default_port,
        }
        self.hook = _Hook(self)
        self._live = False
        self._env_read = False

    def live(self) -> bool:
        """Whether an SDK would record anything (a provider set by the application).

        Asked on every call: once a provider is set (it cannot be unset) the
        answer is kept; until then the API's globals are read directly, since
        ``get_tracer_provider()`` looks in ``os.environ`` each time (about 2 µs
        a call), and the environment is read once, here, the first time.
        """
        if self._live:
            return True
        if not self._env_read:
            self._env_read = True  # a provider named in the environment is loaded now
            live = not (
                _unset(trace.get_tracer_provider()) and _unset(metrics.get_meter_provider())
            )
        else:
            live = (
                getattr(trace, "_TRACER_PROVIDER", None) is not None
                or getattr(_metrics_globals, "_METER_PROVIDER", None) is not None
            )
        self._live = live
        return live

    # -- calls and attempts -------------------------------------------------------

    def call(self, connection: str, call: Call) -> Any:
        """The logical span of one API call, current while it runs (a context manager)."""
        template, entity = url_template(call.path)
        attributes: dict[str, Any] = {"makini.connection": connection}
        if entity is not None:
            attributes["makini.entity"] = entity
        return self._tracer.start_as_current_span(
            f"makini {call.method} {template}", kind=SpanKind.INTERNAL, attributes=attributes
        )

    def attempt(
        self, connection: str, call: Call, attempt: int, headers: Mapping[str, str]
    ) -> Attempt:
        """Start an attempt's CLIENT span; its headers carry ``traceparent``."""
        template, entity = url_template(call.path)
        metric = {"http.request.method": call.method, "url.template": template, **self._server}
        attributes: dict[str, Any] = {**metric, "makini.connection": connection}
        if entity is not None:
            attributes["makini.entity"] = entity
        if attempt > 1:
            attributes["http.request.resend_count"] = attempt - 1
        span = self._tracer.start_span(
            f"{call.method} {template}", kind=SpanKind.CLIENT, attributes=attributes
        )
        carrier = dict(headers)
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return Attempt(self, span, carrier, metric)

    def attempt_done(
        self,
        attempt: Attempt,
        *,
        status: int | None,
        request_id: str | None,
        error: MakiniError | None = None,
    ) -> None:
        """End an attempt's span and record its duration."""
        span = attempt.span
        metric = attempt.attributes
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            metric["http.response.status_code"] = status
        if request_id is not None:
            span.set_attribute("makini.request_id", request_id)
        if error is not None:
            kind = str(status) if isinstance(error, APIError) and status else type(error).__name__
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            metric["error.type"] = kind
        span.end()
        self._duration.record(time.perf_counter() - attempt.started, metric)

    # -- waits ----------------------------------------------------------------------

    def retry(self, error: MakiniError, attempt: int, wait: float) -> None:
        self._retries.add(1, {"makini.retry.reason": _reason(error)})
        trace.get_current_span().add_event(
            "makini.retry",
            {
                "makini.attempt": attempt,
                "makini.wait_seconds": wait,
                "error.type": type(error).__name__,
            },
        )

    def event(self, name: str, seconds: float | None = None) -> None:
        """A wait on the current span (a 429 cooldown, an outage)."""
        attributes = {} if seconds is None else {"makini.wait_seconds": float(seconds)}
        trace.get_current_span().add_event(name, attributes)

    # -- handles --------------------------------------------------------------------

    def sync_lag(self, entity: str, seconds: float) -> None:
        self._lag.record(seconds, {"makini.entity": entity})

    def handle_opened(self) -> None:
        self._connections.add(1, {"makini.connection.state": ConnectionState.ACTIVE.value})

    def handle_closed(self, state: ConnectionState) -> None:
        self._connections.add(-1, {"makini.connection.state": state.value})

    def state_changed(self, old: ConnectionState, new: ConnectionState) -> None:
        self._connections.add(-1, {"makini.connection.state": old.value})
        self._connections.add(1, {"makini.connection.state": new.value})

    def records(self, entity: str, count: int) -> None:
        if count:
            self._records.add(count, {"makini.entity": entity})

    # -- bulk pulls -----------------------------------------------------------------

    def start_pull(self, chains: int, entities: list[str]) -> Any:
        return self._tracer.start_span(
            "makini pull",
            kind=SpanKind.INTERNAL,
            attributes={"makini.chains": chains, "makini.entities": entities},
        )

    def current(self, span: Any) -> Any:
        """Make ``span`` current in a ``with`` block (tasks made inside are its children)."""
        return trace.use_span(span, end_on_exit=False)

    def end_pull(self, span: Any, report: PullReport, chains: Sequence[Chain]) -> None:
        for chain in chains:
            self.end_chain(chain)
        span.set_attribute("makini.records", report.records)
        span.set_attribute("makini.pages", report.pages)
        span.set_attribute("makini.chains.failed", len(report.failed_connections))
        span.end()

    def chain_scope(self, chain: Chain) -> Any:
        """Start ``chain``'s span and make it current while its worker walks it."""
        chain.span = self._tracer.start_span(
            f"makini chain {chain.entity.value}",
            kind=SpanKind.INTERNAL,
            attributes={"makini.connection": chain.connection, "makini.entity": chain.entity.value},
        )
        return trace.use_span(chain.span, end_on_exit=False)

    def end_chain(self, chain: Chain) -> None:
        """End ``chain``'s span (once) with what it did."""
        span, chain.span = chain.span, None
        if span is None:
            return
        span.set_attribute("makini.records", chain.records)
        span.set_attribute("makini.pages", chain.pages)
        span.set_attribute("makini.outcome", chain.outcome.value)
        if chain.error is not None:
            span.set_attribute("error.type", type(chain.error).__name__)
            span.set_status(Status(StatusCode.ERROR, type(chain.error).__name__))
        span.end()


class _Hook(Hook):
    """The pool's events that metrics count: handles' states (pages count themselves)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def on_connection_state(self, event: ConnectionStateEvent) -> None:
        self._telemetry.state_changed(event.old, event.new)
