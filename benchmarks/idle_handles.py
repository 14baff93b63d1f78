"""Bytes per idle connection handle, for 100,000 handles.

Run: python -m benchmarks.idle_handles [--count 100000]

Measures with tracemalloc (Python allocations, which is what handles cost):
1. fresh handles (``pool.connection(token)``), counting the pool's dict entry
   and the handle object, but not the token strings the caller already holds;
2. the same handles after each has made one request (its semaphore and
   counters exist), through an in-process transport so no socket is involved.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._instant import InstantTransport
from makini_async import MakiniPool

_BODY = b'{"data": {"id": "ast_000001"}}'


async def measure(count: int) -> tuple[float, float]:
    tokens = [f"tok_live_{i:032x}" for i in range(count)]
    async with MakiniPool(
        base_url="http://127.0.0.1:9", transport=InstantTransport([_BODY], request_id="req_1")
    ) as pool:
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        handles = [pool.connection(t) for t in tokens]
        fresh = tracemalloc.get_traced_memory()[0] - before
        for conn in handles:
            await conn.get("assets", "ast_000001", as_dicts=True)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        # The list of handles is the benchmark's, not the pool's.
        own = 8 * count + 56
        return (fresh - own) / count, (used - own) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    fresh, used = asyncio.run(measure(args.count))
    print(
        f"{args.count:,} handles: {fresh:,.0f} bytes each when fresh, {used:,.0f} after one request"
    )


if __name__ == "__main__":
    main()
