"""JSON Lines on a disk that fills up mid-page: nothing of the page stays, no line is cut."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from makini_async import SinkUnavailable
from makini_async.bulk import PulledPage
from makini_async.entities import Entity
from makini_async.sinks import JsonLinesSink
from makini_async.testing import MockMakini

from .test_parquet_durability import _fill, tiny_fs

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["tiny_fs"]  # the fixture, shared with test_parquet_durability

DATA = MockMakini(records_per_entity=60)


def _page(start: int, stop: int, pad: int = 0) -> PulledPage[Any]:
    records = [
        {**r, "name": r["name"] + "x" * pad} for r in DATA.records("tok-a", "assets")[start:stop]
    ]
    return PulledPage("site-a", Entity.ASSETS, records, None, f"c{stop}", f"r{stop}")


async def test_a_page_cut_short_by_a_full_disk_leaves_no_half_line(tiny_fs: Path) -> None:
    sink = JsonLinesSink(tiny_fs / "out")
    await sink.open([Entity.ASSETS])
    await sink.write(_page(0, 20), None)
    filler = _fill(tiny_fs)
    os.truncate(filler, filler.stat().st_size - 8192)  # room for part of the next page only
    with pytest.raises(SinkUnavailable, match="No space left on device"):
        await sink.write(_page(20, 40, pad=4_000), None)  # about 80 KB
    filler.unlink()  # space comes back; the pull delivers the page again, and the next
    await sink.write(_page(20, 40, pad=4_000), None)
    await sink.write(_page(40, 60), None)
    await sink.close()
    lines = (tiny_fs / "out" / "assets.jsonl").read_bytes().splitlines()
    ids = [orjson.loads(line)["id"] for line in lines]  # every line is whole JSON
    assert ids == [r["id"] for r in DATA.records("tok-a", "assets")]
