"""The receiver bounds each body itself: size, read deadline, bodies in flight, log noise.

Served over real sockets on 127.0.0.1 (aiohttp, mounted in a host app that
allows 256 MiB uploads, or alone), and as a raw ASGI app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp import web

from makini_async import UsageError, WebhookReceiver
from makini_async.webhooks import SIGNATURE_HEADER, sign
from makini_async.webhooks._limits import DropLog

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SECRET = "whsec_SECRET_limits_0001"
MiB = 1024 * 1024


def delivery(event_id: str = "evt_1") -> tuple[bytes, str]:
    payload = orjson.dumps(
        {
            "id": event_id,
            "type": "sync.completed",
            "created_at": "2026-01-01T00:00:00Z",
            "connection_id": "conn_1",
            "data": {},
        }
    )
    return payload, sign(SECRET, payload, int(time.time()))


@contextlib.asynccontextmanager
async def served(receiver: WebhookReceiver, *, mounted: bool) -> AsyncIterator[tuple[int, str]]:
    """(port, path) of the receiver, mounted in a permissive host app or served alone."""
    if mounted:
        app = web.Application(client_max_size=256 * MiB)
        app.add_subapp("/hooks/", receiver.app())
        path = "/hooks/"
    else:
        app = receiver.app()
        path = "/"
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port, path
    finally:
        await runner.cleanup()


async def status_of(reader: asyncio.StreamReader, timeout: float = 5.0) -> int | None:
    """The status the server answered, or None if it closed without one."""
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except ConnectionError:
        return None
    return int(line.split()[1]) if line else None


async def open_post(
    port: int, path: str, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    writer.write(head.encode() + b"\r\n")
    await writer.drain()
    return reader, writer


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


@pytest.mark.parametrize("mounted", [True, False])
async def test_a_declared_large_body_is_refused_before_a_byte_is_read(mounted: bool) -> None:
    receiver = WebhookReceiver(SECRET)
    async with served(receiver, mounted=mounted) as (port, path):
        reader, writer = await open_post(port, path, {"Content-Length": str(200 * 1000 * 1000)})
        writer.write(b"x" * 65536)
        assert await status_of(reader) == 413
        await close(writer)
    assert receiver.stats.too_large == 1
    assert receiver.stats.bytes_read == 0


@pytest.mark.parametrize("mounted", [True, False])
async def test_a_chunked_body_is_cut_off_at_the_cap_not_buffered(mounted: bool) -> None:
    # No Content-Length: the host app would buffer up to its 256 MiB.
    receiver = WebhookReceiver(SECRET, max_body=64 * 1024)
    async with served(receiver, mounted=mounted) as (port, path):
        reader, writer = await open_post(port, path, {"Transfer-Encoding": "chunked"})
        chunk = b"%x\r\n" % 65536 + b"y" * 65536 + b"\r\n"

        async def flood() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(20 * 16):  # 20 MiB
                    writer.write(chunk)
                    await writer.drain()

        sender = asyncio.create_task(flood())
        status = await status_of(reader)
        await sender
        await close(writer)
    assert status in (413, None)  # the answer may be lost to the reset of a closed socket
    assert receiver.stats.too_large == 1
    # What was read stays within the cap and one network read, whatever was sent.
    assert receiver.stats.bytes_read <= 64 * 1024 + 512 * 1024


async def test_slow_bodies_get_408_within_the_deadline_and_the_receiver_stays_usable() -> None:
    receiver = WebhookReceiver(SECRET, read_timeout=0.3, max_in_flight=4)
    async with served(receiver, mounted=True) as (port, path):
        slow = [await open_post(port, path, {"Content-Length": "1000"}) for _ in range(12)]
        for _, writer in slow:
            writer.write(b'{"id":')
        started = time.monotonic()
        statuses = await asyncio.gather(*(status_of(reader) for reader, _ in slow))
        elapsed = time.monotonic() - started
        # 4 are read until the deadline; the 8 beyond the cap are refused at once.
        assert sorted(statuses, key=str) == [408] * 4 + [503] * 8
        assert elapsed < 2.0
        for reader, writer in slow:
            assert await reader.read() is not None  # the server closed each one
            await close(writer)
        payload, header = delivery()
        reader, writer = await open_post(
            port, path, {"Content-Length": str(len(payload)), SIGNATURE_HEADER: header}
        )
        writer.write(payload)
        assert await status_of(reader) == 200
        await close(writer)
    assert (receiver.stats.timed_out, receiver.stats.busy, receiver.stats.accepted) == (4, 8, 1)
    assert receiver.reading == 0


async def test_dropped_connections_are_one_summary_line_not_a_traceback_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = WebhookReceiver(SECRET, read_timeout=5.0, max_in_flight=1000)
    caplog.set_level(logging.DEBUG)
    async with served(receiver, mounted=True) as (port, path):
        for _ in range(60):
            _reader, writer = await open_post(port, path, {"Content-Length": "1000"})
            writer.write(b'{"id":')
            await writer.drain()
            await close(writer)
        for _ in range(100):
            if receiver.stats.dropped == 60:
                break
            await asyncio.sleep(0.02)
    assert receiver.stats.dropped == 60
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == []
    summaries = [r for r in caplog.records if "webhook receiver, deliveries" in r.getMessage()]
    # The first drop, and the rest summed up when the receiver closed.
    assert len(summaries) == 2
    assert "59 dropped before their body was read" in summaries[-1].getMessage()


def test_drop_log_writes_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = DropLog(interval=60.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING)
    for _ in range(1000):
        log.note("dropped")
        log.note(408)
        now[0] += 0.5  # 500 s in all
    log.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert 8 <= len(lines) <= 10
    for what in ("dropped", "too slow"):
        counts = (re.search(rf"(\d+) {what}", line) for line in lines)
        assert sum(int(m.group(1)) for m in counts if m) == 1000


async def test_bad_signatures_are_summed_up_not_logged_one_by_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="makini_async")
    async with WebhookReceiver(SECRET) as receiver:
        payload, _ = delivery()
        for i in range(200):
            forged = sign("whsec_guess", payload, int(time.time())) if i % 2 else None
            assert await receiver.receive(payload, forged) == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "makini_async"]
    assert len(lines) == 2
    assert "99 rejected with 400 (missing webhook signature header)" in lines[-1]
    assert "100 rejected with 400 (webhook signature does not match)" in lines[-1]
    assert SECRET not in caplog.text


# -- ASGI ---------------------------------------------------------------------------


class ASGICall:
    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.sent: list[dict[str, Any]] = []
        self.received = 0

    async def send(self, message: Any) -> None:
        self.sent.append(message)

    async def __call__(self, receive: Any, headers: list[tuple[bytes, bytes]]) -> int | None:
        scope = {"type": "http", "method": "POST", "headers": headers}
        self.sent.clear()
        await self.receiver.asgi(scope, receive, self.send)
        return int(self.sent[0]["status"]) if self.sent else None


async def test_asgi_refuses_a_declared_large_body_without_reading_it() -> None:
    call = ASGICall(WebhookReceiver(SECRET))

    async def receive() -> Any:
        call.received += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    assert await call(receive, [(b"content-length", b"200000000")]) == 413
    assert call.received == 0


async def test_asgi_cuts_an_endless_body_at_the_cap() -> None:
    receiver = WebhookReceiver(SECRET, max_body=100_000)
    call = ASGICall(receiver)

    async def receive() -> Any:
        call.received += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    assert await call(receive, []) == 413
    assert call.received == 2
    assert (b"connection", b"close") in call.sent[0]["headers"]
    assert receiver.stats.bytes_read == 2 * 65536


async def test_asgi_slow_body_gets_408_and_the_in_flight_cap_503() -> None:
    receiver = WebhookReceiver(SECRET, read_timeout=0.2, max_in_flight=2)
    calls = [ASGICall(receiver) for _ in range(3)]
    stall = asyncio.Event()

    async def slow() -> Any:
        await stall.wait()
        return {"type": "http.request", "body": b"", "more_body": False}

    started = time.monotonic()
    first = [asyncio.create_task(c(slow, [])) for c in calls[:2]]
    await asyncio.sleep(0.05)
    assert await calls[2](slow, []) == 503  # at once, nothing read
    assert await asyncio.gather(*first) == [408, 408]
    assert time.monotonic() - started < 1.0
    assert (receiver.stats.timed_out, receiver.stats.busy) == (2, 1)
    payload, header = delivery()
    messages = [{"type": "http.request", "body": payload, "more_body": False}]

    async def good() -> Any:
        return messages.pop(0)

    assert await calls[0](good, [(SIGNATURE_HEADER.lower().encode(), header.encode())]) == 200
    await receiver.close()


async def test_asgi_disconnect_is_counted_and_answered_with_nothing() -> None:
    receiver = WebhookReceiver(SECRET)
    call = ASGICall(receiver)

    async def gone() -> Any:
        return {"type": "http.disconnect"}

    assert await call(gone, []) is None
    assert receiver.stats.dropped == 1
    assert receiver.stats.rejected == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_body", 0),
        ("max_body", 1.5),
        ("max_in_flight", 0),
        ("max_in_flight", True),
        ("read_timeout", 0),
        ("read_timeout", float("inf")),
        ("read_timeout", float("nan")),
        ("read_timeout", "10"),
    ],
)
def test_limits_that_bound_nothing_are_refused(name: str, value: Any) -> None:
    with pytest.raises(UsageError, match=name):
        WebhookReceiver(SECRET, **{name: value})
