"""One contender, one run, one fresh process: pull everything, verify it, print one JSON line.

::

    python -m benchmarks.contenders --kind makini-dicts --url http://127.0.0.1:8080 \
        --connections 1000 --records 200

Contenders (``--kind``):

* ``makini-typed``: ``MakiniPool(as_dicts=False)`` bulk pull, ``async for rec in pull``;
* ``makini-dicts``: the same with ``as_dicts=True`` (plain dicts);
* ``makini-dicts-pages``: dicts, iterating ``pull.pages()`` instead of records;
* ``makini-dicts-pages-no-dedupe``: the same with ``dedupe=False`` (what de-duplication costs);
* ``makini-dicts-tuned``, ``makini-typed-tuned``: records inside ``makini_async.tuning.tuned()``;
* ``aiohttp``: hand-written baseline, one ``ClientSession``, an ``asyncio.Semaphore``,
  ``orjson.loads(await resp.read())``, walking each connection's cursor chain;
* ``httpx``: the same logic on ``httpx.AsyncClient``;
* ``naive``: aiohttp, one connection after another, one page after another, ``resp.json()``.

Baselines never retry: an error on a page ends that connection's chain and what
was received so far is what gets counted. Every contender verifies what it got:
each (connection, record id) exactly once, ``expected = connections x records``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

from benchmarks._baselines import ID_PREFIX_LEN, Tally, run_aiohttp, run_httpx, run_naive

KINDS = (
    "makini-typed",
    "makini-dicts",
    "makini-dicts-pages",
    "makini-dicts-pages-no-dedupe",
    "makini-dicts-tuned",
    "makini-typed-tuned",
    "aiohttp",
    "httpx",
    "naive",
)
# -- makini_async -------------------------------------------------------------------


class _LatencyHook:
    """Only ``on_request``: no page events are emitted to it."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def on_request(self, event: Any) -> None:
        tally = self.tally
        tally.requests += 1
        tally.latencies.append(event.elapsed)
        if event.error is not None:
            tally.error(event.error)


async def run_makini(
    opts: argparse.Namespace,
    tally: Tally,
    *,
    as_dicts: bool,
    pages: bool = False,
    dedupe: bool = True,
) -> dict[str, Any]:
    from makini_async._client.config import Limits, PageSizes, RetryPolicy
    from makini_async.pool import MakiniPool

    kwargs: dict[str, Any] = {
        "base_url": opts.url,
        "as_dicts": as_dicts,
        "hooks": [_LatencyHook(tally)],
        "limits": Limits(max_in_flight=opts.concurrency),
    }
    if opts.page_size:
        kwargs["page_sizes"] = PageSizes({opts.entity: opts.page_size})
    if opts.fast_retry:
        kwargs["retry"] = RetryPolicy(wait_initial=0.05, wait_max=1.0)
    # Any iterable of (name, token) pairs: no list of tuples kept alive.
    specs = zip(tally.names, tally.tokens, strict=False)
    mark = tally.mark
    bits, off, size = tally.bits, tally.off, tally.records
    received = duplicates = unexpected = 0
    last_name: str | None = None
    base = 0
    async with MakiniPool(**kwargs) as pool, pool.pull([opts.entity], specs, dedupe=dedupe) as pull:
        if pages or opts.iterate == "pages":
            if as_dicts:
                async for page in pull.pages():
                    tally.mark_page(page.connection, page.records)
                    # Freed before the next page is parsed, as the baselines free theirs.
                    del page
            else:
                async for page in pull.pages():
                    for rec in page.records:
                        mark(page.connection, rec.id)
        else:
            # The same per-record bookkeeping as Tally.mark_page, inlined like the baselines'.
            async for item in pull:
                name = item.connection
                if name is not last_name:  # records of one page come together
                    last_name, base = name, tally.base(name)
                rid = item.record["id"] if as_dicts else item.record.id
                index = int(rid[off:])
                received += 1
                if index >= size:
                    unexpected += 1
                elif bits[base + index]:
                    duplicates += 1
                else:
                    bits[base + index] = 1
            tally.received += received
            tally.duplicates += duplicates
            tally.unexpected += unexpected
        report = pull.report
        failures: dict[str, int] = {}
        for chain in report.chains:
            if chain.error is not None:
                text = f"{type(chain.error).__name__}: {chain.error}"[:300]
                failures[text] = failures.get(text, 0) + 1
        return {
            "retries": report.retries,
            "rate_limited": report.rate_limited,
            "failed_chains": len(report.failed_connections),
            "chain_errors": dict(sorted(failures.items(), key=lambda kv: -kv[1])[:5]),
        }


