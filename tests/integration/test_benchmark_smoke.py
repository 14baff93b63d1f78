"""Smoke test of the benchmark runner: tiny sizes, every contender, complete results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.contenders import KINDS

ROOT = Path(__file__).resolve().parents[2]
# Every contender the runner knows must run and deliver everything.
CONTENDERS = set(KINDS)

pytest.importorskip("httpx")


def test_runner_reports_complete_results_for_every_contender(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--rounds",
            "1",
            "--scenarios",
            "A",
            "--connections",
            "5",
            "--records",
            "50",
            "--no-warmup",
            "--no-chart",
            "--timeout",
            "60",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").is_file()
    rounds = doc["raw"]["A"]
    assert len(rounds) == 1
    results = rounds[0]
    assert set(results) == CONTENDERS
    for kind, res in results.items():
        assert "error" not in res, (kind, res.get("error"))
        assert res["expected"] == 250, kind
        assert res["records"] == 250, (kind, res)
        assert res["completeness"] == 1.0, (kind, res)
        assert res["duplicates"] == 0, (kind, res)
        assert res["unexpected"] == 0, (kind, res)
        assert res["requests"] >= 5, (kind, res)
        assert res["peak_rss_mib"] > 0, kind
        assert res["p50_page_ms"] is not None, kind
    summary = doc["scenarios"]["A"]["contenders"]
    assert summary["aiohttp"]["ratio_vs_aiohttp"]["median"] == pytest.approx(1.0)


def test_the_tally_counts_each_record_once() -> None:
    from benchmarks._baselines import Tally

    tally = Tally(3, 10, "work-orders")
    tally.mark_page("c00001", [{"id": "wo_000000"}, {"id": "wo_000009"}, {"id": "wo_000009"}])
    tally.mark("c00002", "wo_000009")
    tally.mark("c00002", "wo_000010")  # out of range: not one of this connection's records
    assert tally.distinct == 3
    assert tally.received == 5
    assert tally.duplicates == 1
    assert tally.unexpected == 1
    assert tally.bits[10] == tally.bits[19] == tally.bits[29] == 1


def test_overhead_benchmark_counts_every_record_of_every_way(tmp_path: Path) -> None:
    from benchmarks import overhead

    out = tmp_path / "overhead.json"
    argv = ["--chain", "2", "--pages", "6", "--rounds", "1", "--shape", "light", "--out", str(out)]
    assert overhead.main(argv) == 0
    doc = json.loads(out.read_text())
    # measure() raises unless each way delivered pages x 200 records.
    assert set(doc["us_per_page"]) == {"floor", "pages", "records", "typed pages"}
    assert doc["records_per_page"] == 200
    assert doc["page_bytes"] > 0


def test_http_cost_reads_cachegrind_totals_and_divides_by_the_pages_between() -> None:
    from benchmarks import http_cost

    text = (
        "desc: I1 cache: 32768 B, 64 B, 8-way associative\n"
        "cmd: python -m benchmarks.contenders\n"
        "events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw\n"
        "fl=x.c\nfn=f\n1 5 1 0 2 1 0 1 1 0\n"
        "summary: 1000 20 3 400 30 4 200 10 2\n"
    )
    assert http_cost.totals(text) == {"Ir": 1000, "I1mr": 20, "D1m": 40}
    with pytest.raises(RuntimeError, match="no totals"):
        http_cost.totals("events: Ir\n", "aiohttp")
    runs = {
        "aiohttp": [{"Ir": 1000, "I1mr": 10, "D1m": 100}, {"Ir": 3000, "I1mr": 30, "D1m": 300}],
        "makini": [{"Ir": 1500, "I1mr": 20, "D1m": 100}, {"Ir": 3700, "I1mr": 60, "D1m": 350}],
    }
    each, over = http_cost.per_page(runs, 10, "aiohttp")
    assert each["aiohttp"] == {"Ir": 200, "I1mr": 2, "D1m": 20}
    assert each["makini"] == {"Ir": 220, "I1mr": 4, "D1m": 25}
    assert over["makini"] == pytest.approx({"Ir": 10.0, "I1mr": 100.0, "D1m": 25.0})
    assert over["aiohttp"] == {"Ir": 0.0, "I1mr": 0.0, "D1m": 0.0}


def test_overhead_benchmark_runs_the_pull_tuned_and_leaves_the_process_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib
    import gc

    from benchmarks import overhead

    entered: list[int] = []
    real = overhead.tuned

    @contextlib.contextmanager
    def counting() -> Any:
        with real():
            entered.append(gc.get_threshold()[0])
            yield

    monkeypatch.setattr(overhead, "tuned", counting)
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    out = tmp_path / "overhead-tuned.json"
    argv = ["--pages", "4", "--rounds", "1", "--shape", "light", "--tuned", "--out", str(out)]
    assert overhead.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["options"]["tuned"] is True
    assert doc["added_percent"]["floor"] == 0.0
    floor = doc["us_per_page"]["floor"]
    for way in ("pages", "records", "typed pages"):
        added = doc["us_per_page"][way] - floor
        assert doc["added_percent"][way] == pytest.approx(100 * added / floor)
    # Each way of the pull (not the floor) ran inside tuned(), with its raised threshold.
    assert len(entered) == 3
    assert all(threshold > before[0] for threshold in entered)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
