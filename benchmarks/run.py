"""The benchmark runner: every contender, every scenario, fresh processes, interleaved rounds.

::

    python -m benchmarks.run                 # full size, 3 rounds
    python -m benchmarks.run --quick         # small sizes, 1 round
    python -m benchmarks.run --rounds 5 --scenarios A,C

The mock server runs as ``python -m makini_async.testing`` in its own
process(es), restarted per scenario. Each contender runs in a fresh
``python -m benchmarks.contenders`` process per round; the order of the
contenders rotates from round to round. By default (2+ cores) the contender
is pinned to one core and the server processes to the others.

Writes ``results.json``, ``results.md`` and (if matplotlib is installed)
``throughput.png`` to ``benchmarks/results/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    RESULTS,
    cpu_count,
    machine,
    median_range,
    mock_server,
    plan_cpus,
    run_contender,
)
from benchmarks._run_report import write_chart, write_markdown
from benchmarks.contenders import KINDS

BASELINE = "aiohttp"

#: name -> (title, connections, records, server options, quick connections, quick records)
SCENARIOS: dict[str, dict[str, Any]] = {
    "A": {
        "title": "A: 1,000 connections x 200 work orders",
        "connections": 1000,
        "records": 200,
        "quick": (100, 200),
        "server": {},
    },
    "B": {
        "title": "B: 10 connections x 20,000 work orders",
        "connections": 10,
        "records": 20000,
        "quick": (4, 2000),
        "server": {},
    },
    "C": {
        "title": "C: 100 connections x 1,000 work orders, 50 ms server latency per page",
        "connections": 100,
        "records": 1000,
        "quick": (20, 1000),
        "server": {"latency": 0.05},
    },
    "R": {
        "title": "R: A with realistic work orders (about 1.2 KB of JSON each, SAP/Maximo raw)",
        "connections": 1000,
        "records": 200,
        "quick": (100, 200),
        "server": {},
        "shape": "realistic",
    },
    "RL": {
        "title": "RL: 100 connections x 2,000 realistic work orders (10 pages a chain)",
        "connections": 100,
        "records": 2000,
        "quick": (20, 1000),
        "server": {},
        "shape": "realistic",
    },
    "RP": {
        "title": "RP: 1,000 connections x 100 realistic purchase orders (about 2.4 KB each)",
        "connections": 1000,
        "records": 100,
        "quick": (100, 100),
        "server": {},
        "shape": "realistic",
        "entity": "purchase-orders",
    },
    "D": {
        "title": "D: fault mix (5% HTTP 500, 2% 429) on A's shape",
        "connections": 1000,
        "records": 200,
        "quick": (100, 200),
        "server": {"error_500": 0.05, "rate_limit_429": 0.02},
        "fast_retry": True,
    },
}

#: The realistic scenarios the per-core targets are judged on, and how their chains look.
_REALISTIC = (
    ("R", "realistic records, one page a chain"),
    ("RL", "realistic records, 10 pages a chain"),
)
#: (name, contender, target, what) of each per-core target, on each realistic scenario.
_PER_CORE = (
    ("dicts_vs_aiohttp", "makini-dicts-pages", 0.9, "dicts, pages, >= 0.90x hand-written aiohttp"),
    ("dict_records_vs_aiohttp", "makini-dicts", 0.85, "plain-dict pull, per record, >= 0.85x"),
    ("tuned_vs_aiohttp", "makini-dicts-tuned", 1.05, "dicts per record, tuned (the CLI), >= 1.05x"),
    ("typed_vs_aiohttp", "makini-typed", 0.6, "typed pull >= 0.60x"),
    ("typed_tuned_vs_aiohttp", "makini-typed-tuned", 0.65, "typed pull, tuned, >= 0.65x"),
)

#: (name, numerator, denominator, scenario, target, description)
TARGETS = [
    (
        "dicts_vs_aiohttp",
        "makini-dicts-pages",
        "aiohttp",
        "A",
        0.90,
        "plain-dict pull >= 0.90x hand-written aiohttp (records/s), pages like the baseline",
    ),
    (
        "dict_records_vs_aiohttp",
        "makini-dicts",
        "aiohttp",
        "A",
        0.90,
        "(per record) plain-dict pull, `async for item in pull`, >= 0.90x",
    ),
    (
        "typed_vs_aiohttp",
        "makini-typed",
        "aiohttp",
        "A",
        0.60,
        "typed pull >= 0.60x hand-written aiohttp (records/s)",
    ),
    *(
        (f"{key}_{scen}", kind, "aiohttp", scen, target, f"({shape}) {what}")
        for scen, shape in _REALISTIC
        for key, kind, target, what in _PER_CORE
    ),
    (
        "dicts_vs_httpx",
        "makini-dicts",
        "httpx",
        "A",
        5.0,
        ">= 5x the httpx baseline at 1,000 connections",
    ),
    (
        "dicts_vs_naive_C",
        "makini-dicts",
        "naive",
        "C",
        50.0,
        ">= 50x the naive sequential loop in scenario C",
    ),
    (
        "typed_vs_naive_C",
        "makini-typed",
        "naive",
        "C",
        50.0,
        "(typed) >= 50x the naive sequential loop in scenario C",
    ),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the makini_async benchmark suite.")
    parser.add_argument("--quick", action="store_true", help="small sizes (and 1 round)")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument(
        "--scenarios", default="A,B,C,D,R,RL,RP", help="comma-separated: A,B,C,D,R,RL,RP"
    )
    parser.add_argument("--contenders", default=",".join(KINDS))
    parser.add_argument("--connections", type=int, default=None, help="override every scenario")
    parser.add_argument("--records", type=int, default=None, help="override every scenario")
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    parser.add_argument(
        "--server-processes",
        type=int,
        default=None,
        help="mock server processes on one port (default: one per server core)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin client/server cores")
    parser.add_argument(
        "--retry-after",
        type=float,
        default=0.0,
        help="mock 429 Retry-After seconds (the mock sends ceil(x))",
    )
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--timeout", type=float, default=600.0, help="per contender run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def _ratio_stats(rounds: list[dict[str, dict[str, Any]]], num: str, den: str) -> dict[str, Any]:
    ratios = []
    for entry in rounds:
        a, b = entry.get(num), entry.get(den)
        if a and b and a.get("records_per_s") and b.get("records_per_s"):
            ratios.append(a["records_per_s"] / b["records_per_s"])
    return {**median_range(ratios), "values": ratios}


def summarize(
    scenario: dict[str, Any], rounds: list[dict[str, dict[str, Any]]], kinds: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in kinds:
        runs = [r[kind] for r in rounds if kind in r]
        ok = [r for r in runs if "error" not in r]

        def stat(key: str, runs: list[dict[str, Any]] = ok) -> dict[str, float]:
            return median_range([r[key] for r in runs if r.get(key) is not None])

        out[kind] = {
            "runs": len(runs),
            "failed_runs": len(runs) - len(ok),
            "errors_text": [r["error"] for r in runs if "error" in r],
            "completeness": stat("completeness", runs),
            "duplicates": max((r.get("duplicates", 0) for r in ok), default=0),
            "records_per_s": stat("records_per_s"),
            "requests_per_s": stat("requests_per_s"),
            "seconds": stat("seconds"),
            "p50_page_ms": stat("p50_page_ms"),
            "p99_page_ms": stat("p99_page_ms"),
            "peak_rss_mib": stat("peak_rss_mib"),
            "cpu_s_per_10k_records": stat("cpu_s_per_10k_records"),
            "http_errors": stat("errors"),
            "retries": stat("retries") if any("retries" in r for r in ok) else None,
            "ratio_vs_aiohttp": _ratio_stats(rounds, kind, BASELINE),
        }
    return {"title": scenario["title"], "contenders": out}


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    rounds = opts.rounds or (1 if opts.quick else 3)
    kinds = [k for k in opts.contenders.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        print(f"unknown contenders: {sorted(unknown)}", file=sys.stderr)
        return 2
    names = [s.strip().upper() for s in opts.scenarios.split(",") if s.strip()]
    client_cpus, server_cpus = plan_cpus(not opts.no_pin)
    processes = opts.server_processes or (len(server_cpus) if server_cpus else min(2, cpu_count()))
    cpus_arg = ",".join(str(c) for c in sorted(client_cpus)) if client_cpus else ""
    opts.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    doc: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python -m benchmarks.run "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "setup": {
            "rounds": rounds,
            "quick": opts.quick,
            "client_cpus": sorted(client_cpus) if client_cpus else None,
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "server_processes": processes,
            "concurrency": opts.concurrency,
            "warmup": not opts.no_warmup,
            "retry_after_header": max(0, -int(-opts.retry_after // 1)),
        },
        "config": {},
        "scenarios": {},
        "raw": {},
        "targets": [],
    }
    for name in names:
        base = SCENARIOS[name]
        conns, recs = base["quick"] if opts.quick else (base["connections"], base["records"])
        conns = opts.connections or conns
        recs = opts.records or recs
        cfg = {"connections": conns, "records": recs, "server": base["server"]}
        doc["config"][name] = cfg
        server_opts = dict(base["server"])
        server_opts["retry_after"] = opts.retry_after
        args = [
            "--url",
            "",
            "--connections",
            str(conns),
            "--records",
            str(recs),
            "--concurrency",
            str(opts.concurrency),
        ]
        if base.get("entity"):
            args += ["--entity", base["entity"]]
        if cpus_arg:
            args += ["--cpus", cpus_arg]
        per_round: list[dict[str, dict[str, Any]]] = []
        print(f"== {base['title']} ({conns} x {recs})", flush=True)
        shape = ["--shape", base["shape"]] if base.get("shape") else []
        with mock_server(
            records=recs, processes=processes, cpus=server_cpus, extra=shape, **server_opts
        ) as url:
            args[1] = url
            if not opts.no_warmup:
                run_contender(["--kind", BASELINE, *args], timeout=opts.timeout)
            for rnd in range(rounds):
                order = kinds[rnd % len(kinds) :] + kinds[: rnd % len(kinds)]
                results: dict[str, dict[str, Any]] = {}
                for kind in order:
                    extra = ["--fast-retry"] if base.get("fast_retry") else []
                    res = run_contender(["--kind", kind, *args, *extra], timeout=opts.timeout)
                    results[kind] = res
                    if "error" in res:
                        print(
                            f"  round {rnd + 1} {kind:13s} FAILED: {res['error'][:300]}", flush=True
                        )
                    else:
                        print(
                            f"  round {rnd + 1} {kind:13s} {res['records_per_s']:>10.0f} rec/s "
                            f"{res['seconds']:7.2f} s  complete {res['completeness']:.4f}  "
                            f"rss {res['peak_rss_mib']:.0f} MiB",
                            flush=True,
                        )
                per_round.append(results)
        doc["raw"][name] = per_round
        doc["scenarios"][name] = summarize(base, per_round, kinds)
    for key, num, den, scen, target, desc in TARGETS:
        if scen not in doc["raw"]:
            continue
        if num not in kinds or den not in kinds:
            continue
        ratio = _ratio_stats(doc["raw"][scen], num, den)
        met = None if ratio["median"] != ratio["median"] else ratio["median"] >= target
        doc["targets"].append(
            {
                "name": key,
                "scenario": scen,
                "target": target,
                "description": desc,
                "ratio": ratio,
                "met": met,
            }
        )
    doc["elapsed_s"] = time.monotonic() - started
    (opts.out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    write_markdown(opts.out / "results.md", doc)
    if not opts.no_chart and not write_chart(opts.out / "throughput.png", doc):
        print("matplotlib not installed: no chart (pip install 'makini-async[plot]')")
    print(f"wrote {opts.out / 'results.md'} in {doc['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
