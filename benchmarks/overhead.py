"""What a pull adds per page, in one process, with no network: the library's own CPU.

A transport that answers every request at once with the same pre-built page
feeds a pull of one-page connections. The floor is a bare loop over the same
pages (``orjson.loads``, count the records, free the page): what any client
pays. Each way of consuming the pull is timed against it, in CPU µs per page,
the minimum over rounds. No sockets and no server share the core, so
differences of a few µs show, where the HTTP benchmark (``benchmarks.run``)
moves by ±5% from run to run. What HTTP costs is not in these numbers.

::

    python -m benchmarks.overhead                          # realistic work orders
    python -m benchmarks.overhead --shape light --rounds 15
    python -m benchmarks.overhead --entity purchase-orders --pages 1000
    python -m benchmarks.overhead --chain 10                # 10 pages per connection
    python -m benchmarks.overhead --instructions            # also count instructions
    python -m benchmarks.overhead --tuned                   # the pull inside tuning.tuned()

On a shared virtual machine even CPU time moves by tens of µs a page from
run to run. ``--instructions`` adds a figure that does not move: each way
runs in a process of its own under valgrind (cachegrind, no cache
simulation), twice with different numbers of pages, and the difference
gives the user-space instructions one page costs, and the library's share
above the floor. Instructions leave out what memory does (a page touched
again later costs cache misses), so CPU time stays the figure to meet.

``--tuned`` runs each way of the pull inside :func:`makini_async.tuning.tuned`,
as the command line and the sharded workers run; the floor, a loop written by
hand, stays as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from benchmarks._baselines import MAX_PAGE_SIZE
from benchmarks._common import RESULTS, instructions_per_step, machine
from benchmarks._instant import InstantTransport
from makini_async import Entity, MakiniPool
from makini_async.testing._data import generate_records
from makini_async.testing._realistic import widen
from makini_async.tuning import tuned

WAYS = ("floor", "pages", "records", "typed pages")


def page_bodies(entity: Entity, shape: str, chain: int) -> list[bytes]:
    """A chain of ``chain`` pages: ``p1``, ``p2``... as cursors, the last without one."""
    size = MAX_PAGE_SIZE[entity.value]
    records = generate_records(entity, 7, size * chain)
    if shape == "realistic":
        records = [widen(entity, r, 7, i) for i, r in enumerate(records)]
    return [
        orjson.dumps(
            {
                "data": records[n * size : (n + 1) * size],
                "next_cursor": f"p{n + 1}" if n + 1 < chain else None,
            }
        )
        for n in range(chain)
    ]


async def _floor(bodies: list[bytes], pages: int) -> int:
    count = 0
    for n in range(pages):
        doc = orjson.loads(bodies[n % len(bodies)])
        count += len(doc["data"])
    return count


async def _pull(
    bodies: list[bytes], entity: Entity, pages: int, way: str, *, dedupe: bool = True
) -> int:
    typed = way == "typed pages"
    specs = [(f"c{i:05d}", f"bench-token-{i:05d}") for i in range(pages // len(bodies))]
    count = 0
    async with (
        MakiniPool(
            base_url="http://127.0.0.1:1", transport=InstantTransport(bodies), as_dicts=not typed
        ) as pool,
        pool.pull([entity], specs, dedupe=dedupe) as pull,
    ):
        if way == "records":
            async for _item in pull:
                count += 1
        else:
            async for page in pull.pages():
                count += len(page.records)
    return count


def measure(opts: argparse.Namespace) -> dict[str, Any]:
    entity = Entity(opts.entity)
    bodies = page_bodies(entity, opts.shape, opts.chain)
    per_page = MAX_PAGE_SIZE[entity.value]
    if opts.pages % opts.chain:
        raise SystemExit("--pages must be a multiple of --chain")
    runs: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(opts.rounds):
        for way in WAYS:
            start = time.process_time()
            count = _one(opts, bodies, entity, way, opts.pages)
            elapsed = time.process_time() - start
            if count != opts.pages * per_page:
                raise RuntimeError(f"{way}: {count} records, expected {opts.pages * per_page}")
            runs[way].append(elapsed / opts.pages * 1e6)
    floor = min(runs["floor"])
    return {
        "machine": machine(),
        "options": vars(opts),
        "page_bytes": len(bodies[0]),
        "records_per_page": per_page,
        "us_per_page": {way: min(values) for way, values in runs.items()},
        "added_us_per_page": {way: min(values) - floor for way, values in runs.items()},
        "added_us_per_record": {
            way: (min(values) - floor) / per_page for way, values in runs.items()
        },
        "added_percent": {way: 100 * (min(values) - floor) / floor for way, values in runs.items()},
    }


def _one(
    opts: argparse.Namespace, bodies: list[bytes], entity: Entity, way: str, pages: int
) -> int:
    """One way over ``pages`` pages: records delivered (the pull tuned with ``--tuned``)."""
    if way == "floor":
        return asyncio.run(_floor(bodies, pages))
    with tuned() if opts.tuned else contextlib.nullcontext():
        return asyncio.run(_pull(bodies, entity, pages, way, dedupe=opts.dedupe))


def _child(opts: argparse.Namespace, way: str, pages: int) -> None:
    """One way over ``pages`` pages in this process (run under valgrind)."""
    entity = Entity(opts.entity)
    bodies = page_bodies(entity, opts.shape, opts.chain)
    _one(opts, bodies, entity, way, pages)


def instructions(opts: argparse.Namespace) -> dict[str, float] | None:
    """User-space instructions per page of each way, or None without valgrind."""
    args = ["--shape", opts.shape, "--entity", opts.entity, "--chain", str(opts.chain)]
    if not opts.dedupe:
        args.append("--no-dedupe")
    if opts.tuned:
        args.append("--tuned")
    out = {}
    for way in WAYS:
        count = instructions_per_step(
            "benchmarks.overhead", [*args, "--child", way], 100 * opts.chain, 400 * opts.chain
        )
        if count is None:
            print("valgrind is not installed: no instruction counts")
            return None
        out[way] = count
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("realistic", "light"), default="realistic")
    parser.add_argument("--entity", default="work-orders", choices=sorted(MAX_PAGE_SIZE))
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--chain", type=int, default=1, help="pages per connection (default 1)")
    parser.add_argument("--no-dedupe", dest="dedupe", action="store_false", help="dedupe=False")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--out", default=None, help="JSON results (default: results/overhead-SHAPE.json)"
    )
    parser.add_argument("--instructions", action="store_true", help="also count instructions")
    parser.add_argument("--tuned", action="store_true", help="the pull inside tuning.tuned()")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        _child(opts, opts.child[0], int(opts.child[1]))
        return 0
    result = measure(opts)
    if opts.instructions:
        counted = instructions(opts)
        if counted is not None:
            result["instructions_per_page"] = counted
            result["instructions_over_floor_percent"] = {
                way: 100 * (n - counted["floor"]) / counted["floor"] for way, n in counted.items()
            }
    print(
        f"{opts.entity}, {opts.shape}: {result['page_bytes']:,} bytes a page,"
        f" {opts.chain} page(s) per connection, dedupe={opts.dedupe}, tuned={opts.tuned}"
    )
    for way in WAYS:
        added = result["added_us_per_page"][way]
        print(
            f"  {way:<12} {result['us_per_page'][way]:8.1f} µs/page"
            + (
                ""
                if way == "floor"
                else f"   {added:+7.1f} µs/page ({result['added_percent'][way]:+5.1f}%) over floor"
            )
        )
    for way, share in result.get("instructions_over_floor_percent", {}).items():
        count = result["instructions_per_page"][way]
        print(f"  {way:<12} {count / 1e3:8.0f} k instructions/page   +{share:5.1f}% over the floor")
    suffix = ("" if opts.dedupe else "-no-dedupe") + ("-tuned" if opts.tuned else "")
    default = RESULTS / f"overhead-{opts.entity}-{opts.shape}-chain{opts.chain}{suffix}.json"
    out = Path(opts.out) if opts.out else default
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
