"""With no read timeout (the default), a stalled server is still bounded by the total one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from makini_async import MakiniPool, RequestTimeout, RetryPolicy, Timeouts
from makini_async._client.listing import sizing_for
from makini_async.entities import Entity


async def _stalling_server() -> tuple[asyncio.Server, str, list[asyncio.StreamWriter]]:
    """Answers 200 with half its body, then sends nothing more."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"X-Request-Id: req_stall_1\r\nContent-Length: 1000\r\n\r\n"
            b'{"data": {"id": "wo_1", "title": "'
        )
        await writer.drain()
        held.append(writer)  # kept open, silent

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", held


def test_the_read_timeout_is_off_by_default() -> None:
    assert Timeouts().read is None
    assert Timeouts(read=5).read == 5


async def test_a_body_that_stalls_ends_at_the_total_timeout_with_its_request_id() -> None:
    server, url, held = await _stalling_server()
    try:
        async with MakiniPool(
            base_url=url, timeouts=Timeouts(total=0.3), retry=RetryPolicy(attempts=1)
        ) as pool:
            started = time.monotonic()
            try:
                await pool.connection("tok-stall-0001").work_orders.get("wo_1")
            except RequestTimeout as exc:
                caught: Any = exc
            else:
                raise AssertionError("a stalled body must time out")
            took = time.monotonic() - started
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert 0.25 <= took < 2.0
    assert caught.request_id == "req_stall_1"
    assert "tok-stall-0001" not in str(caught)


async def test_page_sizes_adapt_at_the_same_thresholds_without_a_read_timeout() -> None:
    async with MakiniPool(base_url="http://127.0.0.1:9") as pool:
        conn = pool.connection("tok-size-0001")
        sizing = sizing_for(conn, Entity.WORK_ORDERS, 200)  # type: ignore[arg-type]
        assert (sizing.slow, sizing.fast) == (15.0, 3.0)  # half and a tenth of total / 2
    async with MakiniPool(base_url="http://127.0.0.1:9", timeouts=Timeouts(read=8)) as pool:
        conn = pool.connection("tok-size-0001")
        sizing = sizing_for(conn, Entity.WORK_ORDERS, 200)  # type: ignore[arg-type]
        assert (sizing.slow, sizing.fast) == (4.0, 0.8)  # from the read timeout when set
