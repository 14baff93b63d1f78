"""Shared by the scale benchmarks: a counting sink, tokens, a sharded run, coordinator cost."""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import tracemalloc
from typing import Any

from benchmarks._common import mock_server

ENTITY = "work-orders"


class CountingSink:
    """A sink that only counts: the contenders compare fetching, not storing."""

    def __init__(self, unit: int = 0) -> None:
        self.unit = unit
        self.records = 0

    @property
    def location(self) -> str:
        return "counting"

    @property
    def checkpoint_store(self) -> None:
        return None

    async def open(self, entities: Any) -> None:
        pass

    async def write(self, page: Any, state: Any) -> None:
        self.records += len(page.records)

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass


def tokens(count: int) -> list[tuple[str, str]]:
    return [(f"plant-{i:06d}", f"bench-token-{i:06d}") for i in range(count)]


# -- hand-written aiohttp, in N processes ------------------------------------------------


def run_sharded(
    url: str, conns: list[tuple[str, str]], engine: Any, *, as_dicts: bool, units: int | None = None
) -> tuple[int, float]:
    from makini_async.scale import ShardedPull

    pull = ShardedPull(
        [ENTITY],
        conns,
        sink=CountingSink,
        engine=engine,
        pool_options={"base_url": url, "as_dicts": as_dicts},
        as_dicts=as_dicts,
        units=units,
    )
    start = time.perf_counter()
    report = asyncio.run(pull.run())
    elapsed = time.perf_counter() - start
    if not report.ok:
        raise RuntimeError(report.summary())
    return report.records, elapsed


def _coordinator_pass(url: str, count: int, *, trace: bool, engine: Any = None) -> dict[str, Any]:
    """One sharded pull of ``count`` one-record connections, measured from the coordinator."""
    from makini_async.scale import ProcessEngine, ShardedPull

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    conns = tokens(count)
    measured: dict[str, Any] = {"tokens": tracemalloc.get_traced_memory()[0]}
    pull = ShardedPull(
        [ENTITY],
        conns,
        sink=CountingSink,
        engine=ProcessEngine(2) if engine is None else engine,
        pool_options={"base_url": url, "as_dicts": True},
        as_dicts=True,
    )

    async def run() -> None:
        # Read inside the loop: at its end, Python 3.11's asyncio.run reprs the main
        # task's result (signal.getsignal on its SIGINT handler), and a report's repr
        # at 100,000 chains is a transient string the coordinator never needs.
        cpu = time.process_time()
        start = time.perf_counter()
        measured["report"] = await pull.run()
        measured["elapsed"] = time.perf_counter() - start
        measured["cpu"] = time.process_time() - cpu
        measured["retained"], measured["peak"] = tracemalloc.get_traced_memory()
        measured["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    asyncio.run(run())
    tracemalloc.stop()
    measured["units"] = len(pull.units)
    measured["rss_growth"] = (measured["rss"] - rss_before) * 1024
    return measured


def coordinator(opts: argparse.Namespace, engine: Any = None) -> dict[str, Any]:
    """Time and RSS from a pass without tracing, Python memory from a traced pass."""
    count = opts.coordinator_connections
    with mock_server(records=1, processes=opts.server_processes) as url:
        plain = _coordinator_pass(url, count, trace=False, engine=engine)
        traced = _coordinator_pass(url, count, trace=True, engine=engine)
    units = plain["units"]
    report = plain["report"]
    return {
        "connections": count,
        "units": units,
        "records": report.records,
        "ok": report.ok and traced["report"].ok,
        "the token list itself, bytes per connection": traced["tokens"] / count,
        "coordinator peak Python memory, bytes per connection (token list included)": traced["peak"]
        / count,
        "coordinator Python memory after the run, bytes per connection (token list included)": (
            traced["retained"] / count
        ),
        "coordinator peak RSS growth, bytes per connection (untraced pass)": plain["rss_growth"]
        / count,
        "wall seconds": plain["elapsed"],
        "wall ms per unit": plain["elapsed"] / units * 1000,
        "coordinator CPU ms per unit": plain["cpu"] / units * 1000,
        "coordinator CPU us per connection": plain["cpu"] / count * 1e6,
    }
