"""WebhookReceiver without sockets: signature vectors, de-duplication, the queue, stores, ASGI."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from makini_async import (
    ConnectionStatusChangedEvent,
    MemoryEventStore,
    ReauthorizationRequiredEvent,
    SQLiteEventStore,
    SyncCompletedEvent,
    SyncFailedEvent,
    SystemErrorEvent,
    UsageError,
    WebhookEvent,
    WebhookReceiver,
)
from makini_async.webhooks import SIGNATURE_HEADER, EventStore, sign, typed_event

NOW = 1_700_000_000
SECRET = "whsec_SECRET_current_0001"
OLD_SECRET = "whsec_SECRET_previous_0002"


def body(event_id: str = "evt_1", kind: str = "sync.completed", **data: Any) -> bytes:
    return orjson.dumps(
        {
            "id": event_id,
            "type": kind,
            "created_at": "2026-01-01T00:00:00.000001Z",
            "connection_id": "conn_1",
            "data": data,
        }
    )


class Recorder:
    def __init__(self) -> None:
        self.events: list[WebhookEvent] = []
        self.release = asyncio.Event()
        self.block = False

    async def __call__(self, event: WebhookEvent) -> None:
        if self.block:
            await self.release.wait()
        self.events.append(event)


def receiver(handler: Any = None, **kwargs: Any) -> WebhookReceiver:
    kwargs.setdefault("clock", lambda: NOW)
    return WebhookReceiver([SECRET, OLD_SECRET], handler, **kwargs)


VALID = body()


@pytest.mark.parametrize(
    ("name", "payload", "header", "status"),
    [
        ("valid", VALID, sign(SECRET, VALID, NOW), 200),
        ("tampered", VALID.replace(b"evt_1", b"evt_2"), sign(SECRET, VALID, NOW), 400),
        ("wrong secret", VALID, sign("whsec_someone_else", VALID, NOW), 400),
        ("second of two secrets", VALID, sign(OLD_SECRET, VALID, NOW), 200),
        (
            "two v1 entries, one right",
            VALID,
            sign("whsec_other", VALID, NOW) + ",v1=" + sign(SECRET, VALID, NOW).split("v1=")[1],
            200,
        ),
        ("expired", VALID, sign(SECRET, VALID, NOW - 301), 400),
        ("future", VALID, sign(SECRET, VALID, NOW + 301), 400),
        ("malformed header", VALID, "t=abc,v1=deadbeef", 400),
        ("no v1", VALID, f"t={NOW}", 400),
        ("missing header", VALID, None, 400),
        ("empty body", b"", sign(SECRET, b"", NOW), 400),
        ("not an event", b"[1,2]", sign(SECRET, b"[1,2]", NOW), 400),
    ],
)
async def test_signature_vectors(
    name: str, payload: bytes, header: str | None, status: int
) -> None:
    handler = Recorder()
    async with receiver(handler) as rec:
        assert await rec.receive(payload, header) == status, name
        await rec.join()
    assert len(handler.events) == (1 if status == 200 else 0)
    assert rec.stats.rejected == (1 if status == 400 else 0)


async def test_duplicates_reach_the_handler_once() -> None:
    handler = Recorder()
    async with receiver(handler) as rec:
        for event_id in ["evt_a", "evt_b", "evt_a", "evt_c", "evt_b", "evt_a"]:
            payload = body(event_id)
            assert await rec.receive(payload, sign(SECRET, payload, NOW)) == 200
        await rec.join()
    assert sorted(e.id for e in handler.events) == ["evt_a", "evt_b", "evt_c"]
    assert rec.stats.duplicates == 3


async def test_full_queue_answers_503_and_the_redelivery_is_processed() -> None:
    handler = Recorder()
    handler.block = True
    async with receiver(handler, queue_size=1, workers=1) as rec:
        payloads = [body(f"evt_{i}") for i in range(3)]
        statuses = []
        for payload in payloads:
            statuses.append(await rec.receive(payload, sign(SECRET, payload, NOW)))
            await asyncio.sleep(0)  # the worker takes the first event off the queue
        assert statuses == [200, 200, 503]
        handler.release.set()
        await rec.join()
        # Makini delivers the refused event again later: its claim was released.
        assert await rec.receive(payloads[2], sign(SECRET, payloads[2], NOW)) == 200
        await rec.join()
    assert [e.id for e in handler.events] == ["evt_0", "evt_1", "evt_2"]
    assert rec.stats.refused == 1


async def test_a_failing_or_hanging_handler_never_changes_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing(event: WebhookEvent) -> None:
        if event.id == "evt_bad":
            raise RuntimeError("boom")
        await asyncio.Event().wait()  # hangs until the timeout cancels it

    async with receiver(failing, handler_timeout=0.01) as rec:
        for event_id in ("evt_bad", "evt_slow"):
            payload = body(event_id)
            assert await rec.receive(payload, sign(SECRET, payload, NOW)) == 200
        with caplog.at_level(logging.ERROR, "makini_async"):
            await rec.join()
    assert rec.stats.failed == 2
    assert rec.stats.handled == 0
    assert SECRET not in caplog.text


async def test_close_drains_with_a_bound_and_refuses_meanwhile() -> None:
    handler = Recorder()
    handler.block = True
    rec = receiver(handler, workers=1)
    await rec.start()
    for event_id in ("evt_1", "evt_2"):
        payload = body(event_id)
        assert await rec.receive(payload, sign(SECRET, payload, NOW)) == 200
    await rec.close(timeout=0.01)
    assert rec.stats.unhandled == 2  # one cut short in the handler, one still queued
    payload = body("evt_3")
    assert await rec.receive(payload, sign(SECRET, payload, NOW)) == 503
    await rec.close()


async def test_sqlite_store_survives_a_restart_and_replays_unhandled(tmp_path: Any) -> None:
    path = tmp_path / "events.sqlite"
    handler = Recorder()
    handler.block = True
    store = SQLiteEventStore(path)
    rec = receiver(handler, store=store, workers=1)
    for event_id in ("evt_1", "evt_2"):
        payload = body(event_id)
        assert await rec.receive(payload, sign(SECRET, payload, NOW)) == 200
    await rec.close(timeout=0.01)  # evt_1 held by the worker, evt_2 queued: neither done
    store.close()

    class Pool:
        def __init__(self) -> None:
            self.applied: list[str] = []

        async def apply_webhook(self, event: WebhookEvent) -> None:
            self.applied.append(event.id)

    handler = Recorder()
    store = SQLiteEventStore(path)
    pool = Pool()
    async with receiver(handler, store=store, pool=pool) as rec:
        payload = body("evt_1")
        assert await rec.receive(payload, sign(SECRET, payload, NOW)) == 200  # a duplicate
        await rec.join()
    assert sorted(e.id for e in handler.events) == ["evt_1", "evt_2"]
    assert rec.stats.duplicates == 1
    assert sorted(set(pool.applied)) == ["evt_1", "evt_2"]  # the new process's pool learns too
    assert await store.unfinished() == []
    store.close()


async def test_memory_store_is_bounded() -> None:
    store = MemoryEventStore(maxsize=2)
    assert isinstance(store, EventStore)
    assert [await store.claim(i, b"") for i in ("a", "b", "c", "a")] == [True, True, True, True]
    assert len(store) == 2


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        WebhookReceiver("")
    with pytest.raises(UsageError):
        WebhookReceiver(SECRET, queue_size=0)
    with pytest.raises(UsageError):
        WebhookReceiver(SECRET, handler_timeout=-1)
    with pytest.raises(UsageError):
        WebhookReceiver(SECRET, store=object())  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        SQLiteEventStore("x.sqlite", retention=0)
    assert SECRET not in repr(WebhookReceiver(SECRET))


def test_typed_events() -> None:
    from makini_async.webhooks import parse_event

    cases = {
        "sync.completed": (SyncCompletedEvent, {"entity": "assets", "records": 3}),
        "sync.failed": (SyncFailedEvent, {"entity": "assets", "error": "timeout"}),
        "connection.reauthorization_required": (ReauthorizationRequiredEvent, {"reason": "pw"}),
        "connection.status_changed": (ConnectionStatusChangedEvent, {"status": "offline"}),
        "system.error": (SystemErrorEvent, {"message": "down", "code": "X"}),
    }
    for kind, (cls, data) in cases.items():
        event = typed_event(parse_event(body("evt", kind, **data)))
        assert type(event) is cls
        for key, value in data.items():
            assert getattr(event, key) == value
    unknown = typed_event(parse_event(body("evt", "invoice.paid")))
    assert type(unknown) is WebhookEvent
    assert not unknown.known_type
    odd = typed_event(parse_event(body("evt", "sync.completed", records="many")))
    assert isinstance(odd, SyncCompletedEvent)
    assert odd.records is None
    assert odd.data["records"] == "many"


async def test_asgi_app() -> None:
    handler = Recorder()
    rec = receiver(handler)
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def call(method: str, payload: bytes, header: str | None) -> int:
        messages = [{"type": "http.request", "body": payload, "more_body": False}]

        async def receive() -> Any:
            return messages.pop(0)

        headers = [] if header is None else [(SIGNATURE_HEADER.lower().encode(), header.encode())]
        scope = {"type": "http", "method": method, "headers": headers}
        sent.clear()
        await rec.asgi(scope, receive, send)
        return int(sent[0]["status"])

    lifespan = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    gate = asyncio.Event()

    async def lifespan_receive() -> Any:
        if len(lifespan) == 1:
            await gate.wait()
        return lifespan.pop(0)

    life_sent: list[Any] = []

    async def life_send(message: Any) -> None:
        life_sent.append(message)

    life = asyncio.create_task(rec.asgi({"type": "lifespan"}, lifespan_receive, life_send))
    await asyncio.sleep(0)
    assert await call("POST", VALID, sign(SECRET, VALID, NOW)) == 200
    assert await call("POST", VALID, sign("whsec_wrong", VALID, NOW)) == 400
    assert await call("GET", b"", None) == 405
    await rec.join()
    gate.set()
    await life
    assert [m["type"] for m in life_sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert [e.id for e in handler.events] == ["evt_1"]


async def test_a_failing_store_answers_503_so_makini_redelivers() -> None:
    from makini_async import CheckpointError

    class Broken(MemoryEventStore):
        async def claim(self, event_id: str, body: bytes) -> bool:
            raise CheckpointError("disk full")

    handler = Recorder()
    async with receiver(handler, store=Broken()) as rec:
        assert await rec.receive(VALID, sign(SECRET, VALID, NOW)) == 503
    assert handler.events == []
    assert rec.stats.refused == 1


def test_a_tolerance_that_turns_off_the_replay_window_is_refused() -> None:
    for tolerance in (-1, float("inf"), float("nan")):
        with pytest.raises(UsageError):
            WebhookReceiver(SECRET, tolerance=tolerance)
