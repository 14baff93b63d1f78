"""``benchmarks.scale --engine ray --address ray://HOST:PORT``: a running Ray cluster, measured.

1. **records/s per node**: the same pull (``--connections`` x ``--records``
   work orders into a counting sink) pinned to each node in turn
   (``NodeAffinitySchedulingStrategy``, as many workers as the node has CPUs),
   then spread over every node (as many workers as the cluster has CPUs).
2. **the coordinator's cost per connection** at ``--coordinator-connections``
   (100,000) with the Ray engine, next to the same pass with local processes.

The driver connects through Ray Client (set ``RAY_AUTH_TOKEN`` for a cluster
with token authentication); this package's ``benchmarks`` folder is shipped
to the workers as a ``py_modules`` entry, for the counting sink.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from benchmarks._common import machine, median_range, mock_server
from benchmarks._scale_common import coordinator, run_sharded, tokens


def _nodes(ray: Any) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= 1]


def throughput(opts: argparse.Namespace, ray: Any) -> dict[str, Any]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from makini_async.scale import RayEngine

    nodes = _nodes(ray)
    conns = tokens(opts.connections)
    contenders: dict[str, Any] = {}
    for number, node in enumerate(nodes):
        pin = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        cpus = int(node["Resources"]["CPU"])
        contenders[f"node {number} ({cpus} CPU)"] = lambda url, cpus=cpus, pin=pin: run_sharded(
            url,
            conns,
            RayEngine(workers=cpus, task_options={"scheduling_strategy": pin}),
            as_dicts=True,
        )
    total = sum(int(n["Resources"]["CPU"]) for n in nodes)
    contenders[f"all {len(nodes)} nodes"] = lambda url: run_sharded(
        url, conns, RayEngine(workers=total), as_dicts=True
    )
    rounds: list[dict[str, float]] = []
    with mock_server(records=opts.records, processes=opts.server_processes) as url:
        for number in range(opts.rounds):
            row = {}
            for name, run in contenders.items():
                records, elapsed = run(url)
                if records != opts.connections * opts.records:
                    raise RuntimeError(f"{name}: {records} records")
                row[name] = records / elapsed
                print(f"round {number + 1} {name:<18} {row[name]:>10,.0f} records/s")
            rounds.append(row)
    every = f"all {len(nodes)} nodes"
    return {
        "nodes": [{"node": n["NodeID"][:12], "cpus": n["Resources"]["CPU"]} for n in nodes],
        "records_per_second": {k: median_range([r[k] for r in rounds]) for k in contenders},
        "all nodes, records/s per node": median_range([r[every] / len(nodes) for r in rounds]),
        "all nodes / node 0": median_range([r[every] / r[next(iter(contenders))] for r in rounds]),
    }


def main(opts: argparse.Namespace) -> int:
    import ray

    from makini_async.scale import RayEngine

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(
            opts.address,
            runtime_env={"py_modules": [str(Path(__file__).resolve().parent)]},
            log_to_driver=False,
        )
    doc: dict[str, Any] = {"machine": machine(), "address": opts.address.split("@")[-1]}
    try:
        if not opts.skip_throughput:
            doc["throughput"] = throughput(opts, ray)
        if not opts.skip_coordinator:
            total = sum(int(n["Resources"]["CPU"]) for n in _nodes(ray))
            doc["coordinator, Ray engine"] = coordinator(opts, RayEngine(workers=total))
    finally:
        ray.shutdown()
    if not opts.skip_coordinator:
        doc["coordinator, local processes"] = coordinator(opts)
    text = json.dumps(doc, indent=2, default=str)
    print(text)
    out = opts.out if opts.out.name != "scale.json" else opts.out.with_name("scale_cluster.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0
