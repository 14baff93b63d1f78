"""Page-size sweep: throughput and peak RSS against the page size, per entity.

::

    python -m benchmarks.sweep_page_size [--quick] [--rounds N]

Work orders at page sizes 50 / 100 / 200 and assets at 100 / 250 / 500
(200 and 500 are the contract's maxima). Each point runs the makini_async
dict and typed pulls and the hand-written aiohttp baseline, each in a fresh
process (client pinned to one core, the mock server to the others), and
reports median records/s and peak RSS. Writes ``sweep_page_size.json`` and
``sweep_page_size.md`` (and ``sweep_page_size.png`` with matplotlib) to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import RESULTS, machine, median_range, mock_server, plan_cpus, run_contender

SIZES = {"work-orders": [50, 100, 200], "assets": [100, 250, 500]}
KINDS = ["makini-dicts", "makini-typed", "aiohttp"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Page-size sweep.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None, help="default 2 (1 with --quick)")
    parser.add_argument("--connections", type=int, default=None, help="default 100 (quick 20)")
    parser.add_argument("--records", type=int, default=None, help="default 1000 (quick 500)")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    opts = parser.parse_args(argv)
    rounds = opts.rounds or (1 if opts.quick else 2)
    conns = opts.connections or (20 if opts.quick else 100)
    recs = opts.records or (500 if opts.quick else 1000)
    client_cpus, server_cpus = plan_cpus(not opts.no_pin)
    processes = len(server_cpus) if server_cpus else 2
    base = ["--connections", str(conns), "--records", str(recs)]
    if client_cpus:
        base += ["--cpus", ",".join(map(str, sorted(client_cpus)))]
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    with mock_server(records=recs, processes=processes, cpus=server_cpus) as url:
        run_contender(["--kind", "aiohttp", "--url", url, *base])  # warm-up
        for entity, sizes in SIZES.items():
            for size in sizes:
                runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
                for rnd in range(rounds):
                    order = KINDS[rnd % len(KINDS) :] + KINDS[: rnd % len(KINDS)]
                    for kind in order:
                        res = run_contender(
                            [
                                "--kind",
                                kind,
                                "--url",
                                url,
                                *base,
                                "--entity",
                                entity,
                                "--page-size",
                                str(size),
                            ]
                        )
                        runs[kind].append(res)
                for kind in KINDS:
                    ok = [r for r in runs[kind] if "error" not in r]
                    row = {
                        "entity": entity,
                        "page_size": size,
                        "kind": kind,
                        "runs": len(runs[kind]),
                        "failed_runs": len(runs[kind]) - len(ok),
                        "completeness": min((r["completeness"] for r in runs[kind]), default=0),
                        "records_per_s": median_range([r["records_per_s"] for r in ok]),
                        "peak_rss_mib": median_range([r["peak_rss_mib"] for r in ok]),
                        "p50_page_ms": median_range([r["p50_page_ms"] for r in ok]),
                        "cpu_s_per_10k_records": median_range(
                            [r["cpu_s_per_10k_records"] for r in ok]
                        ),
                    }
                    rows.append(row)
                    print(
                        f"{entity:12s} {size:4d} {kind:13s} "
                        f"{row['records_per_s']['median']:>9.0f} rec/s  "
                        f"rss {row['peak_rss_mib']['median']:.1f} MiB  "
                        f"complete {row['completeness']:.4f}",
                        flush=True,
                    )
    doc = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "setup": {
            "connections": conns,
            "records": recs,
            "rounds": rounds,
            "client_cpus": sorted(client_cpus) if client_cpus else None,
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "server_processes": processes,
        },
        "rows": rows,
        "elapsed_s": time.monotonic() - started,
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "sweep_page_size.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# Page-size sweep",
        "",
        (
            f"{conns} connections x {recs} records per entity; {rounds} round(s); "
            f"median (min-max). Client on CPU {doc['setup']['client_cpus']}, mock server "
            f"({processes} process(es)) on {doc['setup']['server_cpus']}."
        ),
        "",
        (
            "| entity | page size | contender | records/s | peak RSS MiB | p50 page ms "
            "| CPU s / 10k rec | completeness |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {r['entity']} | {r['page_size']} | {r['kind']} | "
        f"{r['records_per_s']['median']:.0f} ({r['records_per_s']['min']:.0f}-"
        f"{r['records_per_s']['max']:.0f}) | {r['peak_rss_mib']['median']:.1f} | "
        f"{r['p50_page_ms']['median']:.1f} | {r['cpu_s_per_10k_records']['median']:.3f} | "
        f"{r['completeness']:.4f} |"
        for r in rows
    )
    (opts.out / "sweep_page_size.md").write_text("\n".join(lines) + "\n")
    _chart(opts.out / "sweep_page_size.png", rows)
    print(f"wrote {opts.out / 'sweep_page_size.md'} in {doc['elapsed_s']:.0f} s")
    return 0


def _chart(path: Path, rows: list[dict[str, Any]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(2, len(SIZES), figsize=(9, 7), squeeze=False)
    for col, entity in enumerate(SIZES):
        for kind in KINDS:
            pts = [r for r in rows if r["entity"] == entity and r["kind"] == kind]
            xs = [r["page_size"] for r in pts]
            axes[0][col].plot(xs, [r["records_per_s"]["median"] for r in pts], "o-", label=kind)
            axes[1][col].plot(xs, [r["peak_rss_mib"]["median"] for r in pts], "o-", label=kind)
        axes[0][col].set_title(entity)
        axes[0][col].set_ylabel("records/s")
        axes[1][col].set_ylabel("peak RSS MiB")
        axes[1][col].set_xlabel("page size")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
