"""``pool.sync``: a long-running mirror into a real PostgreSQL, run by a schedule and webhooks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from makini_async import MakiniPool
from makini_async.testing import MockMakini

SECRET = "whsec_sync_tests"
TOKENS = [(f"plant-{i:02d}", f"token-sync-{i}") for i in range(6)]


async def rows(dsn: str, table: str = "makini_work_orders") -> dict[tuple[str, str], Any]:
    db = await asyncpg.connect(dsn)
    try:
        found = await db.fetch(f"SELECT connection, id, record FROM {table}")  # noqa: S608
    finally:
        await db.close()
    return {(r["connection"], r["id"]): r["record"] for r in found}


async def expected(server: MockMakini) -> set[tuple[str, str]]:
    return {(name, r["id"]) for name, token in TOKENS for r in server.records(token, "work-orders")}


async def wait_for(check: Any, timeout: float = 10.0) -> float:
    """Poll ``check()`` until true; the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            pytest.fail("timed out")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_first_sync_mirrors_every_connection_then_webhooks_and_the_schedule_land_changes(
    pg_dsn: str,
) -> None:
    async with (
        MockMakini(records_per_entity=120) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
        pool.sync("work-orders", TOKENS, sink=pg_dsn, every=3.0, webhook_secret=SECRET) as sync,
    ):
        url = await sync.serve()
        server.register_webhook(f"{url}/webhooks/makini", SECRET, duplicate=1, shuffle=True)
        await sync.idle(timeout=30)
        landed = await rows(pg_dsn)
        assert set(landed) == await expected(server)

        # Announced by webhook: lands within 2 s, updated in place (no second row).
        name, token = TOKENS[2]
        target = server.records(token, "work-orders")[5]["id"]
        await server.change(token, "work-orders", target, {"title": "Replace the seal"})

        async def announced() -> bool:
            data = (await rows(pg_dsn)).get((name, target))
            return data is not None and '"Replace the seal"' in data

        assert await wait_for(announced, timeout=5) < 2.0
        assert len(await rows(pg_dsn)) == len(landed)

        # Not announced: the schedule lands it within one interval.
        other, other_token = TOKENS[4]
        quiet = server.records(other_token, "work-orders")[7]["id"]
        await server.change(other_token, "work-orders", quiet, {"title": "Quiet"}, announce=False)

        async def scheduled() -> bool:
            data = (await rows(pg_dsn)).get((other, quiet))
            return data is not None and '"Quiet"' in data

        assert await wait_for(scheduled, timeout=8) < 3.0 + 2.0

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/healthz") as answer:
                assert answer.status == 200
            async with http.get(f"{url}/status") as answer:
                status = await answer.json()
                body = await answer.text()
        assert {c["name"] for c in status["connections"]} == {n for n, _ in TOKENS}
        chain = status["connections"][0]["entities"]["work-orders"]
        assert chain["last_success"] is not None
        assert chain["landed"] >= 120
        assert chain["last_error"] is None
        assert chain["lag"] is not None
        assert all(token not in body for _, token in TOKENS)


async def test_reauthorization_stops_calls_and_a_status_change_resumes_them(pg_dsn: str) -> None:
    told: list[str] = []
    async with (
        MockMakini(records_per_entity=30) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
        pool.sync(
            "work-orders",
            TOKENS,
            sink=pg_dsn,
            every=1.0,
            webhook_secret=SECRET,
            on_reauthorization=told.append,
        ) as sync,
    ):
        url = await sync.serve()
        server.register_webhook(f"{url}/webhooks/makini", SECRET, duplicate=1, shuffle=True)
        await sync.idle(timeout=30)

        async def ids_known() -> bool:
            return all(pool.connection(t, name=n).connection_id for n, t in TOKENS)

        await wait_for(ids_known)
        name, token = TOKENS[1]
        await server.change_status(token, "reauthorization_required")

        async def paused() -> bool:
            return told == [name]

        await wait_for(paused)
        before = server.stats(token).requests
        await asyncio.sleep(2.5)  # two intervals: no call goes out
        assert server.stats(token).requests == before
        state = {c["name"]: c["state"] for c in sync.status()["connections"]}
        assert state[name] == "reauthorization_required"

        await server.change_status(token, "active")

        async def resumed() -> bool:
            return server.stats(token).requests > before

        await wait_for(resumed)
        await sync.idle(timeout=10)
        state = {c["name"]: c["state"] for c in sync.status()["connections"]}
        assert state[name] == "active"
        assert told == [name]  # told once


