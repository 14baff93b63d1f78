"""Rate limiting on an injected clock, fault injection, concurrency stats."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from makini_async.testing import FAULT_KINDS, FaultPlan, MockMakini, RateLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_rate_limit_window_and_cooldown(makini_server_factory: Any, make_client: Any) -> None:
    clock = FakeClock()
    server = await makini_server_factory(rate_limit=RateLimit(3, 10), clock=clock)
    client = make_client(server)
    for _ in range(3):
        assert (await client.call("GET", "/api/v1/assets"))[0] == 200
    clock.now += 2.5
    status, body, headers = await client.call("GET", "/api/v1/assets")
    assert status == 429
    assert body["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert headers["Retry-After"] == "8"  # ceil(1000 + 10 - 1002.5)
    assert server.stats("tok").during_cooldown == 0
    clock.now += 3  # still inside the 8 s we were told
    assert (await client.call("GET", "/api/v1/assets"))[0] == 429
    assert server.stats("tok").during_cooldown == 1
    # Other tokens are unaffected.
    assert (await client.call("GET", "/api/v1/assets", "other"))[0] == 200
    assert server.stats("other").during_cooldown == 0
    clock.now += 8  # past Retry-After and the window
    assert (await client.call("GET", "/api/v1/assets"))[0] == 200
    stats = server.stats("tok")
    assert stats.during_cooldown == 1
    assert stats.requests == 6
    assert stats.statuses[429] == 2
    assert stats.statuses[200] == 4


async def test_rate_limit_fixed_retry_after_and_per_connection(
    makini_server_factory: Any, make_client: Any
) -> None:
    clock = FakeClock()
    server = await makini_server_factory(clock=clock)
    server.configure_connection("slow", rate_limit=RateLimit(1, 60, retry_after=2.2))
    client = make_client(server)
    assert (await client.call("GET", "/api/v1/assets", "slow"))[0] == 200
    status, _, headers = await client.call("GET", "/api/v1/assets", "slow")
    assert status == 429
    assert headers["Retry-After"] == "3"
    for _ in range(5):
        assert (await client.call("GET", "/api/v1/assets", "fast"))[0] == 200


async def test_fault_sequence_reproducible(makini_server_factory: Any, make_client: Any) -> None:
    plan = FaultPlan(seed=42, error_500=0.2, error_503=0.2, rate_limit_429=0.1)

    async def run(order: list[str]) -> dict[str, list[str]]:
        server = await makini_server_factory(faults=plan, clock=FakeClock())
        client = make_client(server)
        for token in order:
            await client.call("GET", "/api/v1/vendors", token)
        return {t: server.fault_log(t) for t in set(order)}

    first = await run(["a", "b"] * 15)
    second = await run(["b"] * 15 + ["a"] * 15)  # different interleaving
    assert first == second
    assert len(first["a"]) == 15
    assert set(first["a"]) <= {"none", "error_500", "error_503", "rate_limit_429"}
    assert first["a"] != first["b"], "each token has its own sequence"
    assert "none" in first["a"]
    assert len(set(first["a"]) | set(first["b"])) > 2
    other = await makini_server_factory(faults=FaultPlan(seed=43, error_500=0.2, error_503=0.2))
    client = make_client(other)
    for _ in range(15):
        await client.call("GET", "/api/v1/vendors", "a")
    assert other.fault_log("a") != first["a"]


async def test_fault_statuses_match_log(makini_server_factory: Any, make_client: Any) -> None:
    server = await makini_server_factory(
        faults=FaultPlan(seed=1, error_500=0.25, error_502=0.25, rate_limit_429=0.25, retry_after=2)
    )
    client = make_client(server)
    statuses = [(await client.call("GET", "/api/v1/assets"))[0] for _ in range(40)]
    expected = {"none": 200, "error_500": 500, "error_502": 502, "rate_limit_429": 429}
    assert statuses == [expected[k] for k in server.fault_log("tok")]
    assert server.stats("tok").statuses[429] == statuses.count(429)


async def test_fault_filters(makini_server_factory: Any, make_client: Any) -> None:
    server = await makini_server_factory(
        faults=FaultPlan(error_500=1.0, only_paths=["/api/v1/work-orders"], methods=["GET"])
    )
    client = make_client(server)
    assert (await client.call("GET", "/api/v1/assets"))[0] == 200
    assert (await client.call("GET", "/api/v1/work-orders"))[0] == 500
    assert (await client.call("POST", "/api/v1/work-orders", json={"title": "t"}))[0] == 201
    assert server.fault_log("tok") == ["error_500"]


def test_fault_plan_validation() -> None:
    with pytest.raises(ValueError, match="within"):
        FaultPlan(error_500=1.5)
    with pytest.raises(ValueError, match="sum"):
        FaultPlan(error_500=0.6, drop=0.6)
    with pytest.raises(ValueError, match="negative"):
        FaultPlan(latency=-1)
    with pytest.raises(ValueError):
        RateLimit(0, 1)
    assert set(FAULT_KINDS) <= {a.name for a in FaultPlan.__attrs_attrs__}


async def test_drop_is_a_mid_body_disconnect(makini_server: MockMakini, client: Any) -> None:
    makini_server.configure_connection("drop", faults=FaultPlan(drop=1.0))
    with pytest.raises(aiohttp.ClientPayloadError):
        await client.call("GET", "/api/v1/assets", "drop")
    assert makini_server.fault_log("drop") == ["drop"]
    # The server keeps serving others.
    assert (await client.call("GET", "/api/v1/assets"))[0] == 200


async def test_truncate_and_malformed(
    makini_server: MockMakini, session: aiohttp.ClientSession
) -> None:
    makini_server.configure_connection("tr", faults=FaultPlan(truncate=1.0))
    makini_server.configure_connection("mal", faults=FaultPlan(malformed=1.0))
    url = f"{makini_server.url}/api/v1/assets"
    async with session.get(url, headers={"Authorization": "Bearer tr"}) as resp:
        assert resp.status == 200
        raw = await resp.read()
        assert int(resp.headers["Content-Length"]) == len(raw)
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)
    async with session.get(url, headers={"Authorization": "Bearer mal"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        with pytest.raises(aiohttp.ContentTypeError):
            await resp.json()


async def test_stall_times_out_client_and_closes_cleanly(
    makini_server_factory: Any, session: aiohttp.ClientSession
) -> None:
    server = await makini_server_factory(faults=FaultPlan(stall=1.0))
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with session.get(
            f"{server.url}/api/v1/assets",
            headers={"Authorization": "Bearer s"},
            timeout=aiohttp.ClientTimeout(total=0.2),
        ):
            pass

    # A second stalled request is still pending server-side when we close.
    async def fetch() -> bytes:
        async with session.get(
            f"{server.url}/api/v1/assets", headers={"Authorization": "Bearer s"}
        ) as resp:
            return await resp.read()

    task = asyncio.create_task(fetch())
    await asyncio.sleep(0.05)
    await server.close()
    with pytest.raises(aiohttp.ClientError):
        await task
    assert time.monotonic() - started < 5


async def test_latency(makini_server_factory: Any, make_client: Any) -> None:
    server = await makini_server_factory(faults=FaultPlan(latency=0.15, latency_jitter=0.05))
    client = make_client(server)
    started = time.monotonic()
    assert (await client.call("GET", "/api/v1/assets"))[0] == 200
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 1.0
    assert server.fault_log("tok") == ["none"]


async def test_write_applied_503(makini_server: MockMakini, client: Any) -> None:
    makini_server.configure_connection("w", faults=FaultPlan(write_applied_503=1.0))
    before = len(makini_server.records("w", "assets"))
    key = {"Idempotency-Key": "once"}
    status, body, _ = await client.call(
        "POST", "/api/v1/assets", "w", json={"name": "n"}, headers=key
    )
    assert status == 503
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert len(makini_server.records("w", "assets")) == before + 1, "write applied"
    # Reads are not affected by this fault kind.
    assert (await client.call("GET", "/api/v1/assets", "w"))[0] == 200
    # A retry with the same key gets the original result... once the fault is gone.
    makini_server.configure_connection("w", faults=FaultPlan())
    status, body, headers = await client.call(
        "POST", "/api/v1/assets", "w", json={"name": "n"}, headers=key
    )
    assert status == 201
    assert headers["Idempotent-Replayed"] == "true"
    assert body["data"]["name"] == "n"
    assert len(makini_server.records("w", "assets")) == before + 1


async def test_faults_do_not_touch_store(makini_server: MockMakini, client: Any) -> None:
    makini_server.configure_connection("e", faults=FaultPlan(error_500=1.0))
    before = makini_server.records("e", "assets")
    status, _, _ = await client.call("POST", "/api/v1/assets", "e", json={"name": "n"})
    assert status == 500
    assert makini_server.records("e", "assets") == before


async def test_max_concurrent_stats(makini_server_factory: Any, make_client: Any) -> None:
    server = await makini_server_factory(faults=FaultPlan(latency=0.1))
    client = make_client(server)
    await asyncio.gather(*(client.call("GET", "/api/v1/assets", "par") for _ in range(6)))
    await client.call("GET", "/api/v1/assets", "seq")
    await client.call("GET", "/api/v1/assets", "seq")
    assert server.stats("par").max_concurrent == 6
    assert server.stats("par").requests == 6
    assert server.stats("seq").max_concurrent == 1
    assert server.total_requests == 8
