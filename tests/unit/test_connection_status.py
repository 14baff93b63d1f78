"""The pool's connection directory: ids, webhook status events, ordering, marks."""

from __future__ import annotations

from typing import Any

import pytest

from makini_async import (
    AuthenticationError,
    ConnectionState,
    ConnectionStateEvent,
    Hook,
    ReauthorizationRequired,
    UsageError,
)
from makini_async.webhooks import WebhookEvent, typed_event
from tests.fakes import Call, respond

TOKEN = "tok_live_SECRET_status_0123456789"


def status_answer(call: Call) -> Any:
    return respond(200, {"data": {"id": "conn_abc", "system": "SAP", "status": "active"}})


def event(kind: str, created_at: str, **data: Any) -> WebhookEvent:
    return typed_event(
        WebhookEvent(
            id=f"evt_{created_at}",
            type=kind,
            created_at=created_at,
            connection_id="conn_abc",
            data=data,
        )
    )


class States(Hook):
    def __init__(self) -> None:
        self.events: list[ConnectionStateEvent] = []

    def on_connection_state(self, event: ConnectionStateEvent) -> None:
        self.events.append(event)


async def test_ids_learnt_from_info_and_bound_by_hand(make_pool: Any) -> None:
    async with make_pool(status_answer) as (pool, _transport):
        conn = pool.connection(TOKEN, name="acme")
        assert pool.find_connection("conn_abc") is None
        await conn.info()
        assert conn.connection_id == "conn_abc"
        assert pool.find_connection("conn_abc") is conn
        other = pool.bind_connection_id("tok_live_SECRET_other_0123456", "conn_xyz")
        assert pool.find_connection("conn_xyz") is other
        with pytest.raises(UsageError):
            pool.bind_connection_id(conn, "")


async def test_status_events_mark_the_handle_once_and_in_order(make_pool: Any) -> None:
    fired: list[str] = []
    states = States()
    async with make_pool(
        status_answer, hooks=[states], on_reauthorization_required=lambda c: fired.append(c.name)
    ) as (pool, transport):
        conn = pool.bind_connection_id(pool.connection(TOKEN, name="acme"), "conn_abc")
        change = await pool.apply_webhook(
            event("connection.status_changed", "2026-01-01T00:00:02Z", status="offline")
        )
        assert change is not None
        assert (change.old, change.new, change.source) == ("active", "offline", "webhook")
        # Delivered late: older than the status already applied, so ignored.
        late = event("connection.reauthorization_required", "2026-01-01T00:00:01Z")
        assert await pool.apply_webhook(late) is None
        assert conn.state is ConnectionState.ACTIVE
        assert pool.connection_status(conn) == "offline"

        newer = event("connection.reauthorization_required", "2026-01-01T00:00:03Z")
        change = await pool.apply_webhook(newer)
        assert change is not None
        assert change.kind == "reauthorization_required"
        assert await pool.apply_webhook(newer) is None  # a duplicate changes nothing
        assert fired == ["acme"]
        with pytest.raises(ReauthorizationRequired):
            await conn.info()  # fails fast: no request
        assert transport.calls == []

        # A webhook never clears a mark: the customer's new token works, not this one.
        active = event("connection.status_changed", "2026-01-01T00:00:04Z", status="active")
        change = await pool.apply_webhook(active)
        assert change is not None
        assert change.kind == "recovered"
        assert conn.state is ConnectionState.REAUTHORIZATION_REQUIRED

        gone = event("connection.status_changed", "2026-01-01T00:00:05Z", status="disconnected")
        await pool.apply_webhook(gone)
        with pytest.raises(AuthenticationError):
            await conn.sync_status()
    assert [e.new for e in states.events] == [
        ConnectionState.REAUTHORIZATION_REQUIRED,
        ConnectionState.DISCONNECTED,
    ]


async def test_events_for_unknown_ids_or_statuses_are_ignored(make_pool: Any) -> None:
    async with make_pool(status_answer) as (pool, _transport):
        pool.connection(TOKEN)
        assert await pool.apply_webhook(event("sync.completed", "2026-01-01T00:00:01Z")) is None
        odd = event("connection.status_changed", "2026-01-01T00:00:01Z", status="exploded")
        pool.bind_connection_id(TOKEN, "conn_abc")
        assert await pool.apply_webhook(odd) is None
        unknown = WebhookEvent(
            id="evt_x",
            type="connection.reauthorization_required",
            created_at="2026-01-01T00:00:01Z",
            connection_id="conn_nobody",
        )
        assert await pool.apply_webhook(unknown) is None


async def test_watch_and_fan_out_arguments(make_pool: Any) -> None:
    async with make_pool(status_answer) as (pool, _transport):
        for bad in ({"interval": -1}, {"jitter": 2}, {"concurrency": 0}):
            with pytest.raises(UsageError):
                pool.watch([TOKEN], **bad)
        with pytest.raises(UsageError):
            pool.watch([])

        async def fn(conn: Any) -> None:
            return None

        with pytest.raises(UsageError):
            await pool.fan_out([TOKEN], fn, concurrency=0)
        with pytest.raises(UsageError):
            await pool.fan_out(TOKEN, fn)
        report = await pool.fan_out([TOKEN], fn)
        assert report.ok
        assert TOKEN not in repr(report)
        assert TOKEN not in repr(pool.watch([TOKEN]))


async def test_a_status_event_reaches_a_handle_made_again_after_eviction(make_pool: Any) -> None:
    async with make_pool(status_answer) as (pool, _transport):
        old = pool.bind_connection_id(pool.connection(TOKEN, name="acme"), "conn_abc")
        assert pool.evict_idle(idle_for=-1) == 1
        await pool.apply_webhook(
            event("connection.reauthorization_required", "2026-01-01T00:00:01Z")
        )
        live = pool.connection(TOKEN)
        assert live is not old
        assert live.name == "acme"
        assert live.state is ConnectionState.REAUTHORIZATION_REQUIRED
        assert pool.find_connection("conn_abc") is live
