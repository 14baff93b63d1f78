"""A webhook event changes the pool once, on the first claim of its id, and never a newer token."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import orjson
import pytest

from makini_async import Connection, ConnectionState, WebhookReceiver
from makini_async.webhooks import WebhookEvent, sign, typed_event
from tests.fakes import Call, respond

SECRET = "whsec_SECRET_duplicates_0001"
OLD_TOKEN = "tok_live_SECRET_before_reconnect_01"
NEW_TOKEN = "tok_live_SECRET_after_reconnect_002"
NOW = 1_700_000_000


def ok(call: Call) -> Any:
    return respond(200, {"data": {"id": "conn_abc", "system": "SAP", "status": "active"}})


def reauth(event_id: str = "evt_reauth_1", created_at: str = "2026-01-01T00:00:00Z") -> bytes:
    return orjson.dumps(
        {
            "id": event_id,
            "type": "connection.reauthorization_required",
            "created_at": created_at,
            "connection_id": "conn_abc",
            "data": {"reason": "credentials_changed"},
        }
    )


async def deliver(receiver: WebhookReceiver, payload: bytes) -> int:
    status = await receiver.receive(payload, sign(SECRET, payload, NOW))
    await asyncio.gather(*list(receiver._background))  # the pool update, run in a task
    return status


def reconnect(pool: Any) -> Connection:
    """The customer reconnected: a new token for the same Makini connection."""
    conn: Connection = pool.bind_connection_id(pool.connection(NEW_TOKEN), "conn_abc")
    return conn


async def test_a_duplicate_after_a_reconnection_leaves_the_new_token_alone(make_pool: Any) -> None:
    fired: list[str] = []
    async with make_pool(ok, on_reauthorization_required=lambda c: fired.append(c.token)) as (
        pool,
        _transport,
    ):
        old = pool.bind_connection_id(pool.connection(OLD_TOKEN), "conn_abc")
        async with WebhookReceiver(SECRET, pool=pool, clock=lambda: NOW) as receiver:
            assert await deliver(receiver, reauth()) == 200
            assert old.state is ConnectionState.REAUTHORIZATION_REQUIRED
            new = reconnect(pool)
            assert await deliver(receiver, reauth()) == 200  # Makini delivered it twice
            assert receiver.stats.duplicates == 1
            assert new.state is ConnectionState.ACTIVE
            assert pool.connection_status(new) == "active"
    assert fired == [OLD_TOKEN]


async def test_an_event_refused_for_a_full_queue_reaches_the_pool_once(make_pool: Any) -> None:
    fired: list[str] = []
    handled: list[str] = []
    gate = asyncio.Event()

    async def slow(event: WebhookEvent) -> None:
        await gate.wait()
        handled.append(event.id)

    async with make_pool(ok, on_reauthorization_required=lambda c: fired.append(c.token)) as (
        pool,
        _transport,
    ):
        pool.bind_connection_id(pool.connection(OLD_TOKEN), "conn_abc")
        receiver = WebhookReceiver(
            SECRET, slow, pool=pool, clock=lambda: NOW, queue_size=1, workers=1
        )
        async with receiver:
            for i in range(2):  # one in the worker, one queued
                busy = reauth(f"evt_busy_{i}", "2025-12-31T00:00:00Z")
                assert await deliver(receiver, busy) == 200
                await asyncio.sleep(0)
            assert await deliver(receiver, reauth()) == 503
            assert fired == [OLD_TOKEN]
            new = reconnect(pool)
            gate.set()
            await receiver.join()
            # The redelivery reaches the handler, not the pool a second time.
            assert await deliver(receiver, reauth()) == 200
            await receiver.join()
            assert new.state is ConnectionState.ACTIVE
    assert fired == [OLD_TOKEN]
    assert handled.count("evt_reauth_1") == 1


async def test_the_pool_is_told_once_per_event_id_and_the_callback_fires_once(
    make_pool: Any,
) -> None:
    fired: list[str] = []
    async with make_pool(ok, on_reauthorization_required=lambda c: fired.append(c.token)) as (
        pool,
        _transport,
    ):
        conn = pool.bind_connection_id(pool.connection(OLD_TOKEN), "conn_abc")
        async with WebhookReceiver(SECRET, pool=pool, clock=lambda: NOW) as receiver:
            for _ in range(5):
                assert await deliver(receiver, reauth()) == 200
                conn.reset()  # even if the mark was cleared meanwhile
        assert fired == [OLD_TOKEN]
        assert receiver.stats.duplicates == 4


@pytest.mark.skipif(
    not hasattr(Connection, "replace_token"), reason="needs tokens replaced in place"
)
async def test_a_reauthorization_older_than_the_token_change_is_ignored(make_pool: Any) -> None:
    fired: list[str] = []
    async with make_pool(ok, on_reauthorization_required=lambda c: fired.append(c.token)) as (
        pool,
        _transport,
    ):
        conn = pool.bind_connection_id(pool.connection(OLD_TOKEN, name="acme"), "conn_abc")
        made = dt.datetime.now(dt.timezone.utc)
        conn.replace_token(NEW_TOKEN)
        stale = typed_event(
            WebhookEvent(
                id="evt_stale",
                type="connection.reauthorization_required",
                created_at=(made - dt.timedelta(seconds=5)).isoformat(),
                connection_id="conn_abc",
            )
        )
        assert await pool.apply_webhook(stale) is None
        assert conn.state is ConnectionState.ACTIVE
        fresh = attrs_evolve(stale, id="evt_fresh", created_at=_later())
        assert await pool.apply_webhook(fresh) is not None
        assert conn.state is ConnectionState.REAUTHORIZATION_REQUIRED
    assert fired == [NEW_TOKEN]


def _later() -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)).isoformat()


def attrs_evolve(event: WebhookEvent, **changes: Any) -> WebhookEvent:
    import attrs

    return attrs.evolve(event, **changes)
