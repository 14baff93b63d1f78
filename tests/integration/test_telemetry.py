"""OpenTelemetry from the pool, against the mock server, read back with in-memory exporters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from opentelemetry.trace import SpanKind

from makini_async import MakiniPool, PageSizes, set_testing
from makini_async.testing import FaultPlan, MockMakini

from .otelutil import Captured, installed

TOKEN = "tok-secret-otel-0001-abcdefgh"


@pytest.fixture
def otel() -> Iterator[Captured]:
    yield from installed()


def _attempts(otel: Captured) -> list[Any]:
    return [s for s in otel.finished() if s.kind is SpanKind.CLIENT]


async def test_a_request_retried_twice_is_three_attempts_under_one_call(otel: Captured) -> None:
    set_testing(True)
    async with MockMakini(records_per_entity=5) as server:
        server.configure_connection(TOKEN, faults=FaultPlan(error_503=1.0, first=2))
        async with MakiniPool(base_url=server.url) as pool:
            await pool.connection(TOKEN, name="acme").work_orders.get("wo_000001")
    attempts = _attempts(otel)
    assert len(attempts) == 3
    assert [a.attributes.get("http.request.resend_count") for a in attempts] == [None, 1, 2]
    assert [a.attributes["http.response.status_code"] for a in attempts] == [503, 503, 200]
    assert [a.attributes.get("error.type") for a in attempts] == ["503", "503", None]
    (call,) = [s for s in otel.finished() if s.kind is SpanKind.INTERNAL]
    assert {a.parent.span_id for a in attempts} == {call.context.span_id}
    assert attempts[0].name == "GET /api/v1/{entity}/{id}"
    assert attempts[0].attributes["url.template"] == "/api/v1/{entity}/{id}"
    assert attempts[0].attributes["makini.connection"] == "acme"
    assert attempts[0].attributes["makini.entity"] == "work-orders"
    assert attempts[2].attributes["makini.request_id"].startswith("req_")
    assert [e.name for e in call.events] == ["makini.retry", "makini.retry"]
    retries = otel.points("makini.client.retries")
    assert sum(p.value for p in retries) == 2
    assert {p.attributes["makini.retry.reason"] for p in retries} == {"503"}
    # One duration point per attempt.
    durations = otel.points("http.client.request.duration")
    assert sum(p.count for p in durations) == 3
    assert {p.attributes.get("http.response.status_code") for p in durations} == {503, 200}
    assert all("makini.connection" not in p.attributes for p in durations)


async def test_a_429_shows_a_cooldown_event(otel: Captured) -> None:
    set_testing(True)
    async with MockMakini(records_per_entity=5) as server:
        plan = FaultPlan(rate_limit_429=1.0, first=1, retry_after=2.0)
        server.configure_connection(TOKEN, faults=plan)
        async with MakiniPool(base_url=server.url) as pool:
            await pool.connection(TOKEN, name="acme").assets.get("ast_000001")
    (call,) = [s for s in otel.finished() if s.kind is SpanKind.INTERNAL]
    cooldowns = [e for e in call.events if e.name == "makini.cooldown"]
    assert len(cooldowns) == 1
    assert cooldowns[0].attributes["makini.wait_seconds"] == 2.0
    assert {p.attributes["makini.retry.reason"] for p in otel.points("makini.client.retries")} == {
        "429"
    }


async def test_a_bulk_pull_has_one_span_per_chain_under_the_pull(otel: Captured) -> None:
    set_testing(True)
    tokens = [(f"plant-{i:02d}", f"tok-secret-otel-{i:02d}-xxxxxxxx") for i in range(20)]
    async with MockMakini(records_per_entity=30) as server:
        async with (
            MakiniPool(base_url=server.url, page_sizes=PageSizes({"assets": 10})) as pool,
            pool.pull("assets", tokens) as pull,
        ):
            await pull.run()
    spans = otel.finished()
    (root,) = [s for s in spans if s.name == "makini pull"]
    chains = [s for s in spans if s.name == "makini chain assets"]
    assert len(chains) == 20
    assert {c.parent.span_id for c in chains} == {root.context.span_id}
    assert {c.attributes["makini.connection"] for c in chains} == {n for n, _ in tokens}
    assert {c.attributes["makini.records"] for c in chains} == {30}
    assert {c.attributes["makini.pages"] for c in chains} == {3}
    assert {c.attributes["makini.outcome"] for c in chains} == {"completed"}
    assert root.attributes["makini.records"] == 600
    # Each page's call span is a child of its chain's span.
    chain_ids = {c.context.span_id for c in chains}
    calls = [s for s in spans if s.name.startswith("makini GET")]
    assert len(calls) == 60
    assert {c.parent.span_id for c in calls} <= chain_ids
    records = otel.points("makini.client.records")
    assert [(p.attributes, p.value) for p in records] == [({"makini.entity": "assets"}, 600)]
    connections = otel.points("makini.client.connections")
    # Twenty handles opened, then closed with the pool: none left.
    assert {p.attributes["makini.connection.state"]: p.value for p in connections} == {"active": 0}


class Recorder:
    """A pass-through proxy in front of the mock that keeps each request's headers."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                self.upstream + request.path_qs,
                headers={"Authorization": request.headers["Authorization"]},
            ) as answer,
        ):
            body = await answer.read()
            keep = {k: v for k, v in answer.headers.items() if k.lower() == "x-request-id"}
            return web.Response(
                status=answer.status, body=body, headers=keep, content_type="application/json"
            )


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    async with MockMakini(records_per_entity=5) as server:
        proxy = Recorder(server.url)
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", proxy.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield proxy, f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def test_traceparent_reaches_the_server(
    otel: Captured, recorder: tuple[Recorder, str]
) -> None:
    proxy, url = recorder
    async with MakiniPool(base_url=url, allow_insecure_http=True) as pool:
        await pool.connection(TOKEN).work_orders.get("wo_000001")
    (attempt,) = _attempts(otel)
    (headers,) = proxy.headers
    trace_id = format(attempt.context.trace_id, "032x")
    span_id = format(attempt.context.span_id, "016x")
    flags = format(attempt.context.trace_flags, "02x")
    assert headers["traceparent"] == f"00-{trace_id}-{span_id}-{flags}"


