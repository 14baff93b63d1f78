"""How much server CPU one cached listing page costs."""

from __future__ import annotations

import asyncio
import time

from makini_async.entities import Entity

__all__ = ["measure_page_cost"]


def measure_page_cost(
    n_pages: int = 2000,
    *,
    entity: Entity = Entity.WORK_ORDERS,
    page_size: int = 200,
    end_to_end: bool = False,
) -> float:
    """CPU seconds per cached listing page of ``page_size`` records.

    By default this times the server's listing path directly (parsed query to
    response bytes, page cache warm) with :func:`time.process_time`. With
    ``end_to_end`` it times real HTTP requests to a server in the same process,
    so the figure also includes the aiohttp client's CPU: an upper bound.
    """
    from makini_async.testing._server import MockMakini  # noqa: PLC0415 - avoid a cycle
    from makini_async.testing._state import encode_cursor  # noqa: PLC0415

    pages = 10
    server = MockMakini(records_per_entity=page_size * pages)
    if end_to_end:
        return asyncio.run(_end_to_end(server, entity, page_size, pages, n_pages))
    conn = server._conn("measure-token")
    queries = [{"page_size": str(page_size)}] + [
        {"page_size": str(page_size), "cursor": encode_cursor(page_size * i - 1)}
        for i in range(1, pages)
    ]
    for query in queries:  # warm the cache
        server.list_page(conn, entity, query, "req_measure")
    start = time.process_time()
    for i in range(n_pages):
        answer = server.list_page(conn, entity, queries[i % pages], "req_measure")
        assert answer.status == 200  # noqa: S101
    return (time.process_time() - start) / n_pages


async def _end_to_end(
    server: object, entity: Entity, page_size: int, pages: int, n_pages: int
) -> float:
    import aiohttp  # noqa: PLC0415

    from makini_async.testing._server import MockMakini  # noqa: PLC0415

    assert isinstance(server, MockMakini)  # noqa: S101
    async with server, aiohttp.ClientSession() as session:
        url = f"{server.url}/api/v1/{entity.value}"
        headers = {"Authorization": "Bearer measure-token"}
        cursors: list[str | None] = [None]
        while len(cursors) < pages:
            params = {"page_size": str(page_size)}
            if cursors[-1]:
                params["cursor"] = str(cursors[-1])
            async with session.get(url, params=params, headers=headers) as resp:
                cursors.append((await resp.json())["next_cursor"])
        start = time.process_time()
        for i in range(n_pages):
            params = {"page_size": str(page_size)}
            cursor = cursors[i % pages]
            if cursor:
                params["cursor"] = cursor
            async with session.get(url, params=params, headers=headers) as resp:
                await resp.read()
        return (time.process_time() - start) / n_pages
