"""One contender, one run, one fresh process: pull everything, verify it, print one JSON line.

::

    python -m benchmarks.contenders --kind makini-dicts --url http://127.0.0.1:8080 \
        --connections 1000 --records 200

Contenders (``--kind``):

* ``makini-typed``: ``MakiniPool(as_dicts=False)`` bulk pull, ``async for rec in pull``;
* ``makini-dicts``: the same with ``as_dicts=True`` (plain dicts);
* ``makini-dicts-pages``: dicts, iterating ``pull.pages()`` instead of records;
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
from array import array
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# The API's largest page per entity (entities.MAX_PAGE_SIZE, not imported: the baselines
# load nothing of makini_async): the baselines ask for it, as the pull does.
MAX_PAGE_SIZE = {
    "purchase-orders": 100,
    "work-orders": 200,
    "assets": 500,
    "inventory-items": 500,
    "vendors": 500,
    "locations": 500,
}

KINDS = (
    "makini-typed",
    "makini-dicts",
    "makini-dicts-pages",
    "makini-dicts-tuned",
    "makini-typed-tuned",
    "aiohttp",
    "httpx",
    "naive",
)
ID_PREFIX_LEN = {
    "purchase-orders": 3,
    "work-orders": 3,
    "assets": 4,
    "inventory-items": 4,
    "vendors": 4,
    "locations": 4,
}


class Tally:
    """What arrived: one flat bitmap of (connection, record index), and request timings.

    Flat and numeric on purpose: this bookkeeping is the harness's, not the
    contender's, and it is in every contender's peak RSS. A bitmap per
    connection in a dict and a list of float objects cost about 250 bytes per
    connection more, which blurs the memory sweep's per-connection slope.
    """

    def __init__(self, connections: int, records: int, entity: str) -> None:
        self.names = [f"c{i:05d}" for i in range(connections)]
        self.tokens = [f"bench-token-{i:05d}" for i in range(connections)]
        self.records = records
        self.bits = bytearray(connections * records)
        self.off = ID_PREFIX_LEN[entity]
        self.received = 0
        self.duplicates = 0
        self.unexpected = 0
        self.latencies = array("d")
        self.requests = 0
        self.errors = 0
        self.error_kinds: dict[str, int] = {}

    def base(self, name: str) -> int:
        """Where connection ``name`` ("c00042") starts in the bitmap."""
        return int(name[1:]) * self.records

    @property
    def distinct(self) -> int:
        return len(self.bits) - self.bits.count(0)

    def mark(self, name: str, rid: str) -> None:
        self.received += 1
        index = int(rid[self.off :])
        if index >= self.records:
            self.unexpected += 1
            return
        pos = self.base(name) + index
        if self.bits[pos]:
            self.duplicates += 1
        else:
            self.bits[pos] = 1

    def mark_page(self, name: str, data: list[dict[str, Any]]) -> None:
        bits = self.bits
        base = self.base(name)
        off = self.off
        size = self.records
        self.received += len(data)
        for record in data:
            index = int(record["id"][off:])
            if index >= size:
                self.unexpected += 1
            elif bits[base + index]:
                self.duplicates += 1
            else:
                bits[base + index] = 1

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


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
    opts: argparse.Namespace, tally: Tally, *, as_dicts: bool, pages: bool = False
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
    async with MakiniPool(**kwargs) as pool, pool.pull([opts.entity], specs) as pull:
        if pages or opts.iterate == "pages":
            if as_dicts:
                async for page in pull.pages():
                    tally.mark_page(page.connection, page.records)
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


# -- baselines ----------------------------------------------------------------------


async def run_aiohttp(opts: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    import aiohttp
    import orjson

    url = f"{opts.url}/api/v1/{opts.entity}"
    page_size = str(opts.page_size or MAX_PAGE_SIZE[opts.entity])
    sem = asyncio.Semaphore(opts.concurrency)
    loads = orjson.loads
    clock = time.perf_counter
    lat = tally.latencies

    async def chain(session: aiohttp.ClientSession, name: str, token: str) -> None:
        headers = {"Authorization": "Bearer " + token}
        cursor: str | None = None
        async with sem:
            while True:
                params = {"page_size": page_size}
                if cursor:
                    params["cursor"] = cursor
                t0 = clock()
                tally.requests += 1
                try:
                    async with session.get(url, params=params, headers=headers) as resp:
                        status = resp.status
                        body = await resp.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    tally.error(type(exc).__name__)
                    return
                lat.append(clock() - t0)
                if status != 200:
                    tally.error(str(status))
                    return
                doc = loads(body)
                tally.mark_page(name, doc["data"])
                cursor = doc.get("next_cursor")
                if not cursor:
                    return

    connector = aiohttp.TCPConnector(limit=opts.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(
            *(chain(session, n, t) for n, t in zip(tally.names, tally.tokens, strict=False))
        )
    return {}


async def run_httpx(opts: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    import httpx
    import orjson

    url = f"{opts.url}/api/v1/{opts.entity}"
    page_size = str(opts.page_size or MAX_PAGE_SIZE[opts.entity])
    sem = asyncio.Semaphore(opts.concurrency)
    loads = orjson.loads
    clock = time.perf_counter
    lat = tally.latencies

    async def chain(client: httpx.AsyncClient, name: str, token: str) -> None:
        headers = {"Authorization": "Bearer " + token}
        cursor: str | None = None
        async with sem:
            while True:
                params = {"page_size": page_size}
                if cursor:
                    params["cursor"] = cursor
                t0 = clock()
                tally.requests += 1
                try:
                    resp = await client.get(url, params=params, headers=headers)
                except httpx.HTTPError as exc:
                    tally.error(type(exc).__name__)
                    return
                lat.append(clock() - t0)
                if resp.status_code != 200:
                    tally.error(str(resp.status_code))
                    return
                doc = loads(resp.content)
                tally.mark_page(name, doc["data"])
                cursor = doc.get("next_cursor")
                if not cursor:
                    return

    limits = httpx.Limits(
        max_connections=opts.concurrency, max_keepalive_connections=opts.concurrency
    )
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        await asyncio.gather(
            *(chain(client, n, t) for n, t in zip(tally.names, tally.tokens, strict=False))
        )
    return {}


async def run_naive(opts: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    import aiohttp

    url = f"{opts.url}/api/v1/{opts.entity}"
    page_size = str(opts.page_size or MAX_PAGE_SIZE[opts.entity])
    clock = time.perf_counter
    async with aiohttp.ClientSession() as session:
        for name, token in zip(tally.names, tally.tokens, strict=False):
            headers = {"Authorization": "Bearer " + token}
            cursor: str | None = None
            while True:
                params = {"page_size": page_size}
                if cursor:
                    params["cursor"] = cursor
                t0 = clock()
                tally.requests += 1
                try:
                    async with session.get(url, params=params, headers=headers) as resp:
                        status = resp.status
                        doc = await resp.json() if status == 200 else None
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    tally.error(type(exc).__name__)
                    break
                tally.latencies.append(clock() - t0)
                if doc is None:
                    tally.error(str(status))
                    break
                tally.mark_page(name, doc["data"])
                cursor = doc.get("next_cursor")
                if not cursor:
                    break
    return {}


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
