"""The mock's webhook sender against a small aiohttp.web receiver."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest_asyncio
from aiohttp import web

from makini_async.webhooks import SIGNATURE_HEADER, SeenEvents, parse_event, verify

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from makini_async.testing import MockMakini


class Receiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[tuple[str, str]] = []
        self.processed: list[str] = []
        self.events: list[Any] = []
        self.rejected = 0
        self.seen = SeenEvents()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(self.secret, body, request.headers.get(SIGNATURE_HEADER))
        except Exception:
            self.rejected += 1
            return web.Response(status=400)
        event = parse_event(body)
        self.received.append((event.id, event.type))
        self.events.append(event)
        if self.seen.check_and_add(event.id):
            self.processed.append(event.id)
        return web.Response(status=200)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver("whsec_test")
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    await runner.cleanup()


async def test_send_single_event(makini_server: MockMakini, receiver: Receiver) -> None:
    deliveries = await makini_server.send_webhook(
        receiver.url, "whsec_test", "sync.completed", {"entity": "work-orders"},
        connection_token="tok",
    )  # fmt: skip
    assert [d.status for d in deliveries] == [200]
    assert receiver.received == [(deliveries[0].event_id, "sync.completed")]
    assert deliveries[0].event_id.startswith("evt_")
    assert receiver.events[0].connection_id == makini_server.connection_id("tok")
    assert receiver.events[0].data == {"entity": "work-orders"}


async def test_duplicates_and_out_of_order(makini_server: MockMakini, receiver: Receiver) -> None:
    events = [("sync.completed", {"n": i}) for i in range(6)]
    deliveries = await makini_server.send_webhook(
        receiver.url, "whsec_test", events=events, duplicate=2, shuffle=True
    )
    assert len(deliveries) == 18
    assert all(d.status == 200 for d in deliveries)
    ids = [d.event_id for d in deliveries]
    first_seen = list(dict.fromkeys(ids))
    assert len(first_seen) == 6
    sent_order = list(dict.fromkeys(e for e, _ in receiver.received))
    assert receiver.processed == sent_order
    assert len(receiver.received) == 18
    assert len(receiver.processed) == 6
    # Shuffled: not event by event, and some duplicate arrives before a first delivery.
    assert [d.attempt for d in deliveries] != [0, 1, 2] * 6
    assert [e.data["n"] for e in receiver.events] != sorted(e.data["n"] for e in receiver.events)


async def test_shuffle_is_seeded(makini_server_factory: Any, receiver: Receiver) -> None:
    orders = []
    for _ in range(2):
        server = await makini_server_factory(seed=5)
        deliveries = await server.send_webhook(
            receiver.url, "whsec_test", events=[("system.error", {"i": i}) for i in range(5)],
            duplicate=1, shuffle=True,
        )  # fmt: skip
        orders.append([(d.event_id, d.attempt) for d in deliveries])
    assert orders[0] == orders[1]


async def test_wrong_secret_rejected(makini_server: MockMakini, receiver: Receiver) -> None:
    deliveries = await makini_server.send_webhook(receiver.url, "wrong", "system.error", {})
    assert deliveries[0].status == 400
    assert receiver.rejected == 1


async def test_reauthorization_event(makini_server: MockMakini, receiver: Receiver) -> None:
    makini_server.register_webhook(receiver.url, "whsec_test")
    deliveries = await makini_server.require_reauthorization("cust-1")
    assert [d.type for d in deliveries] == ["connection.reauthorization_required"]
    assert receiver.received[0][1] == "connection.reauthorization_required"
    assert makini_server._conn("cust-1").status == "reauthorization_required"


async def test_unreachable_receiver_reported(makini_server: MockMakini) -> None:
    deliveries = await makini_server.send_webhook(
        "http://127.0.0.1:9/hook", "s", "system.error", {}
    )
    assert deliveries[0].status is None
    assert deliveries[0].error
