"""quiet_gc(): opt-in, process-wide, restored on exit, nested or not."""

from __future__ import annotations

import gc

import pytest

from makini_async import UsageError
from makini_async.tuning import quiet_gc


def test_quiet_gc_freezes_raises_the_threshold_and_restores_both() -> None:
    before = gc.get_threshold()
    with quiet_gc(threshold=12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > 0
        with quiet_gc(threshold=99):  # nested: changes nothing more
            assert gc.get_threshold()[0] == 12_345
        assert gc.get_threshold()[0] == 12_345
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_quiet_gc_restores_on_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), quiet_gc():
        raise RuntimeError
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "700"])
def test_quiet_gc_refuses_a_threshold_that_is_not_a_positive_int(bad: object) -> None:
    with pytest.raises(UsageError, match="positive int"), quiet_gc(bad):  # type: ignore[arg-type]
        pass  # pragma: no cover
    assert gc.get_freeze_count() == 0


async def test_a_pull_under_quiet_gc_delivers_everything(make_pool: object) -> None:
    from tests.fakes import Call, page

    def handler(call: Call) -> object:
        return page([{"id": f"a{i}"} for i in range(50)], None)

    with quiet_gc():
        async with make_pool(handler, as_dicts=True) as (pool, _):  # type: ignore[operator]
            got = [item.record["id"] async for item in pool.pull("assets", ["t1", "t2"])]
    assert len(got) == 100
    assert gc.get_freeze_count() == 0
