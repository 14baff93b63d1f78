"""Workers own their process and run tuned by default; the coordinator's process is left alone."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import TYPE_CHECKING

import orjson
import pytest

from makini_async import set_testing
from makini_async.scale import ProcessEngine, ShardedPull
from makini_async.testing import MockMakini
from makini_async.tuning import DEFAULT_THRESHOLD

from .scaleutil import ENTITIES, TuningProbe, named_tokens, pool_options

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("tune", [None, False])
async def test_workers_run_tuned_unless_told_not_to(tmp_path: Path, tune: bool | None) -> None:
    set_testing(True)
    before = (gc.get_threshold(), gc.get_freeze_count())
    options = {} if tune is None else {"tune": tune}
    async with MockMakini(records_per_entity=5) as server:
        pull = ShardedPull(
            ENTITIES,
            named_tokens(6),
            sink=TuningProbe(str(tmp_path)),
            engine=ProcessEngine(workers=2),
            pool_options=pool_options(server),
            **options,  # type: ignore[arg-type]
        )
        during = asyncio.create_task(pull.run())
        await asyncio.sleep(0)
        assert (gc.get_threshold(), gc.get_freeze_count()) == before
        report = await asyncio.wait_for(during, 60)
    assert report.ok
    seen = [orjson.loads(p.read_bytes()) for p in tmp_path.glob("bucket-*.json")]
    assert len(seen) == len({p.name for p in tmp_path.glob("bucket-*.json")}) >= 2
    assert all(s["pid"] != os.getpid() for s in seen)  # observed inside the workers
    if tune is None:
        assert all(s["threshold"] == DEFAULT_THRESHOLD and s["frozen"] > 0 for s in seen)
        assert pull.tuned is True
    else:
        assert all(s["threshold"] < DEFAULT_THRESHOLD and s["frozen"] == 0 for s in seen)
        assert pull.tuned is False
    # The library itself changed nothing of the coordinator's interpreter.
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
