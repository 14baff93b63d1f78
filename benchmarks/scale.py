"""Sharded pulls: records/s with 1 and 2 workers, Ray against local processes, coordinator cost.

Two measurements, against the mock server in its own process (``--server-processes``):

1. **records/s** of one pull of ``--connections`` x ``--records`` work orders by:
   hand-written aiohttp in 1 and 2 processes (each its share of the
   connections), ``ShardedPull`` on 1 and 2 local worker processes (dicts and
   typed records), and ``ShardedPull`` on a local Ray with 2 workers (Ray is
   started before the clock starts). Records land in a counting no-op sink, so
   every contender does the same work: fetch, parse, count. Rounds interleave
   the contenders; the report gives medians (min-max) and the ratios the
   issue asks for, each computed within a round.
2. **coordinator cost at ``--coordinator-connections``** (100,000) connections
   with one tiny record each: the coordinator's peak Python memory
   (tracemalloc, everything it allocates for the pull: units, jobs, the merged
   report) per connection, its RSS growth, and its wall and CPU time per unit.

::

    python -m benchmarks.scale                       # 3 rounds
    python -m benchmarks.scale --quick               # 1 round, small
    python -m benchmarks.scale --skip-throughput     # only the coordinator at 100,000
    python -m benchmarks.scale --engine ray --address ray://HOST:10001   # a running cluster
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import os
import resource
import sys
import time
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    RESULTS,
    group_cpu_seconds,
    machine,
    median_range,
    mock_server,
    process_cpu_seconds,
)
from benchmarks._scale_common import ENTITY, coordinator, run_sharded, tokens


def _aiohttp_share(url: str, share: list[tuple[str, str]], concurrency: int) -> int:
    import aiohttp
    import orjson

    async def main() -> int:
        count = 0
        sem = asyncio.Semaphore(concurrency)

        async def chain(session: aiohttp.ClientSession, token: str) -> None:
            nonlocal count
            cursor = None
            async with sem:
                while True:
                    params = {"page_size": "200"}
                    if cursor:
                        params["cursor"] = cursor
                    headers = {"Authorization": "Bearer " + token}
                    async with session.get(
                        f"{url}/api/v1/{ENTITY}", params=params, headers=headers
                    ) as resp:
                        doc = orjson.loads(await resp.read())
                    count += len(doc["data"])
                    cursor = doc.get("next_cursor")
                    if not cursor:
                        return

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(chain(session, t) for _, t in share))
        return count

    return asyncio.run(main())


def run_aiohttp(url: str, conns: list[tuple[str, str]], processes: int) -> tuple[int, float]:
    context = multiprocessing.get_context("spawn")
    shares = [conns[i::processes] for i in range(processes)]
    with context.Pool(processes) as pool:
        start = time.perf_counter()
        counts = pool.starmap(_aiohttp_share, [(url, s, 100) for s in shares])
        elapsed = time.perf_counter() - start
    return sum(counts), elapsed


# -- the sharded pull --------------------------------------------------------------------


def _sharded_with_units(
    conns: list[tuple[str, str]], workers: int, dicts: bool, units: int, url: str
) -> tuple[int, float]:
    from makini_async.scale import ProcessEngine

    return run_sharded(url, conns, ProcessEngine(workers), as_dicts=dicts, units=units)


def throughput(opts: argparse.Namespace) -> dict[str, Any]:
    from makini_async.scale import ProcessEngine, RayEngine

    conns = tokens(opts.connections)
    contenders: dict[str, Any] = {
        "aiohttp x1": lambda url: run_aiohttp(url, conns, 1),
        "aiohttp x2": lambda url: run_aiohttp(url, conns, 2),
        "dicts, 1 worker": lambda url: run_sharded(url, conns, ProcessEngine(1), as_dicts=True),
        "dicts, 2 workers": lambda url: run_sharded(url, conns, ProcessEngine(2), as_dicts=True),
        "typed, 1 worker": lambda url: run_sharded(url, conns, ProcessEngine(1), as_dicts=False),
        "typed, 2 workers": lambda url: run_sharded(url, conns, ProcessEngine(2), as_dicts=False),
    }
    ray: Any = None
    if not opts.skip_ray:
        import ray as ray_module

        ray = ray_module
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        contenders["dicts, Ray 2 workers"] = lambda url: run_sharded(
            url, conns, RayEngine(workers=2), as_dicts=True
        )
    if opts.units is not None:
        for name in list(contenders):
            if "worker" in name and "Ray" not in name:
                workers = 2 if "2 workers" in name else 1
                dicts = name.startswith("dicts")
                contenders[name] = functools.partial(
                    _sharded_with_units, conns, workers, dicts, opts.units
                )
    if opts.only:
        contenders = {k: v for k, v in contenders.items() if k in opts.only.split(";")}
    # Like Ray, local workers' one-time start-up is not timed: start the fork server now.
    ProcessEngine().warm_up()
    rounds: list[dict[str, float]] = []
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    try:
        with mock_server(records=opts.records, processes=opts.server_processes) as url:
            for number in range(opts.rounds):
                row: dict[str, float] = {}
                for name, run in contenders.items():
                    server0, client0 = group_cpu_seconds(url.pgid), _client_cpu()
                    records, elapsed = run(url)
                    server, client = group_cpu_seconds(url.pgid) - server0, _client_cpu() - client0
                    expected = opts.connections * opts.records
                    if records != expected:
                        raise RuntimeError(f"{name}: {records} records, expected {expected}")
                    row[name] = records / elapsed
                    cpu[name].append((client / records * 1e6, server / records * 1e6))
                    print(
                        f"round {number + 1} {name:<22} {row[name]:>10,.0f} records/s"
                        f"  CPU us/record: client {client / records * 1e6:.2f},"
                        f" server {server / records * 1e6:.2f}"
                    )
                rounds.append(row)
    finally:
        if ray is not None:
            ray.shutdown()
    ratios = {
        "dicts: 2 workers / 1 worker": ("dicts, 2 workers", "dicts, 1 worker"),
        "typed: 2 workers / 1 worker": ("typed, 2 workers", "typed, 1 worker"),
        "aiohttp: 2 processes / 1": ("aiohttp x2", "aiohttp x1"),
        "dicts, 1 worker / aiohttp x1": ("dicts, 1 worker", "aiohttp x1"),
        "dicts, 2 workers / aiohttp x2": ("dicts, 2 workers", "aiohttp x2"),
        "Ray / local processes, 2 workers": ("dicts, Ray 2 workers", "dicts, 2 workers"),
    }
    return {
        "records_per_second": {
            name: median_range([r[name] for r in rounds]) for name in contenders
        },
        # Ray's workers are not this process's children: their CPU is not counted.
        "client_cpu_us_per_record": {
            name: median_range([c for c, _ in cpu[name]])
            for name in contenders
            if "Ray" not in name
        },
        "server_cpu_us_per_record": {
            name: median_range([s for _, s in cpu[name]]) for name in contenders
        },
        "ceilings": _ceilings(cpu, rounds),
        "ratios": {
            label: median_range([r[a] / r[b] for r in rounds])
            for label, (a, b) in ratios.items()
            if a in contenders and b in contenders
        },
    }


def _client_cpu() -> float:
    """CPU seconds of this process, its reaped children and the fork server's.

    Local workers are the fork server's children (or ours, when spawned): a
    finished run's workers are counted in their parent's children's time.
    """
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid is not None:
        total += process_cpu_seconds(pid, children=True)
    return total


def _ceilings(
    cpu: dict[str, list[tuple[float, float]]], rounds: list[dict[str, float]]
) -> dict[str, dict[str, float]]:
    """What 2 workers could reach over 1 on this machine, from the 1-worker run's CPU costs.

    With client and server sharing ``os.cpu_count()`` cores, records/s can
    never pass cores / (client + server CPU per record), however well the
    work spreads; the ceiling is that rate over the measured 1-worker rate,
    per round. A target above it cannot be met on this machine.
    """
    cores = os.cpu_count() or 1
    out: dict[str, dict[str, float]] = {}
    for kind in ("dicts", "typed", "aiohttp"):
        one = "aiohttp x1" if kind == "aiohttp" else f"{kind}, 1 worker"
        if one not in cpu or not cpu[one]:
            continue
        ceilings = [
            cores / ((client + server) / 1e6) / row[one]
            for (client, server), row in zip(cpu[one], rounds, strict=True)
        ]
        out[f"{kind}: 2 over 1, the most {cores} shared cores allow"] = median_range(ceilings)
    return out


# -- the coordinator at 100,000 connections --------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--server-processes", type=int, default=2)
    parser.add_argument("--coordinator-connections", type=int, default=100_000)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument(
        "--engine",
        choices=("processes", "ray"),
        default="processes",
        help="ray with --address: measure a running Ray cluster (benchmarks.scale_cluster)",
    )
    parser.add_argument("--address", default=None, help="the cluster, ray://HOST:10001")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-coordinator", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--units", type=int, default=None, help="units of the sharded pulls")
    parser.add_argument("--only", default="", help="contender names separated by ;")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.rounds, opts.connections, opts.records = 1, 20, 200
        opts.coordinator_connections = 2_000
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.engine == "ray" and opts.address is not None:
        from benchmarks.scale_cluster import main as cluster_main

        return cluster_main(opts)
    doc: dict[str, Any] = {"machine": machine(), "options": vars(opts) | {"out": str(opts.out)}}
    if not opts.skip_throughput:
        doc["throughput"] = throughput(opts)
    if not opts.skip_coordinator:
        doc["coordinator"] = coordinator(opts)
    text = json.dumps(doc, indent=2, default=str)
    print(text)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
