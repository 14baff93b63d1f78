"""Memory sweep: peak RSS of the makini_async pulls against the number of connections.

::

    python -m benchmarks.sweep_memory [--quick] [--rounds N]

Shapes: 100 / 1,000 / 10,000 connections x 100 work orders, and 1,000 x 1,000.
Each point runs the makini_async dict and typed pulls (and the hand-written
aiohttp baseline for reference) in a fresh process and reports its peak RSS
(``ru_maxrss``) next to the RSS before the pull started (interpreter plus
imports). Targets: peak RSS at 10,000 connections within +20% of 1,000; under
150 MiB for 1,000 x 1,000. Writes ``sweep_memory.json`` / ``sweep_memory.md``
to ``benchmarks/results/``.
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

SHAPES = [(100, 100), (1000, 100), (10000, 100), (1000, 1000)]
QUICK_SHAPES = [(10, 100), (100, 100), (1000, 100), (100, 1000)]
KINDS = ["makini-dicts", "makini-typed", "aiohttp"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Memory sweep over the number of connections.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None, help="default 2 (1 with --quick)")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    opts = parser.parse_args(argv)
    rounds = opts.rounds or (1 if opts.quick else 2)
    shapes = QUICK_SHAPES if opts.quick else SHAPES
    client_cpus, server_cpus = plan_cpus(not opts.no_pin)
    processes = len(server_cpus) if server_cpus else 2
    pin = ["--cpus", ",".join(map(str, sorted(client_cpus)))] if client_cpus else []
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    for records in sorted({r for _, r in shapes}):
        with mock_server(records=records, processes=processes, cpus=server_cpus) as url:
            run_contender(
                [
                    "--kind",
                    "aiohttp",
                    "--url",
                    url,
                    "--connections",
                    "10",
                    "--records",
                    str(records),
                    *pin,
                ]
            )  # warm-up
            for conns in [c for c, r in shapes if r == records]:
                args = ["--url", url, "--connections", str(conns), "--records", str(records), *pin]
                runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
                for rnd in range(rounds):
                    for kind in KINDS[rnd % len(KINDS) :] + KINDS[: rnd % len(KINDS)]:
                        runs[kind].append(run_contender(["--kind", kind, *args]))
                for kind in KINDS:
                    ok = [r for r in runs[kind] if "error" not in r]
                    row = {
                        "connections": conns,
                        "records": records,
                        "kind": kind,
                        "runs": len(runs[kind]),
                        "failed_runs": len(runs[kind]) - len(ok),
                        "completeness": min((r["completeness"] for r in runs[kind]), default=0),
                        "peak_rss_mib": median_range([r["peak_rss_mib"] for r in ok]),
                        "rss_before_run_mib": median_range([r["rss_before_run_mib"] for r in ok]),
                        "records_per_s": median_range([r["records_per_s"] for r in ok]),
                    }
                    rows.append(row)
                    print(
                        f"{conns:6d} x {records:5d} {kind:13s} "
                        f"peak {row['peak_rss_mib']['median']:6.1f} MiB "
                        f"(before {row['rss_before_run_mib']['median']:.1f})  "
                        f"{row['records_per_s']['median']:>9.0f} rec/s  "
                        f"complete {row['completeness']:.4f}",
                        flush=True,
                    )
    targets = _targets(rows, shapes)
    doc = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "setup": {
            "rounds": rounds,
            "shapes": shapes,
            "client_cpus": sorted(client_cpus) if client_cpus else None,
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "server_processes": processes,
        },
        "rows": rows,
        "targets": targets,
        "elapsed_s": time.monotonic() - started,
    }
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "sweep_memory.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# Memory sweep",
        "",
        (
            f"Peak RSS (``ru_maxrss``) of a fresh contender process; {rounds} round(s), median "
            "(min-max). 'before' is the RSS after imports, before the pull."
        ),
        "",
        (
            "| connections x records | contender | peak RSS MiB | before MiB | records/s "
            "| completeness |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        p = r["peak_rss_mib"]
        lines.append(
            f"| {r['connections']:,} x {r['records']:,} | {r['kind']} | {p['median']:.1f} "
            f"({p['min']:.1f}-{p['max']:.1f}) | {r['rss_before_run_mib']['median']:.1f} | "
            f"{r['records_per_s']['median']:.0f} | {r['completeness']:.4f} |"
        )
    lines += ["", "## Targets", "", "| target | contender | value | met |", "|---|---|---|---|"]
    for t in targets:
        lines.append(
            f"| {t['description']} | {t['kind']} | {t['value']} | {'yes' if t['met'] else 'NO'} |"
        )
    (opts.out / "sweep_memory.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {opts.out / 'sweep_memory.md'} in {doc['elapsed_s']:.0f} s")
    return 0


def _targets(rows: list[dict[str, Any]], shapes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    def peak(kind: str, conns: int, records: int) -> float | None:
        for r in rows:
            if (r["kind"], r["connections"], r["records"]) == (kind, conns, records):
                return float(r["peak_rss_mib"]["median"])
        return None

    (_, _), (mid_c, mid_r), (big_c, big_r), (sq_c, sq_r) = shapes
    out = []
    for kind in ("makini-dicts", "makini-typed"):
        mid, big, square = (
            peak(kind, mid_c, mid_r),
            peak(kind, big_c, big_r),
            peak(kind, sq_c, sq_r),
        )
        if mid and big:
            growth = big / mid - 1
            out.append(
                {
                    "kind": kind,
                    "met": growth <= 0.20,
                    "description": f"peak RSS at {big_c:,} connections within +20% of {mid_c:,}",
                    "value": f"{big:.1f} vs {mid:.1f} MiB ({growth:+.0%})",
                }
            )
        if square:
            out.append(
                {
                    "kind": kind,
                    "met": square < 150,
                    "description": f"peak RSS under 150 MiB for {sq_c:,} x {sq_r:,}",
                    "value": f"{square:.1f} MiB",
                }
            )
    return out


if __name__ == "__main__":
    sys.exit(main())
