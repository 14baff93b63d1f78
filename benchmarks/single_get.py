"""One awaited ``get`` on loopback: the library against hand-written aiohttp + orjson.

Both sides call the same mock server (in its own process) for the same
record, one call at a time. Every way's client is open at once and the ways
take turns in blocks of 50 calls, each going first in turn, so that drift
hits them alike; reported is µs per call (median of the rounds' medians)
and the difference.
Variants: a typed call, a dict call, a call through a ``with_options`` view,
and a call on a connection whose token comes from a provider::

    python -m benchmarks.single_get              # 2,000 calls x 5 rounds
    python -m benchmarks.single_get --calls 500 --rounds 3
    python -m benchmarks.single_get --instructions   # also count instructions

On a shared virtual machine a loopback call's CPU time is mostly the
kernel's TCP work and moves by tens of µs between rounds, more than the
difference measured. ``--instructions`` adds a figure that does not move:
each way runs in a process of its own under valgrind (cachegrind, no cache
simulation) against the same server, twice with different numbers of calls,
and the difference gives the user-space instructions one call costs.

Writes ``benchmarks/results/single_get.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    RESULTS,
    instructions_per_step,
    library_version,
    machine,
    mock_server,
)
from makini_async import MakiniPool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

TOKEN = "tok-single-get-0001"  # noqa: S105 - the mock accepts any token
PATH = "/api/v1/work-orders/wo_000001"


async def _caller(url: str, way: str, stack: AsyncExitStack) -> Callable[[], Awaitable[Any]]:
    """One way's call, its client opened on ``stack``."""
    if way == "aiohttp":
        headers = {"Authorization": f"Bearer {TOKEN}"}
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def call() -> Any:
            async with session.get(url + PATH, headers=headers) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(resp.status)
                return orjson.loads(body)["data"]

        return call
    pool = await stack.enter_async_context(MakiniPool(base_url=url))
    if way == "provider":
        conn: Any = pool.connection(name="acme", token=lambda: TOKEN)
    else:
        conn = pool.connection(TOKEN)
    if way == "with_options":
        conn = conn.with_options(timeout=2.0, max_retries=0)
    orders = conn.work_orders
    as_dicts = way == "dicts"
    return lambda: orders.get("wo_000001", as_dicts=as_dicts)


WAYS = ("aiohttp", "typed", "dicts", "with_options", "provider")
#: Calls per block: the ways take turns block by block, so drift hits them alike.
BLOCK = 50


async def _round(url: str, calls: int) -> dict[str, float]:
    async with AsyncExitStack() as stack:
        callers = {way: await _caller(url, way, stack) for way in WAYS}
        for call in callers.values():  # warm-up: connections made, code paths hot
            for _ in range(BLOCK):
                await call()
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        cpu = dict.fromkeys(WAYS, 0.0)
        order = list(WAYS)
        for _ in range(max(1, calls // BLOCK)):
            order = order[1:] + order[:1]  # each way goes first in turn
            for way in order:
                call, spent, started = callers[way], times[way], time.process_time()
                for _ in range(BLOCK):
                    t = time.perf_counter()
                    await call()
                    spent.append(time.perf_counter() - t)
                # CPU time as well: what the client itself spends, without the wait.
                cpu[way] += time.process_time() - started
    out = {way: statistics.median(times[way]) * 1e6 for way in WAYS}
    out.update({f"{way} cpu": cpu[way] / len(times[way]) * 1e6 for way in WAYS})
    return out


def _child(url: str, way: str, calls: int) -> None:
    """One way's calls in this process (run under valgrind by ``_instructions``)."""

    async def run() -> None:
        async with AsyncExitStack() as stack:
            call = await _caller(url, way, stack)
            for _ in range(calls):
                await call()

    asyncio.run(run())


def _instructions(url: str) -> dict[str, float] | None:
    """User-space instructions per call of each way, or None without valgrind."""
    out = {}
    for way in WAYS:
        count = instructions_per_step("benchmarks.single_get", ["--child", url, way], 300, 1300)
        if count is None:
            print("valgrind is not installed: no instruction counts")
            return None
        out[way] = count
        print(f"{way:<13} {count / 1000:7.1f} k instructions per call")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "single_get.json")
    parser.add_argument("--instructions", action="store_true", help="also count instructions")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, way, calls = args.child
        _child(url, way, int(calls))
        return 0
    # The server on one core, this client on the other: neither takes the other's time.
    client, server = ({0}, {1}) if len(os.sched_getaffinity(0)) >= 2 else (None, None)
    with mock_server(records=10, cpus=server) as url:
        if client is not None:
            os.sched_setaffinity(0, client)
        rounds = [asyncio.run(_round(url, args.calls)) for _ in range(args.rounds)]
        instructions = _instructions(url) if args.instructions else None
    med = {w: statistics.median(r[w] for r in rounds) for w in rounds[0]}
    for way in WAYS:
        extra = "" if way == "aiohttp" else f"  (+{med[way] - med['aiohttp']:.1f} µs)"
        lo = min(r[way] for r in rounds)
        hi = max(r[way] for r in rounds)
        cpu = med[f"{way} cpu"]
        print(
            f"{way:<13} {med[way]:7.1f} µs per call ({lo:.1f}-{hi:.1f}){extra}; "
            f"client CPU {cpu:.1f} µs (+{cpu - med['aiohttp cpu']:.1f})"
        )
    report = {
        "machine": machine(),
        "library": library_version(),
        "calls": args.calls,
        "rounds": rounds,
        "median_us": med,
        "over_aiohttp_us": {w: med[w] - med["aiohttp"] for w in WAYS},
        "client_cpu_over_aiohttp_us": {w: med[f"{w} cpu"] - med["aiohttp cpu"] for w in WAYS},
    }
    if instructions is not None:
        report["instructions_per_call"] = instructions
        report["instructions_over_aiohttp"] = {
            w: instructions[w] - instructions["aiohttp"] for w in WAYS
        }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
