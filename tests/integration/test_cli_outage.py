"""A destination that stays down: one ``sink unavailable`` line and exit code 3, not N failures."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from makini_async import MakiniPool
from makini_async.cli import EXIT_SINK_UNAVAILABLE, _report
from makini_async.cli._args import PullSettings
from makini_async.cli._interrupt import Interrupts
from makini_async.cli._run import PullResult
from makini_async.entities import Entity
from makini_async.errors import SinkUnavailable
from makini_async.testing import MockMakini

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.bulk import PulledPage


class DownWarehouse:
    """A user's sink whose database refuses every write (as a stopped server does)."""

    location = "warehouse://db.internal/analytics"
    checkpoint_store = None

    async def open(self, entities: Sequence[Entity]) -> None:
        pass

    async def write(self, page: PulledPage[Any], state: object) -> None:
        msg = f"connection refused by db.internal:5432 (page of {page.connection})"
        raise SinkUnavailable(msg)

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_sink_outage_is_one_line_and_its_own_exit_code(tmp_path: Path) -> None:
    tokens = [(f"plant-{i:03d}", f"tok_down_{i:03d}_{'q' * 12}") for i in range(300)]
    async with MockMakini(records_per_entity=20) as server:
        async with MakiniPool(base_url=server.url, as_dicts=True) as pool:
            async with pool.pull("assets", tokens, sink=DownWarehouse()) as pull:
                await pull.run()
    report = pull.report
    outcome = PullResult(report, DownWarehouse.location, {}, {}, {}, {}, "warehouse")
    settings = PullSettings(
        entities=(Entity.ASSETS,),
        connections=tuple(tokens),
        summary_json=tmp_path / "summary.json",
    )
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = _report(settings, outcome, Interrupts())
    assert code == EXIT_SINK_UNAVAILABLE == 3
    text = out.getvalue()
    assert "Failed connections: 0" in text  # not 300 customers blamed
    outage = [line for line in text.splitlines() if "sink unavailable" in line]
    assert outage == [
        (
            "sink unavailable: connection refused by db.internal:5432 (page of plant-000) "
            "(300 chains stopped; rerun to resume)"
        )
    ]
    assert len(text.splitlines()) < 25
    assert err.getvalue().startswith("makini-async: sink unavailable: connection refused")
    data = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert data["sink_unavailable"].startswith("connection refused by db.internal:5432")
    assert len(data["failures"]) == 300  # every chain kept for schedulers
    (group,) = data["failure_groups"]
    assert group["connections"] == 300
    assert group["error"] == "SinkUnavailable"
    for _, token in tokens:
        assert token not in text + err.getvalue()
