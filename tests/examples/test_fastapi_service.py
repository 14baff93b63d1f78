"""The sample FastAPI service in-process: with the plugin's mock server, and with the shim."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from examples import fastapi_service
from makini_async import is_testing
from makini_async.testing import FaultPlan, MockMakini, UnmatchedRequest, mock_aiohttp


@pytest.fixture
def tokens() -> Any:
    fastapi_service.TOKENS.clear()
    fastapi_service.TOKENS["acme"] = "tok-acme-0001"
    yield fastapi_service.TOKENS
    fastapi_service.TOKENS.clear()


async def client_for(base_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = fastapi_service.create_app(base_url=base_url, testing=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client, app


async def test_typed_records_answer_as_json(makini_server: MockMakini, tokens: Any) -> None:
    async for client, app in client_for(makini_server.url):
        answer = await client.get("/customers/acme/work-orders/wo_000001")
        assert answer.status_code == 200
        body = answer.json()
        assert body["id"] == "wo_000001"
        assert body["updated_at"].endswith("Z")
        assert (await client.get("/customers/acme/work-orders/wo_999999")).status_code == 404
        assert (await client.get("/customers/nobody/work-orders/wo_000001")).status_code == 404
        assert len(app.state.pool) == 1  # one pool, one handle per customer


async def test_the_quick_route_gives_up_after_two_seconds_without_retrying(
    makini_server: MockMakini, tokens: Any
) -> None:
    makini_server.configure_connection("tok-acme-0001", faults=FaultPlan(latency=10.0))
    async for client, _app in client_for(makini_server.url):
        answer = await client.get("/customers/acme/work-orders/wo_000001/quick")
        assert answer.status_code == 504
        assert makini_server.stats("tok-acme-0001").requests == 1


async def test_a_reconnected_customer_keeps_its_connection_state(
    makini_server: MockMakini, tokens: Any
) -> None:
    async for client, app in client_for(makini_server.url):
        assert (await client.get("/customers/acme/work-orders/wo_000001")).status_code == 200
        (conn,) = list(app.state.pool)
        conn.rate_limited = 3  # state the rotation must keep
        makini_server.revoke("tok-acme-0001")
        put = await client.put("/customers/acme/token", json={"token": "tok-acme-0002"})
        assert put.status_code == 200
        assert (await client.get("/customers/acme/work-orders/wo_000002")).status_code == 200
        assert list(app.state.pool) == [conn]
        assert (conn.token_generation, conn.rate_limited) == (1, 3)
        assert makini_server.stats("tok-acme-0002").requests == 1


async def test_with_the_aioresponses_shim(tokens: Any, makini_testing: None) -> None:
    assert is_testing()  # the plugin's fixture: testing mode for this test only
    base = "https://makini.test"
    with mock_aiohttp() as mocked:
        record = {"id": "wo_7", "title": "Pump seal", "updated_at": "2024-05-01T10:00:00Z"}
        mocked.get(
            f"{base}/api/v1/work-orders/wo_7",
            payload={"data": record},
            headers={"X-Request-Id": "req_0000000001"},
        )
        async for client, _app in client_for(base):
            answer = await client.get("/customers/acme/work-orders/wo_7")
            assert answer.status_code == 200
            assert answer.json()["title"] == "Pump seal"
            # Nothing registered: a clear error at once, not "Connection refused" after retries.
            with pytest.raises(UnmatchedRequest, match="wo_8"):
                await client.get("/customers/acme/work-orders/wo_8")
