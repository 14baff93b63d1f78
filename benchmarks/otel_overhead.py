"""What OpenTelemetry costs a pull: CPU per page with it off, with the API alone, with the SDK.

Three ways of running the same pull, in interleaved rounds, in one process,
with a transport that answers at once (no HTTP, no server noise; see
``benchmarks.overhead``):

- ``off``: ``MakiniPool(telemetry=False)``;
- ``api``: ``opentelemetry-api`` installed and no SDK configured (the global
  providers do nothing): what every user of the ``otel`` extra pays;
- ``sdk``: the SDK's ``TracerProvider`` with a ``BatchSpanProcessor`` (to an
  exporter that drops what it gets) and a ``MeterProvider``: the cost of the
  spans and metrics themselves.

Run: ``python -m benchmarks.otel_overhead [--pages 300] [--chain 10] [--rounds 25]``.
Short runs, many of them, interleaved: the minimum of each way is the figure the rest
of the machine disturbs least.
Writes ``benchmarks/results/otel_overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.util._once import Once

from benchmarks._baselines import MAX_PAGE_SIZE
from benchmarks._common import RESULTS, machine
from benchmarks._instant import InstantTransport
from benchmarks.overhead import page_bodies
from makini_async import Entity, MakiniPool

WAYS = ("off", "api", "sdk")


class _Dropped(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _providers(way: str) -> list[Any]:
    """Install the way's global providers (none: the API's no-op ones); what to shut down."""
    # The global providers may be set once per process; reset them as OpenTelemetry's tests do.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    if way != "sdk":
        return []
    tracer = TracerProvider()
    tracer.add_span_processor(BatchSpanProcessor(_Dropped()))
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()])
    trace.set_tracer_provider(tracer)
    metrics.set_meter_provider(meter)
    return [tracer]


async def _pull(bodies: list[bytes], entity: Entity, pages: int, way: str) -> int:
    specs = [(f"c{i:05d}", f"bench-token-{i:05d}") for i in range(pages // len(bodies))]
    count = 0
    async with (
        MakiniPool(
            base_url="http://127.0.0.1:1",
            transport=InstantTransport(bodies),
            as_dicts=True,
            telemetry=way != "off",
        ) as pool,
        pool.pull([entity], specs) as pull,
    ):
        async for page in pull.pages():
            count += len(page.records)
    return count


def measure(opts: argparse.Namespace) -> dict[str, Any]:
    entity = Entity(opts.entity)
    bodies = page_bodies(entity, opts.shape, opts.chain)
    expected = opts.pages * MAX_PAGE_SIZE[entity.value]
    runs: dict[str, list[float]] = {way: [] for way in WAYS}
    for way in WAYS:  # a warm-up round, not counted: imports, caches, the first heap
        _providers(way)
        asyncio.run(_pull(bodies, entity, opts.pages, way))
    for _ in range(opts.rounds):
        for way in WAYS:
            installed = _providers(way)
            gc.collect()  # each run starts from the same heap: the collector's pauses vary most
            start = time.process_time()
            count = asyncio.run(_pull(bodies, entity, opts.pages, way))
            for provider in installed:
                provider.shutdown()  # the batch processor's last export is part of the cost
            elapsed = time.process_time() - start
            if count != expected:
                raise RuntimeError(f"{way}: {count} records, expected {expected}")
            runs[way].append(elapsed / opts.pages * 1e6)
    _providers("off")
    median = {way: statistics.median(values) for way, values in runs.items()}
    return {
        "machine": machine(),
        "options": vars(opts),
        "us_per_page": {
            way: {
                "median": round(m, 1),
                "min": round(min(runs[way]), 1),
                "max": round(max(runs[way]), 1),
            }
            for way, m in median.items()
        },
        # The minimum is the figure least disturbed by the rest of the machine (as in
        # benchmarks.overhead); the median is given beside it.
        "api_over_off_percent": round((min(runs["api"]) / min(runs["off"]) - 1) * 100, 1),
        "api_over_off_percent_median": round((median["api"] / median["off"] - 1) * 100, 1),
        "sdk_added_us_per_page": round(min(runs["sdk"]) - min(runs["off"]), 1),
        "sdk_added_us_per_page_median": round(median["sdk"] - median["off"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("realistic", "light"), default="realistic")
    parser.add_argument("--entity", default="work-orders", choices=sorted(MAX_PAGE_SIZE))
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--chain", type=int, default=10, help="pages per connection")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--no-save", dest="save", action="store_false")
    opts = parser.parse_args(argv)
    if opts.pages % opts.chain:
        parser.error("--pages must be a multiple of --chain")
    result = measure(opts)
    for way, f in result["us_per_page"].items():
        print(f"  {way:<4} {f['median']:8.1f} µs/page (min {f['min']}, max {f['max']})")
    print(
        f"  api over off: {result['api_over_off_percent']:+.1f} % "
        f"(medians: {result['api_over_off_percent_median']:+.1f} %)"
    )
    print(
        f"  sdk adds {result['sdk_added_us_per_page']:.1f} µs/page "
        f"(medians: {result['sdk_added_us_per_page_median']:.1f})"
    )
    if opts.save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "otel_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
