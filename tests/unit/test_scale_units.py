"""Units of a sharded pull and what crosses process boundaries: sizes, pickling, secrecy."""

from __future__ import annotations

import itertools
import pickle

from makini_async.bulk import ChainReport, Outcome
from makini_async.entities import Entity
from makini_async.errors import CircuitOpenError, MakiniError, ReauthorizationRequired
from makini_async.scale import Hidden, UnitJob, UnitResult
from makini_async.scale._process import _charged
from makini_async.scale._units import (
    COUNTERS,
    DEFAULT_BUCKETS,
    WorkerSettings,
    bucket_of,
    chain_row,
    default_units,
    plan_buckets,
    plan_units,
    portable_error,
)

TOKENS = [(f"plant-{i}", f"tok_secret_unit_{i:04d}") for i in range(10)]


def test_a_connections_bucket_depends_on_its_name_alone() -> None:
    names = [f"plant-{i:04d}" for i in range(300)]
    buckets = [bucket_of(n, DEFAULT_BUCKETS) for n in names]
    # Fixed values: the same in every process and release (never Python's hash()).
    assert buckets[:4] == [bucket_of(n, DEFAULT_BUCKETS) for n in names[:4]]
    assert bucket_of("plant-0000", 256) == 168
    order, groups = plan_buckets(names, DEFAULT_BUCKETS)
    assert sorted(order) == list(range(300))
    # One group per non-empty bucket, in bucket order, each a slice of ``order``.
    assert [g[0] for g in groups] == sorted(set(buckets))
    for bucket, start, stop in groups:
        assert {buckets[order[j]] for j in range(start, stop)} == {bucket}
    # Another connection list: every common connection keeps its bucket.
    more = [*names[:100], "plant-new", *names[100:]]
    order2, groups2 = plan_buckets(more, DEFAULT_BUCKETS)
    where = {more[order2[j]]: b for b, start, stop in groups2 for j in range(start, stop)}
    assert all(where[n] == b for n, b in zip(names, buckets, strict=True))


def test_units_are_runs_of_whole_buckets_of_near_equal_size() -> None:
    names = [f"plant-{i:04d}" for i in range(300)]
    _, groups = plan_buckets(names, DEFAULT_BUCKETS)
    for count in (1, 2, 3, 16):
        units = plan_units(groups, count)
        assert len(units) == count
        assert units[0][0] == 0
        assert units[-1][1] == len(groups)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(units))
        sizes = [groups[stop - 1][2] - groups[first][1] for first, stop in units]
        assert max(sizes) - min(sizes) <= 6  # whole buckets of one or a few connections
    # Never more units than non-empty buckets, and an empty pull has none.
    assert len(plan_units(groups, 1000)) == len(groups)
    assert plan_units([], 4) == []


def test_default_units_outnumber_workers_yet_fill_a_pool() -> None:
    assert default_units(100_000, 2) == 100  # at most 1,000 connections a unit
    assert default_units(300, 2) == 16  # eight units a worker
    assert default_units(300, 2, min_size=50) == 6  # 50 connections keep a pool busy
    assert default_units(10, 4, min_size=50) == 4  # but no worker left without a unit
    assert default_units(1, 8) == 1


def test_jobs_pickle_and_never_show_a_token() -> None:
    settings = WorkerSettings(
        entities=("assets",), sink=Hidden("postgresql://u:pw_SECRET_1234@h/d")
    )
    job = UnitJob(3, Hidden(tuple(TOKENS)), settings)
    shown = repr(job) + str(job.connections) + repr(settings)
    assert "tok_secret" not in shown
    assert "pw_SECRET" not in shown
    again = pickle.loads(pickle.dumps(job))  # noqa: S301 - bytes this test made
    assert again.connections.value == tuple(TOKENS)
    assert again.settings.sink.value == settings.sink.value


def test_rows_and_results_pickle_with_their_errors() -> None:
    chain = ChainReport(connection="plant-1", entity=Entity.ASSETS, outcome=Outcome.FAILED)
    chain.error = ReauthorizationRequired("reconnect", connection="plant-1", request_id="req_1")
    chain.records = 7
    chain.duplicates = 3
    row = chain_row(2, chain)
    # Every counter crosses to the coordinator, de-duplication's included.
    assert row[2 + COUNTERS.index("duplicates")] == 3
    result = pickle.loads(pickle.dumps(UnitResult(1, "a1", 42, [row])))  # noqa: S301
    error = result.rows[0][-1]
    assert isinstance(error, ReauthorizationRequired)
    assert (error.connection, error.request_id) == ("plant-1", "req_1")
    assert result.rows[0][:3] == (2, "failed", 7)
    # A running chain sends no error; any other exception becomes a typed MakiniError.
    assert chain_row(0, ChainReport(connection="x", entity=Entity.ASSETS))[-1] is None
    converted = portable_error(RuntimeError("disk on fire"))
    assert isinstance(converted, MakiniError)
    assert str(converted) == "RuntimeError: disk on fire"
    assert isinstance(
        portable_error(CircuitOpenError("open", retry_at_monotonic=1.0)), CircuitOpenError
    )


def test_after_a_broken_pool_only_the_dead_workers_units_are_charged() -> None:
    settings = WorkerSettings(entities=("assets",), sink=Hidden("jsonl:out"))
    jobs = [UnitJob(u, Hidden(()), settings) for u in range(4)]
    # Units 0 and 1 ran on pid 10, which died; 2 ran on pid 20, stopped by the pool;
    # 3 was queued and never said where it ran.
    where = {0: 10, 1: 10, 2: 20}
    assert [c for _, c in _charged(jobs, {10}, where)] == [True, True, False, False]
    # A dead worker whose unit never said where it ran: the units that did not say are charged.
    assert [c for _, c in _charged(jobs, {10, 30}, where)] == [True, True, False, True]
    # No worker can be told from the others: every unit is charged.
    assert all(c for _, c in _charged(jobs, None, where))
