"""A checkpoint's state is bound to its destination; pulls close themselves.

A chain's "complete" in a checkpoint says what landed in one destination:
reused for another destination it must never turn a full pull into an
empty one. Each destination keeps its own state (named after it unless the
user names it); a state recorded for elsewhere is refused unless started
over; checkpoints written before states are adopted once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import sqlite3
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from makini_async import CheckpointError, MakiniPool, UsageError, set_testing
from makini_async.bulk import Pull, PulledPage
from makini_async.checkpoint import CheckpointMismatch, SQLiteCheckpoint
from makini_async.scale import ProcessEngine, ShardedPull
from makini_async.sinks import JsonLinesSink, ParquetSink, PostgresSink
from makini_async.testing import MockMakini
from tests.fakes import overlap_ids

from .pgutil import fetch
from .test_cli import NAMES, RECORDS, TOKENS, assert_no_tokens, run_cli, server, write_tokens

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["server"]  # the fixture, shared with test_cli

NAMED = [(f"site-{i}", f"tok-secret-identity-{i:02d}") for i in range(4)]
PER_ENTITY = 100


def lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def pull_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("makini-pull")]


def _soon() -> str:
    """A high-water mark the mock has nothing after: a completed, current chain."""
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the library -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "json"])
async def test_one_checkpoint_two_sinks_each_gets_every_record(tmp_path: Path, kind: str) -> None:
    # Measured before: 400 of 400 records into A, then 0 of 400 into B ("completed").
    checkpoint = tmp_path / f"pull.{kind}"
    async with (
        MockMakini(records_per_entity=PER_ENTITY) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        for out in ("a", "b"):
            sink = JsonLinesSink(tmp_path / out)
            async with pool.pull("assets", NAMED, checkpoint=checkpoint, sink=sink) as pull:
                await pull.run()
            assert pull.report.ok
            assert lines(tmp_path / out / "assets.jsonl") == len(NAMED) * PER_ENTITY
            state = pull.report.state
            assert state is not None
            assert (state.status, state.name) == ("new", f"jsonl:{tmp_path / out}")
            assert f"checkpoint: state 'jsonl:{tmp_path / out}' (new)" in pull.report.summary()
        # A again: its own state, found and matched: an incremental pull, nothing new but
        # what the overlap brings again (records within 300 s of each chain's newest).
        again = len(overlap_ids(server.records(NAMED[0][1], "assets")))
        sink = JsonLinesSink(tmp_path / "a")
        async with pool.pull("assets", NAMED, checkpoint=checkpoint, sink=sink) as pull:
            await pull.run()
        assert pull.report.state is not None
        assert pull.report.state.status == "matched"
        assert pull.report.records == len(NAMED) * again
    assert lines(tmp_path / "a" / "assets.jsonl") == len(NAMED) * (PER_ENTITY + again)


async def test_pulls_sharing_one_store_object_keep_their_own_states(tmp_path: Path) -> None:
    # A sharded pull's worker runs one pull per bucket folder over one store object.
    store = SQLiteCheckpoint(tmp_path / "pull.sqlite")
    try:
        async with (
            MockMakini(records_per_entity=PER_ENTITY) as server,
            MakiniPool(base_url=server.url, as_dicts=True) as pool,
        ):

            async def into(out: str, connections: list[tuple[str, str]]) -> Any:
                sink = JsonLinesSink(tmp_path / out)
                return await pool.pull("assets", connections, checkpoint=store, sink=sink).run()

            # Matched: incremental, only what the overlap brings again.
            again = 2 * len(overlap_ids(server.records(NAMED[0][1], "assets")))
            for status, records in (("new", 2 * PER_ENTITY), ("matched", again)):
                reports = await asyncio.gather(into("a", NAMED[:2]), into("b", NAMED[2:]))
                for report in reports:
                    assert report.ok
                    assert report.state is not None
                    assert (report.state.status, report.records) == (status, records)
            # Each state holds exactly its own chains: one alone finds all of them.
            for out, connections in (("a", NAMED[:2]), ("b", NAMED[2:])):
                report = await into(out, connections)
                assert (report.state.status, report.records) == ("matched", again)
    finally:
        store.close()
    assert lines(tmp_path / "a" / "assets.jsonl") == 2 * PER_ENTITY + 2 * again
    assert lines(tmp_path / "b" / "assets.jsonl") == 2 * PER_ENTITY + 2 * again


async def test_a_named_state_of_another_destination_is_refused_unless_fresh(
    tmp_path: Path,
) -> None:
    checkpoint = tmp_path / "pull.sqlite"
    async with (
        MockMakini(records_per_entity=PER_ENTITY) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):

        def pull_into(out: str, **options: Any) -> Any:
            sink = JsonLinesSink(tmp_path / out, append=not options.get("fresh", False))
            return pool.pull("assets", NAMED, checkpoint=checkpoint, sink=sink, **options)

        report = await pull_into("a", state_name="nightly").run()
        assert report.ok
        # Another destination under the same name: refused, naming both; nothing written.
        with pytest.raises(CheckpointMismatch) as info:
            await pull_into("b", state_name="nightly").run()
        assert str(tmp_path / "a") in info.value.message
        assert str(tmp_path / "b") in info.value.message
        assert "fresh" in info.value.message
        assert lines(tmp_path / "b" / "assets.jsonl") == 0
        # The refused pull released the checkpoint (run() closes it): a fresh start runs.
        assert pull_tasks() == []
        report = await pull_into("b", state_name="nightly", fresh=True).run()
        assert report.ok
        assert report.state is not None
        assert report.state.status == "fresh"
        assert report.state.replaced is not None
        assert report.state.replaced.location == str(tmp_path / "a")
        assert lines(tmp_path / "b" / "assets.jsonl") == len(NAMED) * PER_ENTITY
        # Now "nightly" is B's: B matches (incremental: only the overlap again), A is refused.
        again = len(NAMED) * len(overlap_ids(server.records(NAMED[0][1], "assets")))
        report = await pull_into("b", state_name="nightly").run()
        assert report.state is not None
        assert (report.state.status, report.records) == ("matched", again)
        with pytest.raises(CheckpointMismatch):
            await pull_into("a", state_name="nightly").run()
        # A fresh start into the same destination pulls everything again, files truncated.
        report = await pull_into("b", fresh=True, state_name="nightly").run()
        assert report.state is not None
        assert (report.state.status, report.state.replaced) == ("fresh", None)
        assert report.records == len(NAMED) * PER_ENTITY
        assert lines(tmp_path / "b" / "assets.jsonl") == len(NAMED) * PER_ENTITY


async def test_another_unit_layout_is_another_identity(tmp_path: Path) -> None:
    checkpoint = tmp_path / "pull.sqlite"
    async with (
        MockMakini(records_per_entity=10) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        sink = JsonLinesSink(tmp_path / "out")
        await Pull(pool, "assets", NAMED, checkpoint=checkpoint, sink=sink, layout="b4").run()
        with pytest.raises(CheckpointMismatch, match="layout b4"):
            await Pull(pool, "assets", NAMED, checkpoint=checkpoint, sink=sink, layout="b8").run()


async def test_state_names_are_checked(tmp_path: Path) -> None:
    async with MakiniPool(base_url="http://127.0.0.1:9") as pool:
        with pytest.raises(UsageError, match="give checkpoint"):
            pool.pull("assets", NAMED, state_name="x")
        with pytest.raises(UsageError, match="control characters"):
            pool.pull("assets", NAMED, checkpoint=tmp_path / "c.sqlite", state_name="a\x1fb")
        with pytest.raises(UsageError, match="keeps no named states"):
            pool.pull("assets", NAMED, sink=ParquetSink(tmp_path / "pq"), state_name="x")
    # None of the refused pulls kept the checkpoint's lock.
    SQLiteCheckpoint(tmp_path / "c.sqlite").close()


@pytest.mark.parametrize("kind", ["sqlite", "json"])
async def test_a_checkpoint_from_before_states_is_adopted_once(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The format of the version before: chains keyed by connection alone, no identity.
    checkpoint = tmp_path / f"old.{kind}"
    state = {"in_progress": False, "high_water": _soon(), "records": 0}
    if kind == "sqlite":
        db = sqlite3.connect(checkpoint)
        db.execute(
            "CREATE TABLE chains (connection TEXT NOT NULL, entity TEXT NOT NULL, "
            "state TEXT NOT NULL, PRIMARY KEY (connection, entity))"
        )
        db.executemany(
            "INSERT INTO chains VALUES (?, 'assets', ?)",
            [(name, orjson.dumps(state).decode()) for name, _ in NAMED],
        )
        db.commit()
        db.close()
    else:
        chains = {f"assets\t{name}": state for name, _ in NAMED}
        checkpoint.write_bytes(orjson.dumps({"version": 1, "chains": chains}))
    async with (
        MockMakini(records_per_entity=PER_ENTITY) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        sink = JsonLinesSink(tmp_path / "a")
        with caplog.at_level(logging.WARNING, logger="makini_async"):
            report = await pool.pull("assets", NAMED, checkpoint=checkpoint, sink=sink).run()
        # The first run keeps going where the old checkpoint stood (incremental)...
        assert report.state is not None
        assert (report.state.status, report.state.adopted) == ("adopted", len(NAMED))
        assert report.records == 0
        assert "are now state" in caplog.text
        # ...and the state is now A's: another destination starts its own, full.
        sink = JsonLinesSink(tmp_path / "b")
        report = await pool.pull("assets", NAMED, checkpoint=checkpoint, sink=sink).run()
        assert report.state is not None
        assert report.state.status == "new"
        assert report.records == len(NAMED) * PER_ENTITY
        sink = JsonLinesSink(tmp_path / "a")
        report = await pool.pull("assets", NAMED, checkpoint=checkpoint, sink=sink).run()
        assert report.state is not None
        assert (report.state.status, report.records) == ("matched", 0)


async def test_two_postgresql_sinks_in_one_database_keep_their_own_states(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with (
        MockMakini(records_per_entity=PER_ENTITY) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        for prefix in ("a_", "b_"):
            sink = PostgresSink(pg_dsn, table_prefix=prefix)
            report = await pool.pull("assets", NAMED, sink=sink).run()
            assert report.ok
            assert report.state is not None
            assert report.state.status == "new"
            rows = await fetch(pg_dsn, f"SELECT 1 FROM {prefix}assets")  # noqa: S608
            assert len(rows) == len(NAMED) * PER_ENTITY
        report = await pool.pull(
            "assets", NAMED, sink=PostgresSink(pg_dsn, table_prefix="a_")
        ).run()
        again = len(NAMED) * len(overlap_ids(server.records(NAMED[0][1], "assets")))
        assert report.state is not None
        assert (report.state.status, report.records) == ("matched", again)


# -- the command line ----------------------------------------------------------------------


async def test_cli_an_sqlite_checkpoint_reused_for_another_out(
    server: MockMakini, tmp_path: Path
) -> None:
    # Measured before: all records into A, then 0 into B, exit 0.
    tokens = write_tokens(tmp_path / "tokens.txt")
    checkpoint = str(tmp_path / "pull.sqlite")
    args = ["pull", "--entity", "assets", "--entity", "vendors", "--tokens-file", str(tokens),
            "--base-url", server.url, "--checkpoint", checkpoint]  # fmt: skip
    want = len(TOKENS) * RECORDS
    for out in ("a", "b"):
        code, stdout, stderr = await run_cli(*args, "--out", str(tmp_path / out))
        assert code == 0, stderr
        assert lines(tmp_path / out / "assets.jsonl") == want
        assert lines(tmp_path / out / "vendors.jsonl") == want
        assert f"Checkpoint: state 'jsonl:{tmp_path / out}' (new) in {checkpoint}" in stdout
    code, stdout, stderr = await run_cli(*args, "--out", str(tmp_path / "a"))
    assert code == 0, stderr
    assert "(matched)" in stdout
    again = len(TOKENS) * len(overlap_ids(server.records(TOKENS[0], "assets")))
    assert lines(tmp_path / "a" / "assets.jsonl") == want + again  # incremental: the overlap
    assert_no_tokens(stdout, stderr)


async def test_cli_a_named_state_for_another_out_exits_2_unless_fresh(
    server: MockMakini, tmp_path: Path
) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    summary = tmp_path / "summary.json"
    args = ["pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url",
            server.url, "--checkpoint", str(tmp_path / "pull.json"), "--state-name", "nightly",
            "--summary-json", str(summary)]  # fmt: skip
    want = len(TOKENS) * RECORDS
    code, _, stderr = await run_cli(*args, "--out", str(tmp_path / "a"))
    assert code == 0, stderr
    code, stdout, stderr = await run_cli(*args, "--out", str(tmp_path / "b"))
    assert code == 2, stderr
    assert stderr.count("\n") == 1  # one error line, no traceback
    assert "state 'nightly'" in stderr
    assert str(tmp_path / "a") in stderr
    assert str(tmp_path / "b") in stderr
    assert "--fresh" in stderr
    assert lines(tmp_path / "b" / "assets.jsonl") == 0
    code, stdout, stderr = await run_cli(*args, "--out", str(tmp_path / "b"), "--fresh")
    assert code == 0, stderr
    assert lines(tmp_path / "b" / "assets.jsonl") == want
    assert "state 'nightly' (fresh)" in stdout
    outcome = orjson.loads(summary.read_bytes())["checkpoint"]
    assert outcome["status"] == "fresh"
    assert outcome["destination"] == f"jsonl:{tmp_path / 'b'}"
    assert outcome["replaced"] == f"jsonl:{tmp_path / 'a'}"
    # --fresh truncates the destination's files: a full pull never doubles them.
    code, stdout, stderr = await run_cli(*args, "--out", str(tmp_path / "b"), "--fresh")
    assert code == 0, stderr
    assert lines(tmp_path / "b" / "assets.jsonl") == want
    assert_no_tokens(stdout, stderr)


async def test_cli_state_name_options_are_checked(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    base = ["pull", "--entity", "assets", "--tokens-file", str(tokens),
            "--out", str(tmp_path / "out")]  # fmt: skip
    cases = [
        (["--state-name", "x"], "give --checkpoint"),
        (["--state-name", "", "--checkpoint", str(tmp_path / "c.sqlite")], "bad --state-name"),
        (["--fresh", "--workers", "2", "--checkpoint", str(tmp_path / "c.sqlite")], "sharded"),
    ]
    for extra, message in cases:
        code, _, stderr = await run_cli(*base, *extra)
        assert code == 2, stderr
        assert message in stderr


async def test_cli_jsonl_with_a_postgresql_checkpoint_after_a_postgresql_sink(
    server: MockMakini, tmp_path: Path, pg_dsn: str
) -> None:
    # Measured before: the JSON Lines pull found the sink's chains "completed" and wrote 0.
    tokens = write_tokens(tmp_path / "tokens.txt")
    base = ["pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url", server.url]
    want = len(TOKENS) * RECORDS
    code, stdout, stderr = await run_cli(*base, "--sink", pg_dsn)
    assert code == 0, stderr
    assert len(await fetch(pg_dsn, "SELECT 1 FROM makini_assets")) == want
    for out in ("a", "b"):
        code, stdout, stderr = await run_cli(
            *base, "--out", str(tmp_path / out), "--checkpoint", pg_dsn
        )
        assert code == 0, stderr
        assert lines(tmp_path / out / "assets.jsonl") == want
        assert "(new)" in stdout
    # Three states, one database; rerunning A is incremental (nothing new).
    names = await fetch(pg_dsn, "SELECT name FROM makini_checkpoints_states ORDER BY name")
    assert len(names) == 3
    code, stdout, stderr = await run_cli(
        *base, "--out", str(tmp_path / "a"), "--checkpoint", pg_dsn
    )
    assert code == 0, stderr
    assert "(matched)" in stdout
    again = len(TOKENS) * len(overlap_ids(server.records(TOKENS[0], "assets")))
    assert lines(tmp_path / "a" / "assets.jsonl") == want + again  # incremental: the overlap


async def test_cli_a_postgresql_checkpoint_from_before_states_is_adopted(
    server: MockMakini, tmp_path: Path, pg_dsn: str
) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    base = ["pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url", server.url,
            "--checkpoint", pg_dsn]  # fmt: skip
    # The version before's table and rows: keyed by connection alone.
    state = orjson.dumps({"in_progress": False, "high_water": _soon()}).decode()
    await fetch(
        pg_dsn,
        "CREATE TABLE makini_checkpoints (connection text NOT NULL, entity text NOT NULL, "
        "state jsonb NOT NULL, saved_at timestamptz NOT NULL, PRIMARY KEY (connection, entity))",
    )
    for name in NAMES:
        await fetch(
            pg_dsn,
            "INSERT INTO makini_checkpoints VALUES ($1, 'assets', $2::jsonb, now())",
            name,
            state,
        )
    code, stdout, stderr = await run_cli(*base, "--out", str(tmp_path / "a"))
    assert code == 0, stderr
    assert f"(adopted) in {pg_dsn}" not in stdout
    assert f"{len(NAMES)} chains adopted" in stdout
    assert "are now state" in stderr  # the log line, once
    assert lines(tmp_path / "a" / "assets.jsonl") == 0  # incremental: nothing since
    code, stdout, stderr = await run_cli(*base, "--out", str(tmp_path / "b"))
    assert code == 0, stderr
    assert "(new)" in stdout
    assert lines(tmp_path / "b" / "assets.jsonl") == len(NAMES) * RECORDS


# -- pulls that close themselves -------------------------------------------------------------


async def test_run_whose_consumer_raises_closes_the_pull(tmp_path: Path) -> None:
    # Measured before: the next pull on that checkpoint failed "in use by another run".
    checkpoint = tmp_path / "pull.sqlite"
    async with (
        MockMakini(records_per_entity=PER_ENTITY) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):

        def boom(page: PulledPage[Any]) -> None:
            raise RuntimeError("the consumer failed")

        with pytest.raises(RuntimeError, match="consumer failed"):
            await pool.pull("assets", NAMED, checkpoint=checkpoint).run(boom)
        assert pull_tasks() == []
        report = await pool.pull("assets", NAMED, checkpoint=checkpoint).run()
        assert report.ok
        assert pull_tasks() == []
        # Both runs released the lock: the checkpoint opens for another run.
        SQLiteCheckpoint(checkpoint).close()


@pytest.mark.parametrize("pages", [False, True])
async def test_an_iteration_its_consumer_abandons_is_closed_by_the_loop(
    tmp_path: Path, pages: bool
) -> None:
    checkpoint = tmp_path / "pull.sqlite"
    async with (
        MockMakini(records_per_entity=PER_ENTITY) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        pull = pool.pull("assets", NAMED, checkpoint=checkpoint)
        with pytest.raises(RuntimeError, match="consumer failed"):
            async for _ in pull.pages() if pages else pull:
                raise RuntimeError("the consumer failed")
        # No `async with`: the abandoned iteration is collected at once and the
        # event loop closes it within a few turns, lock and workers included.
        for _ in range(100):
            if pull_tasks() == [] and not _locked(checkpoint):
                break
            await asyncio.sleep(0)
        assert pull_tasks() == []
        assert not _locked(checkpoint)
        report = await pool.pull("assets", NAMED, checkpoint=checkpoint).run()
        assert report.ok
        del pull  # closed: no ResourceWarning (warnings are errors here)
        gc.collect()


def _locked(checkpoint: Path) -> bool:
    try:
        SQLiteCheckpoint(checkpoint).close()
    except CheckpointError:
        return True
    return False


async def test_a_pull_never_closed_warns_and_releases_its_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "pull.sqlite"
    async with MakiniPool(base_url="http://127.0.0.1:9") as pool:
        pull = pool.pull("assets", NAMED, checkpoint=checkpoint)
        with pytest.raises(CheckpointError, match="in use by another run"):
            SQLiteCheckpoint(checkpoint)
        with pytest.warns(ResourceWarning, match="unclosed pull"):
            del pull  # nothing else refers to it: collected at once
        SQLiteCheckpoint(checkpoint).close()
        # A pull that holds nothing (no checkpoint, never started) has nothing to say.
        quiet = pool.pull("assets", NAMED)
        del quiet
        gc.collect()


async def test_a_sharded_pull_records_its_bucket_layout_in_each_state(tmp_path: Path) -> None:
    set_testing(True)
    checkpoint = tmp_path / "pull.sqlite"
    async with MockMakini(records_per_entity=10) as server:
        pull = ShardedPull(
            "assets",
            NAMED,
            sink=f"jsonl:{tmp_path / 'out'}",
            checkpoint=checkpoint,
            engine=ProcessEngine(workers=1),
            pool_options={"base_url": server.url, "as_dicts": True},
            buckets=4,
        )
        report = await asyncio.wait_for(pull.run(), 60)
    assert report.ok
    db = sqlite3.connect(checkpoint)
    try:
        rows = db.execute("SELECT name, identity FROM states").fetchall()
    finally:
        db.close()
    assert rows  # one state a bucket folder, each with the layout
    for name, identity in rows:
        assert name.startswith(f"jsonl:{tmp_path / 'out'}/bucket-")
        assert orjson.loads(identity)["layout"] == pull.layout