async def test_no_token_in_any_span_event_or_metric_of_a_faulty_pull(otel: Captured) -> None:
    set_testing(True)
    tokens = [(f"site-{i}", f"tok-secret-scan-{i:02d}-{'k' * 12}") for i in range(6)]
    async with MockMakini(records_per_entity=40) as server:
        plan = FaultPlan(seed=3, error_503=0.2, rate_limit_429=0.2, error_500=0.1)
        for _, token in tokens[:4]:
            server.configure_connection(token, faults=plan)
        server.configure_connection(tokens[4][1], status="reauthorization_required")
        async with (
            MakiniPool(base_url=server.url, page_sizes=PageSizes({"assets": 10})) as pool,
            pool.pull(["assets", "vendors"], tokens) as pull,
        ):
            await pull.run()
    spans = otel.finished()
    assert any(s.attributes.get("error.type") for s in spans)
    exported = orjson.dumps(
        [
            {
                "name": s.name,
                "attributes": dict(s.attributes),
                "events": [(e.name, dict(e.attributes)) for e in s.events],
                "status": s.status.description,
            }
            for s in spans
        ]
    ).decode()
    data = otel.metrics.get_metrics_data()
    exported += data.to_json() if data else ""
    for _, token in tokens:
        assert token not in exported
        assert token[:16] not in exported


async def test_telemetry_false_emits_nothing(otel: Captured) -> None:
    async with MockMakini(records_per_entity=5) as server:
        async with MakiniPool(base_url=server.url, telemetry=False) as pool:
            await pool.connection(TOKEN).assets.get("ast_000001")
            await asyncio.sleep(0)
    assert otel.finished() == []
    assert otel.points("http.client.request.duration") == []


async def test_handles_are_counted_by_state(otel: Captured) -> None:
    set_testing(True)
    async with MockMakini(records_per_entity=5) as server:
        server.configure_connection(TOKEN, status="reauthorization_required")
        async with MakiniPool(base_url=server.url) as pool:
            pool.connection("tok-secret-otel-healthy-0001", name="healthy")
            with pytest.raises(Exception, match="REAUTHORIZATION_REQUIRED"):
                await pool.connection(TOKEN, name="acme").assets.get("ast_000001")
            during = {
                p.attributes["makini.connection.state"]: p.value
                for p in otel.points("makini.client.connections")
            }
    after = {
        p.attributes["makini.connection.state"]: p.value
        for p in otel.points("makini.client.connections")
    }
    assert during == {"active": 1, "reauthorization_required": 1}
    assert after == {"active": 0, "reauthorization_required": 0}
