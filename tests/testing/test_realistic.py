"""Realistic record widths: deterministic, in the documented size ranges, and typed cleanly."""

from __future__ import annotations

import statistics

import orjson
import pytest

from makini_async import Entity
from makini_async.models import structure_page
from makini_async.testing import MockMakini

RANGES = {
    Entity.PURCHASE_ORDERS: (1_500, 3_000),
    Entity.WORK_ORDERS: (1_000, 2_000),
    Entity.ASSETS: (600, 1_200),
}


@pytest.mark.parametrize("entity", list(RANGES))
async def test_realistic_records_weigh_what_real_ones_do(entity: Entity) -> None:
    async with MockMakini(records_per_entity=400, shape="realistic", seed=5) as server:
        records = server.records("t", entity)
        again = MockMakini(records_per_entity=400, shape="realistic", seed=5)
        await again.start()
        try:
            assert again.records("t", entity) == records  # deterministic
        finally:
            await again.close()
    async with MockMakini(records_per_entity=400, seed=5) as light:
        plain = light.records("t", entity)
    sizes = [len(orjson.dumps(r)) for r in records]
    low, high = RANGES[entity]
    assert low <= statistics.median(sizes) <= high
    assert statistics.median(sizes) > 1.5 * statistics.median(len(orjson.dumps(r)) for r in plain)
    assert [r["id"] for r in records] == [r["id"] for r in plain]
    typed, invalid = structure_page(entity, list(records))
    assert invalid == []
    assert len(typed) == 400


def test_an_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        MockMakini(shape="huge")
