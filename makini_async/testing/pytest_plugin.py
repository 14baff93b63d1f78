"""Pytest fixtures for the mock Makini server (registered through the ``pytest11`` entry point).

- ``makini_server``: a started :class:`~makini_async.testing.MockMakini` with
  default settings, closed after the test.
- ``makini_server_factory``: ``await makini_server_factory(**kwargs)`` starts a
  server with those :class:`MockMakini` arguments; all are closed after the test.

The fixtures are async; they need pytest-asyncio (or run under its auto mode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from makini_async.testing._server import MockMakini

try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio the fixtures cannot run
    _async_fixture = pytest.fixture  # type: ignore[assignment]

__all__ = ["makini_server", "makini_server_factory"]

ServerFactory = Callable[..., Awaitable[MockMakini]]


@_async_fixture
async def makini_server() -> AsyncIterator[MockMakini]:
    """A running MockMakini (defaults: seed 0, 100 records per entity, any token)."""
    async with MockMakini() as server:
        yield server


@_async_fixture
async def makini_server_factory() -> AsyncIterator[ServerFactory]:
    """An async factory of running MockMakini servers, closed at teardown."""
    servers: list[MockMakini] = []

    async def factory(**kwargs: Any) -> MockMakini:
        server = MockMakini(**kwargs)
        await server.start()
        servers.append(server)
        return server

    try:
        yield factory
    finally:
        for server in reversed(servers):
            await server.close()
