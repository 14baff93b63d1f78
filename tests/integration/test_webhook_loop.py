"""The whole loop over sockets: the mock's signed webhooks, the receiver, the pool's state."""

from __future__ import annotations

import asyncio
import collections
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from aiohttp import web

from makini_async import (
    ConnectionState,
    MakiniPool,
    Outcome,
    PageSizes,
    ReauthorizationRequiredEvent,
    WebhookEvent,
    WebhookReceiver,
    set_testing,
)
from makini_async.testing import FaultPlan, MockMakini

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from makini_async import Connection

WEBHOOK_SECRET = "whsec_SECRET_integration_0001"


@asynccontextmanager
async def serving(receiver: WebhookReceiver) -> AsyncIterator[str]:
    """The receiver's sub-application on a free port; its URL."""
    runner = web.AppRunner(receiver.app("/hook"), access_log=None)
    await runner.setup()  # on_startup starts the receiver's workers
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()  # on_cleanup drains and closes the receiver


async def test_duplicated_shuffled_deliveries_answered_at_once_handled_once() -> None:
    # The handler "takes 5 seconds" per event: its sleep waits for an event
    # the test sets, so every answer must arrive while all handlers are blocked.
    release = asyncio.Event()
    slept: list[float] = []
    handled: collections.Counter[str] = collections.Counter()

    async def five_second_sleep(seconds: float) -> None:
        slept.append(seconds)
        await release.wait()

    async def handler(event: WebhookEvent) -> None:
        await five_second_sleep(5.0)
        handled[event.id] += 1

    receiver = WebhookReceiver(WEBHOOK_SECRET, handler, workers=2)
    async with MockMakini() as server, serving(receiver) as url:
        server.register_webhook(url, WEBHOOK_SECRET, duplicate=2, shuffle=True)
        events: list[tuple[str, dict[str, Any]]] = [
            ("sync.completed", {"entity": "work-orders", "records": i}) for i in range(8)
        ]
        events += [("system.error", {"message": "maintenance"}), ("invoice.paid", {})]
        deliveries = await server.notify("acme", events)

        assert len(deliveries) == 30
        assert all(d.status == 200 for d in deliveries)
        assert max(d.elapsed for d in deliveries) < 1.0
        assert not handled  # every answer came while the handlers were blocked
        assert len(slept) == 2  # one blocked handler per worker
        created_order = list(dict.fromkeys(d.event_id for d in sorted(deliveries, key=_made)))
        delivered_order = list(dict.fromkeys(d.event_id for d in deliveries))
        assert delivered_order != created_order  # out of order
        release.set()
        await receiver.join()
    assert handled == collections.Counter({d.event_id: 1 for d in deliveries})
    assert receiver.stats.duplicates == 20


def _made(delivery: Any) -> tuple[str, int]:
    return (delivery.event_id, delivery.attempt)


async def test_reauthorization_webhook_stops_one_connection_during_a_pull() -> None:
    fired: list[str] = []
    specs = [(f"plant-{i:03d}", f"token-pull-{i:03d}") for i in range(100)]
    victim_name, victim = specs[42]
    received: list[WebhookEvent] = []

    async def handler(event: WebhookEvent) -> None:
        received.append(event)

    async with (
        MockMakini(records_per_entity=200) as server,
        MakiniPool(
            base_url=server.url,
            as_dicts=True,
            page_sizes=PageSizes({"work-orders": 10}),
            on_reauthorization_required=lambda conn: fired.append(conn.name),
        ) as pool,
    ):
        # The pool learns every connection id from the status endpoint.
        learnt = await pool.fan_out(specs, lambda conn: conn.info())
        assert learnt.ok
        receiver = WebhookReceiver(WEBHOOK_SECRET, handler, pool=pool)
        async with serving(receiver) as url:
            sent_at: int | None = None
            async with pool.pull("work-orders", specs, concurrency=100) as pull:
                async for page in pull.pages():
                    if page.connection == victim_name and sent_at is None:
                        # Makini still answers this token; only the webhook says stop.
                        deliveries = await server.send_webhook(
                            url,
                            WEBHOOK_SECRET,
                            "connection.reauthorization_required",
                            {"reason": "credentials_changed"},
                            connection_token=victim,
                        )
                        assert [d.status for d in deliveries] == [200]
                        assert (
                            pool.connection(victim).state
                            is ConnectionState.REAUTHORIZATION_REQUIRED
                        )
                        sent_at = server.stats(victim).requests
            await receiver.join()
        assert sent_at is not None
        assert server.stats(victim).requests - sent_at <= 1
        chains = {c.connection: c for c in pull.report.chains}
        assert chains[victim_name].outcome is Outcome.REAUTHORIZATION_REQUIRED
        others = [c for name, c in chains.items() if name != victim_name]
        assert len(others) == 99
        assert all(c.outcome is Outcome.COMPLETED and c.records == 200 for c in others)
        assert fired == [victim_name]
        assert [type(e) for e in received] == [ReauthorizationRequiredEvent]
        assert pool.connection_status(pool.connection(victim)) == "reauthorization_required"


