"""Sharded pulls over local processes: the same records as one process, through kills."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest

from makini_async import PageSizes, WorkerLost, set_testing
from makini_async.bulk import Outcome
from makini_async.errors import UsageError
from makini_async.scale import Hidden, ProcessEngine, ShardedPull
from makini_async.scale._units import bucket_of
from makini_async.testing import FaultPlan, MockMakini

from .pgutil import fetch
from .scaleutil import (
    ENTITIES,
    MIX,
    expected,
    kill_a_worker,
    landed,
    named_tokens,
    pool_options,
    unsharded,
)


async def test_300_connections_sharded_deliver_exactly_the_unsharded_records(
    tmp_path: Path,
) -> None:
    set_testing(True)
    tokens = named_tokens(300)
    async with MockMakini(records_per_entity=60, faults=MIX) as server:
        server.configure_connection(tokens[7][1], status="reauthorization_required")
        reference = await unsharded(server, tokens, tmp_path / "one")
        pull = ShardedPull(
            ENTITIES,
            tokens,
            sink=f"jsonl:{tmp_path / 'sharded'}",
            engine=ProcessEngine(workers=2),
            pool_options=pool_options(server),
            as_dicts=True,
            concurrency=20,  # 20 chains a worker: units of 10 connections at least
        )
        report = await asyncio.wait_for(pull.run(), 150)
        want = expected(server, tokens)
    one, sharded = landed(tmp_path / "one"), landed(tmp_path / "sharded")
    assert max(sharded.values()) == 1  # no record twice
    assert set(sharded) == set(one)
    assert set(one) == {k for k in want if k[0] != tokens[7][0]}
    # The merged report says what the one-process report says.
    assert report.records == reference.records == len(one)
    assert report.outcomes() == reference.outcomes()
    assert report.failed_connections == reference.failed_connections == [tokens[7][0]]
    assert report.retries > 0
    assert report.rate_limited > 0
    # Many more units than workers, each run once.
    assert len(pull.units) == 16
    assert all(u.done and u.attempts == 1 for u in pull.units)
    assert {c.outcome for c in report.chains if c.connection == tokens[7][0]} == {
        Outcome.REAUTHORIZATION_REQUIRED
    }
    assert multiprocessing.active_children() == []  # every worker reaped
    # Tokens stay out of everything shown: reports, reprs, the summary.
    shown = repr(report) + report.summary() + repr(pull.units) + repr(pull.engine)
    assert not [t for _, t in tokens if t in shown]


async def test_fewer_units_than_last_run_leave_no_stale_files(tmp_path: Path) -> None:
    set_testing(True)
    tokens = named_tokens(12)
    out = tmp_path / "out"
    async with MockMakini(records_per_entity=20) as server:
        for units in (6, 3):
            pull = ShardedPull(
                ENTITIES,
                tokens,
                sink=f"jsonl:{out}",
                engine=ProcessEngine(workers=2),
                pool_options=pool_options(server),
                units=units,
            )
            await asyncio.wait_for(pull.run(), 60)
        want = expected(server, tokens)
    got = landed(out)
    assert set(got) == want
    assert max(got.values()) == 1


async def test_a_killed_worker_loses_nothing_its_unit_resumes_elsewhere(tmp_path: Path) -> None:
    set_testing(True)
    tokens = named_tokens(60)
    plan = FaultPlan(seed=3, latency=0.01, error_503=0.02)
    out = tmp_path / "out"
    async with MockMakini(records_per_entity=200, faults=plan) as server:
        options = {**pool_options(server), "page_sizes": PageSizes(dict.fromkeys(ENTITIES, 20))}
        pull = ShardedPull(
            ENTITIES,
            tokens,
            sink=f"jsonl:{out}",
            checkpoint=tmp_path / "pull.sqlite",
            engine=ProcessEngine(workers=2),
            pool_options=options,
            as_dicts=True,
            progress_interval=0.05,
        )
        task = asyncio.create_task(pull.run())
        await kill_a_worker(pull, task)
        report = await asyncio.wait_for(task, 150)
        want = expected(server, tokens)
    got = landed(out)
    assert set(got) == want  # 0 lost (JSON Lines is at least once: a few pages may repeat)
    assert report.ok
    assert any(u.attempts >= 2 for u in pull.units)  # the killed worker's unit ran again


async def test_a_killed_worker_with_postgres_neither_loses_nor_duplicates(
    tmp_path: Path, pg_dsn: str
) -> None:
    set_testing(True)
    tokens = named_tokens(40)
    plan = FaultPlan(seed=4, latency=0.01, error_503=0.02, drop=0.01)
    async with MockMakini(records_per_entity=200, faults=plan) as server:
        options = {**pool_options(server), "page_sizes": PageSizes(dict.fromkeys(ENTITIES, 20))}
        pull = ShardedPull(
            ENTITIES,
            tokens,
            sink=pg_dsn,
            engine=ProcessEngine(workers=2),
            pool_options=options,
            as_dicts=True,
            progress_interval=0.05,
        )
        task = asyncio.create_task(pull.run())
        await kill_a_worker(pull, task)
        report = await asyncio.wait_for(task, 150)
        want = expected(server, tokens)
    assert report.ok
    assert any(u.attempts >= 2 for u in pull.units)  # the killed worker's unit ran again
    got: Counter[tuple[str, str, str]] = Counter()
    for entity in ENTITIES:
        table = "makini_" + entity.replace("-", "_")
        for row in await fetch(pg_dsn, f"SELECT connection, id FROM {table}"):  # noqa: S608
            got[(row["connection"], entity, row["id"])] += 1
    assert set(got) == want
    assert max(got.values()) == 1
    # The DSN's password never reaches the report or the units' reprs.
    assert "password" not in repr(pull.units) + report.summary()


async def test_a_unit_whose_worker_keeps_dying_fails_with_worker_lost(tmp_path: Path) -> None:
    set_testing(True)
    tokens = named_tokens(4)
    async with MockMakini(records_per_entity=400, faults=FaultPlan(latency=0.02)) as server:
        options = {**pool_options(server), "page_sizes": PageSizes(dict.fromkeys(ENTITIES, 20))}
        pull = ShardedPull(
            ENTITIES,
            tokens,
            sink=f"jsonl:{tmp_path / 'out'}",
            checkpoint=tmp_path / "pull.sqlite",
            engine=ProcessEngine(workers=1, max_attempts=2),
            pool_options=options,
            as_dicts=True,
            units=1,
            progress_interval=0.05,
        )
        task = asyncio.create_task(pull.run())
        await kill_a_worker(pull, task)
        while pull.units[0].attempts < 2:  # noqa: ASYNC110 - the second attempt, then kill it too
            await asyncio.sleep(0.01)
        await kill_a_worker(pull, task)
        report = await asyncio.wait_for(task, 60)
    assert not report.ok
    assert all(isinstance(c.error, WorkerLost) for c in report.chains)
    assert "died 2 times" in str(report.chains[0].error)


async def test_a_killed_worker_charges_only_its_own_unit(tmp_path: Path) -> None:
    # Two workers, a unit each, one attempt a unit: the healthy worker's unit, stopped
    # because the executor breaks, is queued again without being charged and completes.
    set_testing(True)
    tokens = named_tokens(20)
    out = tmp_path / "out"
    async with MockMakini(records_per_entity=400, faults=FaultPlan(latency=0.05)) as server:
        options = {**pool_options(server), "page_sizes": PageSizes(dict.fromkeys(ENTITIES, 20))}
        pull = ShardedPull(
            ENTITIES,
            tokens,
            sink=f"jsonl:{out}",
            checkpoint=tmp_path / "pull.sqlite",
            engine=ProcessEngine(workers=2, max_attempts=1),
            pool_options=options,
            as_dicts=True,
            units=2,
            progress_interval=0.05,
        )
        task = asyncio.create_task(pull.run())
        deadline = asyncio.get_running_loop().time() + 60
        while not all(
            u.pid is not None and sum(c.pages for c in pull.unit_chains(u.unit)) >= 2
            for u in pull.units
        ):
            assert asyncio.get_running_loop().time() < deadline
            assert not task.done()
            await asyncio.sleep(0.01)
        killed, healthy = pull.units
        assert killed.pid != healthy.pid
        assert not killed.done
        assert not healthy.done  # a chain takes about a second: both are mid-way
        os.kill(killed.pid, signal.SIGKILL)  # type: ignore[arg-type]
        report = await asyncio.wait_for(task, 90)
        want = expected(server, tokens)
    lost = pull.unit_chains(killed.unit)
    kept = pull.unit_chains(healthy.unit)
    assert all(c.outcome is Outcome.FAILED and isinstance(c.error, WorkerLost) for c in lost)
    # One attempt a unit: had the break been charged to the healthy unit, its chains would
    # have failed with WorkerLost. It is started again (2) unless it finished before the
    # executor noticed the dead worker (1), which a busy machine allows.
    assert all(c.outcome is Outcome.COMPLETED for c in kept)
    assert healthy.attempts in (1, 2)
    kept_names = {c.connection for c in kept}
    got: Counter[tuple[str, str, str]] = Counter()
    for folder in {f"bucket-{bucket_of(name, pull.buckets):05d}" for name in kept_names}:
        got.update(landed(out / folder))  # a bucket is in one unit, whole
    assert set(got) == {k for k in want if k[0] in kept_names}  # every healthy record landed
    assert report.failed_connections == sorted({c.connection for c in lost})


def test_tokens_and_dsns_stay_hidden_in_what_crosses_processes(tmp_path: Path) -> None:
    tokens = named_tokens(3)
    pull = ShardedPull(
        ENTITIES,
        tokens,
        sink="postgresql://app:hunter2-password@db/wh",
        engine=ProcessEngine(workers=1),
    )
    shown = repr(pull._jobs) + repr(pull.units) + str(Hidden("tok_secret_abcdef"))
    assert "tok_secret" not in shown
    assert "hunter2" not in shown
    assert pull.location.startswith("postgresql://")
    assert "hunter2" not in pull.location


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"checkpoint": "pull.json"}, "JSON checkpoint cannot be shared"),
        ({"sink": "parquet:x", "checkpoint": "x.sqlite"}, "keep their own checkpoint"),
        ({"sink": "csv:x"}, "unknown sink"),
        ({"units": 0}, "units must be"),
        ({"pool_options": {"clock": lambda: 0.0}}, "must pickle to reach the workers"),
    ],
)
def test_bad_options_are_usage_errors(options: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {"sink": "jsonl:out", **options}
    with pytest.raises(UsageError, match=message):
        ShardedPull(ENTITIES, named_tokens(2), engine=ProcessEngine(workers=1), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="workers must be"):
        ProcessEngine(workers=0)


_SCRIPT = '''
import asyncio
import os
import sys
from pathlib import Path

from makini_async.scale import ProcessEngine, ShardedPull


# Read at the top level, as scripts do: wherever this module is imported (the
# workers import it to unpickle FileSink), it must have the script's arguments.
OUT = Path(sys.argv[2])


class FileSink:
    """Defined in the script itself: workers must import the script to unpickle it."""

    def __init__(self, unit: int = 0) -> None:
        assert os.environ["NIGHTLY_SET_LATE"] == "yes"  # the coordinator's, set after warm_up
        self.path = OUT / f"unit-{unit}.txt"

    location = "files"
    checkpoint_store = None

    async def open(self, entities: object) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def write(self, page: object, state: object) -> None:
        with self.path.open("a") as out:
            out.writelines(f"{r['id']}\\n" for r in page.records)

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass


if __name__ == "__main__":
    engine = ProcessEngine(workers=2)
    engine.warm_up()
    os.environ["NIGHTLY_SET_LATE"] = "yes"  # after the fork server started
    tokens = [(f"plant-{i}", f"tok_secret_{i:06d}") for i in range(4)]
    pull = ShardedPull(
        ["assets"], tokens, sink=FileSink, engine=engine,
        # Dict records because the pool says so: the pull follows the pool's default.
        pool_options={"base_url": sys.argv[1], "as_dicts": True}, units=4,
    )
    report = asyncio.run(pull.run())
    print(report.records, report.ok)
'''


async def test_a_sink_defined_in_the_users_script_reaches_the_workers(tmp_path: Path) -> None:
    # Workers fork from the fork server (or are spawned): either way the script's
    # main module is imported there, or its own classes could not be unpickled.
    script = tmp_path / "nightly.py"
    script.write_text(_SCRIPT)
    out = tmp_path / "out"
    async with MockMakini(records_per_entity=15) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            server.url,
            str(out),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert stdout.decode().split() == ["60", "True"]
    ids = [line for path in out.glob("unit-*.txt") for line in path.read_text().split()]
    assert len(ids) == 60
    assert len(list(out.glob("unit-*.txt"))) == 4
