"""An embedded mock Makini API server for tests, benchmarks and demos.

::

    async with MockMakini(records_per_entity=500, faults=FaultPlan(error_503=0.1)) as server:
        ...  # point a client at server.url with any token

Also a pytest plugin (fixtures ``makini_server`` and ``makini_server_factory``)
and ``python -m makini_async.testing --port 8080``.

``MockMakini(variations=0.2, unreadable=0.05)`` serves seeded real-world
drift from the contract (see ``VARIATION_KINDS`` and
:meth:`MockMakini.variations`).
"""

from __future__ import annotations

from makini_async.testing._aioresponses import (
    UnmatchedRequest,
    aioresponses_needs_shim,
    mock_aiohttp,
)
from makini_async.testing._data import parse_instant
from makini_async.testing._faults import FAULT_KINDS, FaultPlan, RateLimit
from makini_async.testing._measure import measure_page_cost
from makini_async.testing._serve import build_parser, main, serve
from makini_async.testing._server import MockMakini, RequestLogEntry
from makini_async.testing._state import ServerStats
from makini_async.testing._variations import (
    READABLE_KINDS,
    UNREADABLE_KINDS,
    VARIATION_EXAMPLES,
    VARIATION_KINDS,
    vary,
)
from makini_async.testing._webhooks import WebhookDelivery, WebhookSender

__all__ = [
    "FAULT_KINDS",
    "READABLE_KINDS",
    "UNREADABLE_KINDS",
    "VARIATION_EXAMPLES",
    "VARIATION_KINDS",
    "FaultPlan",
    "MockMakini",
    "RateLimit",
    "RequestLogEntry",
    "ServerStats",
    "UnmatchedRequest",
    "WebhookDelivery",
    "WebhookSender",
    "aioresponses_needs_shim",
    "build_parser",
    "main",
    "measure_page_cost",
    "mock_aiohttp",
    "parse_instant",
    "serve",
    "vary",
]