async def test_watch_reports_exactly_the_changes_within_its_limit() -> None:
    tokens = [f"token-watch-{i:04d}" for i in range(1000)]
    changed = {
        **{tokens[i]: "reauthorization_required" for i in (3, 140, 555, 998)},
        **{tokens[i]: "offline" for i in (7, 250, 777)},
        **{tokens[i]: "disconnected" for i in (12, 404, 901)},
    }
    fired: list[str] = []
    async with (
        # A little latency per answer, so that status requests really overlap.
        MockMakini(faults=FaultPlan(latency=0.002)) as server,
        MakiniPool(
            base_url=server.url, on_reauthorization_required=lambda c: fired.append(c.name)
        ) as pool,
    ):
        watch = pool.watch(tokens, interval=0, concurrency=20)
        assert await watch.check() == []  # the baseline: all active, as the pool assumed
        server.reset_stats()
        for token, status in changed.items():
            server.set_status(token, status)
        changes = await watch.check()

        assert sorted((c.handle.token, c.new) for c in changes) == sorted(changed.items())
        assert {c.kind for c in changes} == {"reauthorization_required", "offline", "disconnected"}
        assert watch.max_in_flight == 20
        assert 1 < server.max_concurrent_total <= 20
        assert all(server.stats(t).max_concurrent <= 1 for t in tokens)
        for token, status in changed.items():
            state = pool.connection(token).state
            if status == "reauthorization_required":
                assert state is ConnectionState.REAUTHORIZATION_REQUIRED
            elif status == "disconnected":
                assert state is ConnectionState.DISCONNECTED
            else:
                assert state is ConnectionState.ACTIVE  # offline: calls still go out
        assert len(fired) == 4
        # Marked handles are asked through a twin: no change, no second callback.
        assert await watch.check() == []
        assert len(fired) == 4

        # The customers reconnect: the status endpoint answers this very token again.
        recovered = [t for t, s in changed.items() if s != "disconnected"]
        for token in recovered:
            server.set_status(token, "active")
        changes = await watch.check()
        assert sorted(c.handle.token for c in changes) == sorted(recovered)
        assert {c.kind for c in changes} == {"recovered"}
        assert all(pool.connection(t).state is ConnectionState.ACTIVE for t in recovered)
        assert await watch.check() == []
        assert len(fired) == 4


async def test_watch_iterates_with_jittered_pauses_on_the_injected_sleep() -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            server.set_status("token-iter-1", "offline")
        await asyncio.sleep(0)

    async with MockMakini() as server, MakiniPool(base_url=server.url, sleep=sleep) as pool:
        watch = pool.watch(["token-iter-0", "token-iter-1"], interval=30, jitter=0.2)
        async for change in watch:
            assert change.kind == "offline"
            break
    assert watch.rounds == 3
    assert len(pauses) == 2
    assert all(24.0 <= p <= 30.0 for p in pauses)