async def test_reload_adds_and_removes_connections_and_takes_a_rotated_token(pg_dsn: str) -> None:
    async with (
        MockMakini(records_per_entity=20) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
        pool.sync("work-orders", TOKENS[:3], sink=pg_dsn, every=60.0) as sync,
    ):
        await sync.idle(timeout=30)
        assert {c for c, _ in await rows(pg_dsn)} == {n for n, _ in TOKENS[:3]}
        gone = TOKENS[0]
        before = server.stats(gone[1]).requests
        handle = pool.connection(TOKENS[1][1], name=TOKENS[1][0])
        rotated = (TOKENS[1][0], "token-sync-rotated")
        await sync.reload([rotated, TOKENS[2], TOKENS[3]])
        await sync.idle(timeout=30)

        assert {c for c, _ in await rows(pg_dsn)} == {n for n, _ in TOKENS[:4]}
        assert pool.connection("token-sync-rotated", name=TOKENS[1][0]) is handle
        assert handle.token_generation == 1
        sync.trigger(TOKENS[2][0])
        await sync.idle(timeout=30)
        assert server.stats(gone[1]).requests == before  # removed: never called again
        assert {c["name"] for c in sync.status()["connections"]} == {
            TOKENS[1][0],
            TOKENS[2][0],
            TOKENS[3][0],
        }


async def test_status_events_late_or_twice_change_nothing_they_should_not(pg_dsn: str) -> None:
    import orjson

    from makini_async.webhooks import SIGNATURE_HEADER, sign

    async with (
        MockMakini(records_per_entity=10) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
        pool.sync("work-orders", TOKENS, sink=pg_dsn, every=60.0, webhook_secret=SECRET) as sync,
    ):
        url = await sync.serve()
        await sync.idle(timeout=30)

        async def ids_known() -> bool:
            return all(pool.connection(t, name=n).connection_id for n, t in TOKENS)

        await wait_for(ids_known)
        name, token = TOKENS[3]
        cid = server.connection_id(token)

        def event(eid: str, kind: str, created: str, data: dict[str, Any]) -> bytes:
            return orjson.dumps(
                {"id": eid, "type": kind, "created_at": created, "connection_id": cid, "data": data}
            )

        older = event(
            "evt_1",
            "connection.reauthorization_required",
            "2026-01-01T10:00:00Z",
            {"status": "reauthorization_required"},
        )
        newer = event(
            "evt_2",
            "connection.status_changed",
            "2026-01-01T10:05:00Z",
            {"status": "active", "previous_status": "reauthorization_required"},
        )
        async with aiohttp.ClientSession() as http:
            for body in (newer, older, older, newer):  # late, and twice
                headers = {SIGNATURE_HEADER: sign(SECRET, body, int(time.time()))}
                async with http.post(f"{url}/webhooks/makini", data=body, headers=headers) as r:
                    assert r.status == 200
        assert sync.receiver is not None
        await sync.receiver.join()
        state = {c["name"]: c["state"] for c in sync.status()["connections"]}
        assert state[name] == "active"  # the late reauthorization event changed nothing
        assert not pool.connection(token, name=name).needs_reauthorization
        assert sync.receiver.stats.duplicates == 2

        before = server.stats(token).requests
        target = server.records(token, "work-orders")[0]["id"]
        await server.change(token, "work-orders", target, {"title": "still synced"}, announce=False)
        sync.trigger(name)
        await sync.idle(timeout=10)
        assert server.stats(token).requests > before


async def test_lag_is_a_histogram_by_entity_when_opentelemetry_is_on(pg_dsn: str) -> None:
    from .otelutil import installed

    for otel in installed():
        async with (
            MockMakini(records_per_entity=10) as server,
            MakiniPool(base_url=server.url, as_dicts=True) as pool,
            pool.sync(["work-orders", "assets"], TOKENS[:2], sink=pg_dsn, every=60.0) as sync,
        ):
            await sync.idle(timeout=30)
        points = otel.points("makini.sync.lag")
        by_entity = {p.attributes["makini.entity"]: p for p in points}
        assert set(by_entity) == {"work-orders", "assets"}
        assert all(p.count == 2 for p in by_entity.values())  # one a chain
        assert all(p.sum > 0 for p in by_entity.values())
