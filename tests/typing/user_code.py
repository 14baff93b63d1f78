"""Typical user code, checked by mypy in tests/unit/test_typing.py (never run).

Each ``reveal_type`` line is matched against what mypy infers; the lines
marked as an error must be rejected.
"""

from __future__ import annotations

from typing import Any

from makini_async import (
    Connection,
    InvalidRecord,
    MakiniPool,
    Page,
    Pull,
    PullOptions,
    WebhookEvent,
    WebhookReceiver,
    WorkOrder,
)
from makini_async.sinks import ParquetSink, PostgresSink


async def typical(pool: MakiniPool) -> None:
    conn = pool.connection("token")
    async for order in conn.work_orders.list(modified_after="2024-01-01"):
        reveal_type(order)  # WorkOrder
        print(order.title)
    listing = conn.work_orders.list(page_size=50)
    async for page in listing.pages():
        reveal_type(page)  # Page[WorkOrder]
    reveal_type(await conn.work_orders.get("wo_1"))  # WorkOrder
    reveal_type(await conn.work_orders.create({"title": "Replace seal"}))  # WorkOrder
    reveal_type(await conn.work_orders.update("wo_1", {"status": "completed"}))  # WorkOrder
    reveal_type(await conn.assets.get("a", as_dicts=True))  # dict[str, Any]
    async for item in conn.purchase_orders.list(on_invalid="deliver"):
        reveal_type(item)  # PurchaseOrder | InvalidRecord
    async for row in conn.vendors.list(as_dicts=True):
        reveal_type(row)  # dict[str, Any]

    typed = pool.pull(["work-orders"], [("acme", "token")], as_dicts=False)
    reveal_type(typed)  # Pull[Record]
    async for pulled in typed:
        reveal_type(pulled.record)  # Record | InvalidRecord
    dicts = pool.pull("assets", ["token"], as_dicts=True)
    async for pulled_page in dicts.pages():
        reveal_type(pulled_page.records)  # list[dict[str, Any]]
    landed = pool.pull("assets", ["token"], sink=PostgresSink("postgresql://app@db/wh"))
    reveal_type(landed)  # Pull[Any]
    into_lake = pool.pull("assets", ["t"], sink=ParquetSink("lake"), as_dicts=False)
    reveal_type(into_lake)  # Pull[Record]
    nightly = PullOptions(modified_after="2024-01-01", patience=60.0)
    optioned = pool.pull("assets", ["t"], options=nightly, concurrency=4, as_dicts=True)
    reveal_type(optioned)  # Pull[dict[str, Any]]
    reveal_type(optioned.options)  # PullOptions


async def mistakes(pool: MakiniPool) -> None:
    conn = pool.connection("token")
    pool.pull("assets", ["token"], checkpiont="x.sqlite")  # error: checkpiont
    conn.work_orders.list(page_sise=10)  # error: page_sise
    order: WorkOrder = await conn.assets.get("a")  # error: Asset is not WorkOrder
    page: Page[Any] = await conn.work_orders.get("w")  # error: WorkOrder is not a Page
    pull: Pull[WorkOrder] = pool.pull("assets", ["t"], as_dicts=True)  # error: dicts
    pool.pull("assets", ["t"], sink="parquet:lake")  # error: a spec is not a Sink
    pool.pull("assets", ["t"], patince=5.0)  # error: patince
    pool.pull("assets", ["t"], concurrency="8")  # error: concurrency is an int
    PullOptions(pateince=5.0)  # error: pateince
    _ = (order, page, pull, InvalidRecord)


async def fleet(pool: MakiniPool) -> None:
    async def create(conn: Connection) -> WorkOrder:
        return await conn.work_orders.create({"title": "Inspect"})

    report = await pool.fan_out(["t1", ("plant", "t2")], create)
    reveal_type(report.values())  # dict[str, WorkOrder]
    reveal_type(report.results[0].value)  # WorkOrder | None
    await pool.fan_out(["t"], create, concurency=4)  # error: concurency
    async for change in pool.watch(["t"], interval=60):
        reveal_type(change.new)  # str

    async def handler(event: WebhookEvent) -> None:
        print(event.type)

    WebhookReceiver(["new-secret", "old-secret"], handler, pool=pool, queue_size=100)
    WebhookReceiver("secret", handler, queue_sise=100)  # error: queue_sise