async def test_fan_out_create_with_applied_503s_leaves_one_record_each() -> None:
    set_testing(True)  # retries without waiting
    tokens = [f"token-fan-{i:03d}" for i in range(200)]
    async with (
        MockMakini(
            records_per_entity=5, faults=FaultPlan(seed=3, write_applied_503=0.05)
        ) as server,
        MakiniPool(base_url=server.url) as pool,
    ):

        async def create(conn: Connection) -> str:
            record = await conn.work_orders.create({"title": f"fan-out to {conn.name}"})
            return record.id

        report = await pool.fan_out(tokens, create, concurrency=50)
        assert report.ok, report.summary()
        assert sum(server.stats(t).statuses[503] for t in tokens) > 0
        for token in tokens:
            records = server.records(token, "work-orders")
            assert len(records) == 6
            mine = [
                r for r in records if r.get("title") == f"fan-out to {pool.connection(token).name}"
            ]
            assert len(mine) == 1
        assert len(report.values()) == 200


async def test_fan_out_isolates_failures_and_reports_them() -> None:
    set_testing(True, attempts=1)
    tokens = [f"token-iso-{i:02d}" for i in range(20)]
    async with MockMakini() as server, MakiniPool(base_url=server.url) as pool:
        server.configure_connection(tokens[3], status="reauthorization_required")
        server.configure_connection(tokens[4], status="disconnected")

        async def fn(conn: Connection) -> str:
            if conn is pool.connection(tokens[5]):
                raise RuntimeError("a bug in the caller's function")
            info = await conn.sync_status()
            return str(info.request_id)

        report = await pool.fan_out(tokens, fn, concurrency=4)
    outcomes = {r.handle.token: r.outcome for r in report.results}
    assert outcomes[tokens[3]] is Outcome.REAUTHORIZATION_REQUIRED
    assert outcomes[tokens[4]] is Outcome.FAILED
    assert outcomes[tokens[5]] is Outcome.FAILED
    assert sum(o is Outcome.COMPLETED for o in outcomes.values()) == 17
    assert len(report.failed_connections) == 3
    assert "RuntimeError" in report.summary()


async def test_status_change_webhooks_from_the_mock_update_the_pool() -> None:
    async with MockMakini() as server, MakiniPool(base_url=server.url) as pool:
        conn = pool.connection("token-status-1", name="north")
        await conn.info()  # learns the connection id
        receiver = WebhookReceiver(WEBHOOK_SECRET, pool=pool)
        async with serving(receiver) as url:
            server.register_webhook(url, WEBHOOK_SECRET, duplicate=1, shuffle=True)
            await server.change_status("token-status-1", "offline")
            await receiver.join()
            assert pool.connection_status(conn) == "offline"
            assert conn.state is ConnectionState.ACTIVE
            await server.change_status("token-status-1", "disconnected")
            await receiver.join()
            assert conn.state is ConnectionState.DISCONNECTED
        assert receiver.stats.duplicates == 2


async def test_signature_vectors_over_http() -> None:
    import time

    import aiohttp

    from makini_async.webhooks import SIGNATURE_HEADER, sign

    handled: list[str] = []

    async def handler(event: WebhookEvent) -> None:
        handled.append(event.id)

    now = int(time.time())
    payload = (
        b'{"id":"evt_http","type":"sync.completed","created_at":"2026-01-01T00:00:00Z",'
        b'"connection_id":"conn_1","data":{}}'
    )
    vectors = [
        (payload.replace(b"evt_http", b"evt_evil"), sign(WEBHOOK_SECRET, payload, now), 400),
        (payload, sign("whsec_not_ours", payload, now), 400),
        (payload, sign(WEBHOOK_SECRET, payload, now - 3600), 400),
        (payload, sign(WEBHOOK_SECRET, payload, now + 3600), 400),
        (payload, "v1=,t=", 400),
        (b"", sign(WEBHOOK_SECRET, b"", now), 400),
        (payload, sign("whsec_old_one", payload, now), 200),  # the second of two secrets
        (payload, sign(WEBHOOK_SECRET, payload, now), 200),  # a duplicate now
    ]
    receiver = WebhookReceiver([WEBHOOK_SECRET, "whsec_old_one"], handler)
    async with serving(receiver) as url, aiohttp.ClientSession() as session:
        for body, header, expected in vectors:
            async with session.post(url, data=body, headers={SIGNATURE_HEADER: header}) as resp:
                assert resp.status == expected, header
        async with session.post(url, data=payload) as resp:  # no signature at all
            assert resp.status == 400
        await receiver.join()
    assert handled == ["evt_http"]
    assert receiver.stats.rejected == 7
    assert receiver.stats.duplicates == 1
