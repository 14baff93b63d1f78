"""What a pull costs per page over real HTTP, counted where time cannot be trusted.

On a shared virtual machine the CPU time of the same work moves by 2x within a
second, so a few percent between the pull and a hand-written loop do not show
in records/s. This runs each contender of ``benchmarks.run`` (a fresh process,
real HTTP to the mock server on another core) under valgrind's cachegrind, at
two sizes, and divides the difference by the pages between them: start-up and
imports fall out. Per page it reports the user-space instructions and the
misses of cachegrind's simulated first-level caches (instructions and data),
and each as a percentage over the hand-written aiohttp loop.

::

    python -m benchmarks.http_cost                 # RL: 100 chains of 5 and 10 pages
    python -m benchmarks.http_cost --scenario R    # 500 and 1,000 one-page chains

Counts leave out what the kernel does and cache levels past the first, and the
event loop's batching differs a little from run to run: two runs of the same
code agreed within 1% of instructions. Takes 8-10 minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    RESULTS,
    cachegrind_events,
    machine,
    mock_server,
    plan_cpus,
    under_cachegrind,
)

#: scenario -> (small, large) as (connections, records per connection); 200 records a page
SIZES: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "RL": ((100, 1000), (100, 2000)),
    "R": ((500, 200), (1000, 200)),
}
PAGE = 200
EVENTS = {"Ir": "instructions", "I1mr": "I1 misses", "D1m": "D1 misses"}


def counts(kind: str, url: str, connections: int, records: int, cpus: str) -> dict[str, int]:
    """One contender run under cachegrind: its event totals (``D1m`` = read + write misses)."""
    args = ["-m", "benchmarks.contenders", "--kind", kind, "--url", url]
    args += ["--connections", str(connections), "--records", str(records)]
    args += ["--concurrency", "100", *(["--cpus", cpus] if cpus else [])]
    events, stdout = under_cachegrind(args, cache_sim=True, what=kind)
    result = json.loads(stdout.strip().splitlines()[-1])
    if result.get("completeness") != 1.0:
        raise RuntimeError(f"{kind}: incomplete pull ({result.get('completeness')})")
    return _three(events)


def totals(text: str, kind: str = "run") -> dict[str, int]:
    """The event totals of a cachegrind output file (``D1m``: read and write misses)."""
    return _three(cachegrind_events(text, kind))


def _three(got: dict[str, int]) -> dict[str, int]:
    return {"Ir": got["Ir"], "I1mr": got["I1mr"], "D1m": got["D1mr"] + got["D1mw"]}


def per_page(
    runs: dict[str, list[dict[str, int]]], pages: int, baseline: str
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Each contender's counts per page (large run less small, over the pages between them)
    and, per event, the percentage over the baseline's."""
    each = {
        kind: {ev: (big[ev] - small[ev]) / pages for ev in EVENTS}
        for kind, (small, big) in runs.items()
    }
    base = each[baseline]
    over = {
        kind: {ev: 100 * (v[ev] - base[ev]) / base[ev] for ev in EVENTS} for kind, v in each.items()
    }
    return each, over


def measure(opts: argparse.Namespace) -> dict[str, Any]:
    (c1, r1), (c2, r2) = SIZES[opts.scenario]
    pages = (c2 * r2 - c1 * r1) // PAGE
    client, server = plan_cpus(True)
    cpus = ",".join(map(str, sorted(client))) if client else ""
    runs: dict[str, list[dict[str, int]]] = {kind: [] for kind in opts.contenders}
    for connections, records in ((c1, r1), (c2, r2)):
        with mock_server(records=records, cpus=server, extra=["--shape", "realistic"]) as url:
            for kind in opts.contenders:
                runs[kind].append(counts(kind, url, connections, records, cpus))
                print(f"  {kind} {connections} x {records}: {runs[kind][-1]}", flush=True)
    each, over = per_page(runs, pages, opts.baseline)
    return {
        "machine": machine(),
        "options": {**vars(opts), "out": str(opts.out) if opts.out else None},
        "sizes": {"small": [c1, r1], "large": [c2, r2], "pages_between": pages},
        "per_page": each,
        "percent_over_baseline": over,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SIZES), default="RL")
    parser.add_argument(
        "--contenders",
        type=lambda s: s.split(","),
        default=["aiohttp", "makini-dicts-pages", "makini-dicts"],
    )
    parser.add_argument("--baseline", default="aiohttp")
    parser.add_argument("--out", type=Path, default=None)
    opts = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)")
        return 2
    if opts.baseline not in opts.contenders:
        opts.contenders.insert(0, opts.baseline)
    result = measure(opts)
    print(f"{opts.scenario}: per page over {result['sizes']['pages_between']} pages")
    for kind, values in result["per_page"].items():
        over = result["percent_over_baseline"][kind]
        cells = "  ".join(
            f"{label} {values[ev] / 1e3:8.1f} k ({over[ev]:+5.1f}%)" for ev, label in EVENTS.items()
        )
        print(f"  {kind:<20} {cells}")
    out = opts.out or RESULTS / f"http_cost-{opts.scenario}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
