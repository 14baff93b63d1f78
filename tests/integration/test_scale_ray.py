"""Sharded pulls on a local Ray: the same records as one process, through a killed worker.

Ray keeps its session (logs included) under the session's pytest temporary
directory, so the token scan of ``tests/conftest.py`` reads every Ray log too.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

import pytest

from makini_async import PageSizes, set_testing
from makini_async.scale import RayEngine, ShardedPull
from makini_async.testing import FaultPlan, MockMakini

from .scaleutil import ENTITIES, MIX, expected, kill_a_worker, landed, named_tokens, pool_options

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Ray's own imports may warn (deprecations of its deps)
    ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # A short path: Ray's unix sockets live under it (107 bytes at most).
    temp = tmp_path_factory.mktemp("ray")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp))
    yield temp
    ray.shutdown()


async def test_sharded_pull_on_ray_delivers_the_unsharded_records(
    tmp_path: Path, ray_session: Path
) -> None:
    set_testing(True)
    tokens = named_tokens(100)
    async with MockMakini(records_per_entity=60, faults=MIX) as server:
        reference = await unsharded(server, tokens, tmp_path / "one")
        pull = ShardedPull(
            ENTITIES,
            tokens,
            sink=f"jsonl:{tmp_path / 'ray'}",
            engine=RayEngine(workers=2),
            pool_options=pool_options(server),
            as_dicts=True,
        )
        report = await asyncio.wait_for(pull.run(), 150)
        want = expected(server, tokens)
    got = landed(tmp_path / "ray")
    assert max(got.values()) == 1
    assert set(got) == set(landed(tmp_path / "one")) == want
    assert report.ok
    assert report.records == reference.records
    assert all(u.done and u.attempts == 1 for u in pull.units)


async def test_a_killed_ray_worker_loses_nothing(tmp_path: Path, ray_session: Path) -> None:
    set_testing(True)
    tokens = named_tokens(40)
    plan = FaultPlan(seed=5, latency=0.03, error_503=0.02)
    out = tmp_path / "out"
    async with MockMakini(records_per_entity=300, faults=plan) as server:
        options = {**pool_options(server), "page_sizes": PageSizes(dict.fromkeys(ENTITIES, 20))}
        pull = ShardedPull(
            ENTITIES,
            tokens,
            sink=f"jsonl:{out}",
            checkpoint=tmp_path / "pull.sqlite",
            engine=RayEngine(workers=2),
            pool_options=options,
            as_dicts=True,
            units=4,  # long units: the kill lands well inside one
            progress_interval=0.05,
        )
        task = asyncio.create_task(pull.run())
        await kill_a_worker(pull, task, per_chain=300)
        report = await asyncio.wait_for(task, 150)
        want = expected(server, tokens)
    assert set(landed(out)) == want
    assert report.ok
    assert any(u.attempts >= 2 for u in pull.units)  # the killed worker's unit ran again
    # Ray wrote its logs where the session's token scan looks; search them here too.
    logs = [p for p in ray_session.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix in (".log", ".out", ".err") for p in logs)
    leaked = [p.name for p in logs if b"tok_secret_" in p.read_bytes()]
    assert leaked == []
    shown = repr(report) + report.summary() + repr(pull.units) + repr(pull.engine)
    assert "tok_secret_" not in shown


async def unsharded(server: MockMakini, tokens: list[tuple[str, str]], out: Path) -> Any:
    from .scaleutil import unsharded as run

    return await run(server, tokens, out)
