from __future__ import annotations

import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest

from makini_async._client import retry as _retry
from makini_async.pool import MakiniPool
from tests.fakes import FakeClock, FakeTransport, Handler

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

TOKEN = "tok_live_SECRET_0123456789abcdef"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _reset_testing_mode() -> Any:
    yield
    _retry.set_testing(False)


@pytest.fixture
def make_pool(clock: FakeClock) -> Callable[..., Any]:
    @asynccontextmanager
    async def factory(
        handler: Handler, **kwargs: Any
    ) -> AsyncIterator[tuple[MakiniPool, FakeTransport]]:
        transport = FakeTransport(handler)
        kwargs.setdefault("rng", random.Random(7))
        kwargs.setdefault("sleep", clock.sleep)
        pool = MakiniPool(base_url="http://makini.test", transport=transport, clock=clock, **kwargs)
        async with pool:
            yield pool, transport

    return factory
