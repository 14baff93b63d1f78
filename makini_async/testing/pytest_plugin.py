"""Pytest fixtures for the mock Makini server (registered through the ``pytest11`` entry point).

- ``makini_server``: a started :class:`~makini_async.testing.MockMakini` with
  default settings, closed after the test.
- ``makini_server_factory``: ``await makini_server_factory(**kwargs)`` starts a
  server with those :class:`MockMakini` arguments; all are closed after the test.
- ``makini_testing``: testing mode (every wait zero, :func:`makini_async.set_testing`)
  for one test, switched back off after it.

Every test also gets the process-wide testing switch back as it found it
(an autouse fixture), so one test's ``set_testing(True)`` never changes the
next test's waits.

The fixtures are async; they need pytest-asyncio (or run under its auto mode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from makini_async._client.retry import set_testing
from makini_async.testing._server import MockMakini

try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio the fixtures cannot run
    _async_fixture = pytest.fixture  # type: ignore[assignment]

__all__ = ["makini_server", "makini_server_factory", "makini_testing"]

ServerFactory = Callable[..., Awaitable[MockMakini]]


@pytest.fixture(autouse=True)
def _makini_testing_restored() -> Iterator[None]:
    """Whatever a test does to the process-wide testing switch ends with the test."""
    from makini_async._client.retry import _TESTING  # noqa: PLC0415 - the switch itself

    before = (_TESTING.enabled, _TESTING.attempts)
    try:
        yield
    finally:
        _TESTING.enabled, _TESTING.attempts = before


@pytest.fixture
def makini_testing() -> Iterator[None]:
    """Testing mode (every wait zero) for this test only."""
    with set_testing(True):
        yield


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
