"""OpenTelemetry traces and metrics, when ``opentelemetry-api`` is installed.

Install the ``otel`` extra (``pip install 'makini-async[otel]'``) and the
pool emits native OpenTelemetry through the application's global tracer and
meter providers, which do nothing until the application configures an SDK.
Without ``opentelemetry-api`` nothing is emitted and nothing of it is
imported. ``MakiniPool(telemetry=False)`` turns it off.

What is emitted (HTTP client semantic conventions, stable since 1.23):

- a CLIENT span per HTTP attempt, ``{method} {url.template}`` (for example
  ``GET /api/v1/{entity}``), with ``http.request.method``, ``server.address``,
  ``server.port``, ``url.template``, ``http.response.status_code``,
  ``error.type`` on failure, ``http.request.resend_count`` on a retry, and
  ``makini.connection`` (the display name, never the token), ``makini.entity``
  and ``makini.request_id``; the request carries ``traceparent``;
- an INTERNAL span per API call (a get, a write, one listing page) that
  parents its attempts; waits are its events (``makini.cooldown`` for a 429,
  ``makini.retry`` for a backoff sleep, ``makini.outage_wait``);
- bulk pulls: a span for the pull and one per chain (records, pages,
  outcome), with ``makini.breaker_wait`` events when a chain waits for its
  connection's breaker;
- metrics without connection names or ids: ``http.client.request.duration``
  (s, one point per attempt), ``makini.client.records`` (by entity),
  ``makini.client.retries`` (by reason: a status code, ``timeout`` or
  ``connection_error``) and ``makini.client.connections`` (handles by state).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from makini_async.telemetry._otel import Telemetry

__all__ = ["available", "telemetry_for"]


def available() -> bool:
    """Whether ``opentelemetry-api`` is installed (found without importing it)."""
    try:
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):
        return False


def telemetry_for(api_url: str, *, enabled: bool = True) -> Telemetry | None:
    """The pool's instrumentation, or ``None`` when off or not installed."""
    if not enabled or not available():
        return None
    from makini_async.telemetry._otel import Telemetry  # noqa: PLC0415 - only when installed

    return Telemetry(api_url)
