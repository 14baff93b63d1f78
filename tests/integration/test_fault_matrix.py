"""The fault matrix: every fault the mock can inject, crossed with every operation.

Each cell runs one operation against the embedded mock with one fault on the
connection's first requests (or a pool-wide outage, or the connection's
status changed mid-way) and checks one of two outcomes: recovered and
complete, or a typed error carrying a request ID, with the record written
at most once. Every cell is bounded in time. ``docs/reliability.md`` shows
the matrix as a table.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from makini_async import (
    AuthenticationError,
    MakiniError,
    MakiniPool,
    OutagePolicy,
    Outcome,
    PageSizes,
    ReauthorizationRequired,
    RetryPolicy,
    Timeouts,
    set_testing,
)
from makini_async.errors import APIError, TransportError
from makini_async.testing import FaultPlan, MockMakini

RECORDS = 70
PAGE = 20  # three pages of work orders
CELL_TIMEOUT = 30.0
_tokens = itertools.count()

#: Faults on a connection's first two requests: a retry recovers from each.
TRANSIENT = {
    "error_500": {"error_500": 1.0},
    "error_502": {"error_502": 1.0},
    "error_503": {"error_503": 1.0},
    "error_504": {"error_504": 1.0},
    "html_error": {"html_error": 1.0},
    "429_seconds": {"rate_limit_429": 1.0},
    "429_no_retry_after": {"rate_limit_429": 1.0, "retry_after_style": "none"},
    "429_http_date": {"rate_limit_429": 1.0, "retry_after_style": "date"},
    "stall": {"stall": 1.0, "stall_seconds": 5.0},
    "drop": {"drop": 1.0},
    "truncate": {"truncate": 1.0},
    "malformed": {"malformed": 1.0},
    "empty_body": {"empty_body": 1.0},
}
#: Faults that are no failure at all to a client reading JSON.
HARMLESS = {
    "latency": {"latency": 0.05},
    "wrong_content_type": {"wrong_content_type": 1.0},
}
# Lost in transit: the server applied the request, the answer never arrived whole.
APPLIED = {"drop", "truncate", "malformed", "empty_body"}
OTHER = ["write_applied_503", "outage", "reauthorization", "disconnect"]
FAULTS = [*TRANSIENT, *HARMLESS, *OTHER]
OPERATIONS = ["get", "list", "pages", "pull", "create_with_key", "create_without_key"]


@pytest.fixture(autouse=True)
def _testing_mode() -> Any:
    set_testing(True)  # every backoff and 429 pause is zero; timeouts and outages are real
    yield
    set_testing(False)


def plan_for(fault: str) -> FaultPlan | None:
    options = TRANSIENT.get(fault) or HARMLESS.get(fault)
    if fault == "write_applied_503":
        options = {"write_applied_503": 1.0}
    if options is None:
        return None
    return FaultPlan(seed=5, first=2, **options)  # type: ignore[arg-type]


class Cell:
    """One operation on one connection, with the fault switched on at the right moment."""

    def __init__(self, server: MockMakini, pool: MakiniPool, fault: str) -> None:
        self.server = server
        self.pool = pool
        self.fault = fault
        self.token = f"tok_matrix_{next(_tokens):04d}"
        self.conn = pool.connection(self.token, name="matrix")
        self.title = f"matrix {self.token}"

    def expected_ids(self) -> list[str]:
        return [r["id"] for r in self.server.records(self.token, "work-orders")]

    def arm(self) -> None:
        """Switch the fault on (before the operation, or after its first page)."""
        if self.fault == "outage":
            self.server.start_outage(1.5)
        elif self.fault == "reauthorization":
            self.server.set_status(self.token, "reauthorization_required")
        elif self.fault == "disconnect":
            self.server.revoke(self.token)
        else:
            plan = plan_for(self.fault)
            if plan is not None:
                self.server.configure_connection(self.token, faults=plan)

    def created(self) -> int:
        return sum(
            1
            for r in self.server.records(self.token, "work-orders")
            if r.get("title") == self.title
        )


async def op_get(cell: Cell) -> None:
    target = cell.expected_ids()[7]
    cell.arm()
    record = await cell.conn.work_orders.get(target)
    assert record.id == target


async def op_list(cell: Cell) -> None:
    expected = cell.expected_ids()
    got: list[str] = []
    async for record in cell.conn.work_orders.list(page_size=PAGE):
        got.append(record.id)
        if len(got) == 1:
            cell.arm()  # mid-listing
    assert got == expected


async def op_pages(cell: Cell) -> None:
    expected = cell.expected_ids()
    got: list[str] = []
    async for page in cell.conn.work_orders.list(page_size=PAGE).pages():
        got.extend(r.id for r in page.records)
        if len(got) == PAGE:
            cell.arm()
    assert got == expected


async def op_pull(cell: Cell) -> None:
    expected = cell.expected_ids()
    got: list[str] = []
    async with cell.pool.pull("work-orders", [cell.conn], as_dicts=True) as pull:
        async for page in pull.pages():
            got.extend(r["id"] for r in page.records)
            if len(got) == len(page.records):
                cell.arm()
    (chain,) = pull.report.chains
    if chain.error is not None:
        raise chain.error
    assert chain.outcome is Outcome.COMPLETED
    assert got == expected


async def op_create_with_key(cell: Cell) -> None:
    cell.arm()
    record = await cell.conn.work_orders.create({"title": cell.title})
    assert record.title == cell.title


async def op_create_without_key(cell: Cell) -> None:
    cell.arm()
    record = await cell.conn.work_orders.create({"title": cell.title}, idempotency_key=None)
    assert record.title == cell.title


OPS: dict[str, Callable[[Cell], Awaitable[None]]] = {
    "get": op_get,
    "list": op_list,
    "pages": op_pages,
    "pull": op_pull,
    "create_with_key": op_create_with_key,
    "create_without_key": op_create_without_key,
}


def expectation(fault: str, op: str) -> type[MakiniError] | None:
    """``None``: recovered and complete; else the typed error the cell must end with."""
    if fault == "reauthorization":
        return ReauthorizationRequired
    if fault == "disconnect":
        return AuthenticationError
    if op != "create_without_key" or fault in HARMLESS:
        return None
    # A POST without an idempotency key is never sent twice: the first fault is its answer.
    if fault in APPLIED or fault == "stall":
        return TransportError
    return APIError  # a 5xx, a 429, an applied-then-503 write, the outage's proxy page


@pytest.mark.parametrize("op", OPERATIONS)
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_matrix(fault: str, op: str) -> None:
    # One connection here: its first outage-class failure already counts.
    outage = OutagePolicy(
        min_connections=1, min_failures=1, probe_interval=0.2, probe_interval_max=0.5
    )
    async with MockMakini(records_per_entity=RECORDS, seed=3) as server:
        async with MakiniPool(
            base_url=server.url,
            timeouts=Timeouts(connect=1.0, read=0.3, total=2.0),
            retry=RetryPolicy(attempts=6, timeout=60),
            outage=outage,
            page_sizes=PageSizes({"work-orders": PAGE}),
        ) as pool:
            cell = Cell(server, pool, fault)
            before = cell.created()
            expected = expectation(fault, op)
            run = asyncio.wait_for(OPS[op](cell), CELL_TIMEOUT)
            if expected is None:
                await run
            else:
                with pytest.raises(expected) as info:
                    await run
                error = info.value
                assert error.connection == "matrix"
                if not isinstance(error, TransportError) or fault in APPLIED:
                    # An answer came: it names its request.
                    assert error.request_id or fault in ("outage", "html_error", "error_504")
                assert "tok_matrix" not in str(error)
            requests = server.stats(cell.token).requests
    if op.startswith("create"):
        made = cell.created() - before
        applied = fault in APPLIED or fault == "write_applied_503"
        if expected is None or applied:
            assert made == 1  # recovered, or applied before the answer was lost
        else:
            assert made == 0  # refused, and never sent twice
    # Bounded work: a few attempts per request, never a storm.
    assert requests <= 12
