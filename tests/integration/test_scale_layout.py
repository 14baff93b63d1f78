"""Sharded pulls across runs: stable folders, the recorded layout, no link followed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import Counter
from pathlib import Path

import orjson
import pytest

from makini_async import set_testing
from makini_async.errors import UsageError
from makini_async.scale import ProcessEngine, ShardedPull
from makini_async.scale._units import bucket_of
from makini_async.testing import MockMakini
from tests.fakes import overlap_ids

from .scaleutil import ENTITIES, expected, landed, named_tokens, pool_options


def landed_parquet(out: Path, buckets: str = "bucket-*") -> Counter[tuple[str, str, str]]:
    """``(connection, entity, id)`` of every row of every entity, read as the documentation says."""
    pq = pytest.importorskip("pyarrow.parquet")
    got: Counter[tuple[str, str, str]] = Counter()
    for entity in ENTITIES:
        for folder in sorted(out.glob(f"{buckets}/{entity}")):
            table = pq.read_table(folder, columns=["_connection", "id"])
            for conn, rid in zip(
                table["_connection"].to_pylist(), table["id"].to_pylist(), strict=True
            ):
                got[(conn, entity, rid)] += 1
    return got


async def _pull(server: MockMakini, tokens: list[tuple[str, str]], sink: str, **kw: object) -> None:
    pull = ShardedPull(
        ENTITIES,
        tokens,
        sink=sink,
        pool_options=pool_options(server),
        as_dicts=True,
        **kw,  # type: ignore[arg-type]
    )
    report = await asyncio.wait_for(pull.run(), 90)
    assert report.ok


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
async def test_another_worker_count_and_one_more_connection_land_each_record_once(
    tmp_path: Path, kind: str
) -> None:
    set_testing(True)
    tokens = named_tokens(13)
    out = tmp_path / "out"
    extra = {} if kind == "parquet" else {"checkpoint": tmp_path / "pull.sqlite"}
    async with MockMakini(records_per_entity=30) as server:
        await _pull(server, tokens[:12], f"{kind}:{out}", engine=ProcessEngine(2), **extra)
        await _pull(server, tokens, f"{kind}:{out}", engine=ProcessEngine(3), **extra)
        want = expected(server, tokens)
        again = {e: overlap_ids(server.records(tokens[0][1], e)) for e in ENTITIES}
    got = landed_parquet(out) if kind == "parquet" else landed(out)
    assert set(got) == want
    # Nothing pulled again beside an old copy: only the incremental rerun's overlap.
    assert all(rid in again[e] for (_c, e, rid), n in got.items() if n > 1)
    assert max(got.values()) <= 2
    # Each connection's files are in the folder of its bucket, whatever the run.
    for name, _ in tokens:
        folder = f"bucket-{bucket_of(name, 256):05d}"
        there = landed_parquet(out, folder) if kind == "parquet" else landed(out / folder)
        assert name in {k[0] for k in there}


async def test_the_bucket_count_is_recorded_and_another_is_refused(tmp_path: Path) -> None:
    set_testing(True)
    tokens = named_tokens(6)
    out = tmp_path / "out"
    async with MockMakini(records_per_entity=5) as server:
        await _pull(server, tokens, f"jsonl:{out}", engine=ProcessEngine(1), buckets=16)
        # A later pull into the folder takes the recorded count by itself...
        again = ShardedPull(ENTITIES, tokens, sink=f"jsonl:{out}", engine=ProcessEngine(1))
        assert again.buckets == 16
        assert again.layout == "blake2b-buckets:16"
        # ...and refuses another, before any request.
        with pytest.raises(UsageError, match="written with buckets=16, not 32"):
            ShardedPull(ENTITIES, tokens, sink=f"jsonl:{out}", engine=ProcessEngine(1), buckets=32)
    assert {p.name for p in out.iterdir()} == {"_layout.json"} | {
        f"bucket-{bucket_of(name, 16):05d}" for name, _ in tokens
    }


async def test_a_folder_of_the_positional_layout_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "unit-00000").mkdir(parents=True)
    (out / "unit-00000" / "assets.jsonl").write_text('{"id": "x"}\n')
    pull = ShardedPull(ENTITIES, named_tokens(2), sink=f"jsonl:{out}", engine=ProcessEngine(1))
    with pytest.raises(UsageError, match="unit-00000/ of an earlier layout"):
        await pull.run()
    assert (out / "unit-00000" / "assets.jsonl").read_text() == '{"id": "x"}\n'


@pytest.mark.parametrize("stale", [True, False])
async def test_a_linked_bucket_folder_is_refused_and_its_target_survives(
    tmp_path: Path, stale: bool
) -> None:
    set_testing(True)
    tokens = named_tokens(4)
    out = tmp_path / "out"
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "assets.jsonl").write_text('{"id": "keep-me"}\n')
    used = {bucket_of(name, 256) for name, _ in tokens}
    bucket = next(b for b in range(256) if (b not in used) is stale)
    out.mkdir()
    (out / f"bucket-{bucket:05d}").symlink_to(target, target_is_directory=True)
    async with MockMakini(records_per_entity=5) as server:
        pull = ShardedPull(
            ENTITIES,
            tokens,
            sink=f"jsonl:{out}",
            engine=ProcessEngine(1),
            pool_options=pool_options(server),
        )
        with pytest.raises(UsageError, match=f"bucket-{bucket:05d} is a link"):
            await pull.run()
    assert (target / "assets.jsonl").read_text() == '{"id": "keep-me"}\n'
    assert sorted(p.name for p in target.iterdir()) == ["assets.jsonl"]


async def test_the_root_may_be_a_link_and_stale_buckets_are_swept(tmp_path: Path) -> None:
    set_testing(True)
    tokens = named_tokens(8)
    real = tmp_path / "real"
    real.mkdir()
    root = tmp_path / "root"
    os.symlink(real, root, target_is_directory=True)
    async with MockMakini(records_per_entity=5) as server:
        await _pull(server, tokens, f"jsonl:{root}", engine=ProcessEngine(1))
        # Without a checkpoint every run starts afresh: a connection no longer pulled
        # leaves nothing behind (its bucket's files are swept or rewritten).
        await _pull(server, tokens[:4], f"jsonl:{root}", engine=ProcessEngine(1))
        want = expected(server, tokens[:4])
    got = landed(real)
    assert set(got) == want
    assert max(got.values()) == 1


def test_bucket_folders_without_their_layout_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "bucket-00003").mkdir(parents=True)
    pull = ShardedPull(ENTITIES, named_tokens(2), sink=f"jsonl:{out}", engine=ProcessEngine(1))
    with pytest.raises(UsageError, match=r"bucket folders but no _layout\.json"):
        asyncio.run(pull.run())
    assert not (out / "_layout.json").exists()


async def test_each_buckets_checkpoint_state_records_the_layout(tmp_path: Path) -> None:
    set_testing(True)
    tokens = named_tokens(4)
    out = tmp_path / "out"
    async with MockMakini(records_per_entity=5) as server:
        await _pull(
            server,
            tokens,
            f"jsonl:{out}",
            engine=ProcessEngine(1),
            checkpoint=tmp_path / "pull.sqlite",
            buckets=64,
        )
    with sqlite3.connect(tmp_path / "pull.sqlite") as db:
        states = dict(db.execute("SELECT name, identity FROM states").fetchall())
    folders = {f"bucket-{bucket_of(name, 64):05d}" for name, _ in tokens}
    assert {name.rsplit("/", 1)[-1] for name in states} == folders
    assert {orjson.loads(identity)["layout"] for identity in states.values()} == {
        "blake2b-buckets:64"
    }
