"""The pool tells an outage of the API from one connection's trouble, on an injected clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from makini_async import (
    BreakerPolicy,
    ConnectedSystemError,
    ConnectionState,
    Hook,
    OutageError,
    OutageEvent,
    OutagePolicy,
    Outcome,
    RetryPolicy,
)
from makini_async._client.outage import is_outage_class
from makini_async._wire.responses import error_from_response
from tests.fakes import Call, FakeClock, error, page, respond

NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def proxy_502() -> Any:
    return respond(502, body=NGINX_502, headers={"Content-Type": "text/html"})


class Recorder(Hook):
    def __init__(self) -> None:
        self.outages: list[OutageEvent] = []
        self.states: list[tuple[str, ConnectionState]] = []

    def on_outage(self, event: OutageEvent) -> None:
        self.outages.append(event)

    def on_connection_state(self, event: Any) -> None:
        self.states.append((event.connection, event.new))


async def test_every_connection_failing_at_once_is_waited_out(
    make_pool: Any, clock: FakeClock
) -> None:
    back_at = clock.now + 40.0

    def handler(call: Call) -> Any:
        if clock.now < back_at:
            return proxy_502()
        return respond(200, {"data": {"id": "a"}})

    hook = Recorder()
    async with make_pool(
        handler,
        as_dicts=True,
        hooks=[hook],
        retry=RetryPolicy(attempts=3, timeout=600),
        breaker=BreakerPolicy(threshold=2),
    ) as (pool, transport):
        conns = [pool.connection(f"tok{i}", name=f"c{i}") for i in range(20)]
        results = await asyncio.gather(*(c.get("assets", "a") for c in conns))
        states = {c.name: c.state for c in conns}
    assert results == [{"id": "a"}] * 20
    # No breaker opened for a fault none of the connections caused.
    assert set(states.values()) == {ConnectionState.ACTIVE}
    assert not [s for s in hook.states if s[1] is ConnectionState.CIRCUIT_OPEN]
    assert [e.kind for e in hook.outages] == ["began", "ended"]
    assert hook.outages[0].connections >= 3
    assert hook.outages[1].duration >= 30
    # Waiting, not hammering: one probe at a time with growing intervals.
    assert len(transport.calls) < 20 * 3 + 15


async def test_one_failing_connection_trips_only_its_own_breaker(
    make_pool: Any, clock: FakeClock
) -> None:
    def handler(call: Call) -> Any:
        if call.headers["Authorization"].endswith("down"):
            return proxy_502()
        return respond(200, {"data": {"id": "a"}})

    hook = Recorder()
    async with make_pool(
        handler,
        as_dicts=True,
        hooks=[hook],
        retry=RetryPolicy(attempts=3),
        breaker=BreakerPolicy(threshold=3),
    ) as (pool, _):
        down = pool.connection("tok-down", name="down")
        healthy = [pool.connection(f"tok{i}", name=f"c{i}") for i in range(5)]

        async def keep_going(conn: Any) -> None:
            for _ in range(10):
                await conn.get("assets", "a")
                await clock.sleep(0.5)

        outcome = await asyncio.gather(
            down.get("assets", "a"), *(keep_going(c) for c in healthy), return_exceptions=True
        )
    assert isinstance(outcome[0], Exception)
    assert outcome[1:] == [None] * 5
    assert down.state is ConnectionState.CIRCUIT_OPEN
    assert all(c.state is ConnectionState.ACTIVE for c in healthy)
    assert hook.outages == []


async def test_an_outage_longer_than_the_budget_ends_every_call_the_same_way(
    make_pool: Any, clock: FakeClock
) -> None:
    async with make_pool(
        lambda call: proxy_502(),
        outage=OutagePolicy(budget=120.0),
        retry=RetryPolicy(attempts=3, timeout=10_000),
    ) as (pool, transport):
        conns = [pool.connection(f"tok{i}") for i in range(6)]
        started = clock.now
        outcome = await asyncio.gather(
            *(c.get("assets", "a") for c in conns), return_exceptions=True
        )
    assert all(isinstance(o, OutageError) for o in outcome)
    assert {str(o).split(" for ")[0] for o in outcome} == {
        "the Makini API has been unreachable from this pool"
    }
    assert "outage budget" in str(outcome[0])
    assert 120 <= clock.now - started < 200
    assert len(transport.calls) < 6 * 3 + 20


async def test_a_single_call_keeps_its_own_timeout(make_pool: Any, clock: FakeClock) -> None:
    async with make_pool(lambda call: proxy_502(), retry=RetryPolicy(attempts=3, timeout=30)) as (
        pool,
        _,
    ):
        started = clock.now
        outcome = await asyncio.gather(
            *(pool.connection(f"tok{i}").get("assets", "a") for i in range(4)),
            return_exceptions=True,
        )
    # Calls that failed before the outage was recognised end with their own error;
    # the others wait for the API until their own timeout, not the outage budget.
    waited = [o for o in outcome if isinstance(o, OutageError)]
    assert len(waited) >= 2
    assert all("call timeout" in str(o) for o in waited)
    assert all(isinstance(o, (OutageError, ConnectedSystemError)) for o in outcome)
    assert clock.now - started < 60


async def test_random_faults_never_line_up_into_an_outage(make_pool: Any) -> None:
    # Three connections fail once each in a row: not yet the run of failures an outage is.
    answers = iter([proxy_502(), proxy_502(), proxy_502()])
    hook = Recorder()
    async with make_pool(
        lambda call: next(answers, None) or respond(200, {"data": {"id": "a"}}),
        as_dicts=True,
        hooks=[hook],
    ) as (pool, _):
        results = await asyncio.gather(
            *(pool.connection(f"tok{i}").get("assets", "a") for i in range(3))
        )
    assert results == [{"id": "a"}] * 3
    assert hook.outages == []


async def test_the_customers_systems_failing_is_not_an_outage(make_pool: Any) -> None:
    # The API's own 502 CONNECTED_SYSTEM_ERROR: each customer's system, not the API.
    hook = Recorder()
    async with make_pool(
        lambda call: error(502, "CONNECTED_SYSTEM_ERROR"),
        hooks=[hook],
        retry=RetryPolicy(attempts=2),
    ) as (pool, _):
        outcome = await asyncio.gather(
            *(pool.connection(f"tok{i}").get("assets", "a") for i in range(5)),
            return_exceptions=True,
        )
    assert all(isinstance(o, ConnectedSystemError) for o in outcome)
    assert hook.outages == []


@pytest.mark.parametrize(
    ("status", "body", "outage_class"),
    [
        (502, NGINX_502, True),
        (503, b"", True),
        (500, b'{"error":{"code":"INTERNAL_ERROR","message":"m"}}', True),
        (502, b'{"error":{"code":"CONNECTED_SYSTEM_ERROR","message":"m"}}', False),
        (404, b'{"error":{"code":"NOT_FOUND","message":"m"}}', False),
    ],
)
def test_what_counts_as_an_outage(status: int, body: bytes, outage_class: bool) -> None:
    assert is_outage_class(error_from_response(status, {}, body)) is outage_class


def test_a_proxy_error_page_is_summarised_never_dumped() -> None:
    err = error_from_response(502, {"Content-Type": "text/html"}, NGINX_502 * 50)
    assert str(err).startswith("502 CONNECTED_SYSTEM_ERROR: HTTP 502 (text/html, ")
    assert "502 Bad Gateway" in err.message
    assert "<" not in err.message
    assert "\n" not in str(err)
    assert len(err.message) < 150
    plain = error_from_response(503, {}, b"\x1b[2J upstream\nconnect error\n" + b"x" * 10_000)
    assert "upstream" in plain.message
    assert "\x1b" not in plain.message
    assert "connect error" not in plain.message  # the first line only
    assert "no content type" in plain.message


async def test_a_pull_defers_a_chain_whose_breaker_opened(make_pool: Any, clock: FakeClock) -> None:
    # plant-1's source system is down for a minute: its breaker opens, its chain
    # waits for the cool-down and completes; the others never wait.
    back_at = clock.now + 60.0

    def handler(call: Call) -> Any:
        if call.headers["Authorization"].endswith("sick") and clock.now < back_at:
            return error(502, "CONNECTED_SYSTEM_ERROR")
        return page([{"id": "a"}], None)

    async with make_pool(
        handler,
        as_dicts=True,
        retry=RetryPolicy(attempts=2),
        breaker=BreakerPolicy(threshold=2, cooldown=25.0),
    ) as (pool, _):
        conns = [("plant-1", "tok-sick"), ("plant-2", "tok-ok"), ("plant-3", "tok-ok2")]
        async with pool.pull("assets", conns, patience=120.0) as pull:
            items = [i.connection async for i in pull]
        async with pool.pull("assets", conns[:1], patience=10.0) as impatient:
            pool.connection("tok-sick").reset()
            back_at = clock.now + 1_000.0
            _ = [i async for i in impatient]
    assert sorted(items) == ["plant-1", "plant-2", "plant-3"]
    assert pull.report.ok
    deferrals = {c.connection: c.deferrals for c in pull.report.chains}
    assert deferrals["plant-1"] >= 1
    assert deferrals["plant-2"] == deferrals["plant-3"] == 0
    (chain,) = impatient.report.chains
    assert chain.outcome is Outcome.FAILED
    assert isinstance(chain.error, ConnectedSystemError)  # what the source system said
    assert chain.deferrals == 0  # the cool-down was longer than its patience