async def _tuned(pull: Any) -> Any:
    """The opt-in tuning (makini_async.tuning.tuned) around a per-record pull."""
    from makini_async.tuning import tuned

    with tuned():
        return await pull


# -- the run --------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


class _GcStats:
    """Garbage collections during the run, per generation, and the time they took."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1


def _preload(kind: str) -> None:
    import importlib

    modules = {
        "aiohttp": ["aiohttp", "orjson"],
        "naive": ["aiohttp"],
        "httpx": ["httpx", "orjson"],
    }.get(
        kind,
        [
            "makini_async.pool",
            "makini_async.bulk",
            "makini_async._client.config",
            "makini_async._client.transport",
            "makini_async.tuning",
        ],
    )
    for name in modules:
        importlib.import_module(name)


def measure(opts: argparse.Namespace) -> dict[str, Any]:
    tally = Tally(opts.connections, opts.records, opts.entity)
    runners: dict[str, Callable[[], Any]] = {
        "makini-typed": lambda: run_makini(opts, tally, as_dicts=False),
        "makini-dicts": lambda: run_makini(opts, tally, as_dicts=True),
        "makini-dicts-pages": lambda: run_makini(opts, tally, as_dicts=True, pages=True),
        "makini-dicts-pages-no-dedupe": lambda: run_makini(
            opts, tally, as_dicts=True, pages=True, dedupe=False
        ),
        "makini-dicts-tuned": lambda: _tuned(run_makini(opts, tally, as_dicts=True)),
        "makini-typed-tuned": lambda: _tuned(run_makini(opts, tally, as_dicts=False)),
        "aiohttp": lambda: run_aiohttp(opts, tally),
        "httpx": lambda: run_httpx(opts, tally),
        "naive": lambda: run_naive(opts, tally),
    }
    runner = runners[opts.kind]
    _preload(opts.kind)  # import time is not part of the measured pull
    gc_stats = _GcStats()
    gc.callbacks.append(gc_stats)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if opts.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        extra = asyncio.run(runner())
        profiler.disable()
        profiler.dump_stats(opts.profile)
    else:
        extra = asyncio.run(runner())
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    gc.callbacks.remove(gc_stats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    distinct = tally.distinct
    expected = opts.connections * opts.records
    lat = tally.latencies
    return {
        "kind": opts.kind,
        "connections": opts.connections,
        "records_per_connection": opts.records,
        "entity": opts.entity,
        "page_size": opts.page_size or None,
        "records": distinct,
        "received": tally.received,
        "expected": expected,
        "completeness": distinct / expected if expected else 1.0,
        "duplicates": tally.duplicates,
        "unexpected": tally.unexpected,
        "seconds": seconds,
        "records_per_s": distinct / seconds if seconds > 0 else 0.0,
        "requests": tally.requests,
        "requests_per_s": tally.requests / seconds if seconds > 0 else 0.0,
        "errors": tally.errors,
        "error_kinds": tally.error_kinds,
        "p50_page_ms": None if not lat else _percentile(lat, 0.50) * 1000,  # type: ignore[operator]
        "p99_page_ms": None if not lat else _percentile(lat, 0.99) * 1000,  # type: ignore[operator]
        "peak_rss_mib": peak,
        "rss_before_run_mib": rss_before,
        "cpu_s": cpu,
        "cpu_s_per_10k_records": cpu / distinct * 10_000 if distinct else None,
        "gc_collections": gc_stats.collections,
        "gc_seconds": gc_stats.seconds,
        "gc_share_of_cpu": gc_stats.seconds / cpu if cpu > 0 else None,
        "pinned_cpus": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        **extra,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--records", type=int, required=True, help="records per connection")
    parser.add_argument("--entity", default="work-orders", choices=sorted(ID_PREFIX_LEN))
    parser.add_argument("--page-size", type=int, default=0, help="0: the entity's maximum")
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    parser.add_argument("--iterate", choices=("records", "pages"), default="records")
    parser.add_argument("--fast-retry", action="store_true", help="makini: 50 ms first wait")
    parser.add_argument("--cpus", default="", help="comma-separated CPUs to pin this process to")
    parser.add_argument("--profile", default="", help="write cProfile stats here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in opts.cpus.split(",")})
    result = measure(opts)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
