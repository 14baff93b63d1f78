"""Incremental pulls take their high-water mark from the data (or sync-status), never our clock."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest

from makini_async import MakiniPool, SQLiteCheckpoint
from makini_async.testing import MockMakini

if TYPE_CHECKING:
    from pathlib import Path

TOKENS = [(f"plant-{i}", f"tok-secret-{i}") for i in range(3)]
OVERLAP = dt.timedelta(seconds=300)


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("as_dicts", [True, False])
async def test_a_server_clock_behind_ours_loses_nothing_between_incremental_pulls(
    tmp_path: Path, as_dicts: bool
) -> None:
    checkpoint = tmp_path / "pull.sqlite"
    async with (
        MockMakini(records_per_entity=120, clock_skew=-600) as server,
        MakiniPool(base_url=server.url, as_dicts=as_dicts) as pool,
    ):
        # A change just before the first pull: the data's newest time is the server's now.
        for _name, token in TOKENS:
            server.update(token, "assets", server.records(token, "assets")[0]["id"], {})
        report = await pool.pull("assets", TOKENS, checkpoint=checkpoint).run()
        assert report.ok
        assert {c.start for c in report.chains} == {"full"}
        for round_ in range(2):
            # Changed after the last pull, at the server's time: 10 minutes behind ours.
            changed = {
                name: server.update(
                    token,
                    "assets",
                    server.records(token, "assets")[5 + round_]["id"],
                    {"name": f"r{round_}"},
                )
                for name, token in TOKENS
            }
            async with pool.pull("assets", TOKENS, checkpoint=checkpoint) as pull:
                got = {
                    (item.connection, item.record["id"] if as_dicts else item.record.id)
                    async for item in pull
                }
            assert {(name, r["id"]) for name, r in changed.items()} <= got
            for chain in pull.report.chains:
                assert chain.start == "incremental"
                assert chain.modified_after_source == "data"
                # The mark is the data's newest less the overlap: the server's clock.
                assert chain.modified_after is not None
                assert instant(chain.modified_after) <= instant(
                    changed[chain.connection]["updated_at"]
                )
    store = SQLiteCheckpoint(checkpoint)
    try:
        for name, _entity, state in store.items():
            assert state.high_water == (
                (instant(changed[name]["updated_at"]) - OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ")
            )
    finally:
        store.close()


async def test_a_chain_that_lands_nothing_keeps_its_mark(tmp_path: Path) -> None:
    checkpoint = tmp_path / "pull.sqlite"
    async with (
        MockMakini(records_per_entity=50) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        await pool.pull("assets", TOKENS[:1], checkpoint=checkpoint).run()
        store = SQLiteCheckpoint(checkpoint, lock=False)
        ((_c, _e, before),) = store.items()
        newest = max(r["updated_at"] for r in server.records(TOKENS[0][1], "assets"))
        assert before.high_water == (instant(newest) - OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ")
        # Whatever the overlap would bring again is gone: the next run lands nothing.
        for record in server.records(TOKENS[0][1], "assets"):
            if record["updated_at"] >= before.high_water:
                server.delete(TOKENS[0][1], "assets", record["id"])
        report = await pool.pull("assets", TOKENS[:1], checkpoint=checkpoint).run()
        assert report.ok
        assert report.records == 0
        ((_c, _e, after),) = store.items()
        assert after.high_water == before.high_water
        assert not after.in_progress
        store.close()


async def test_since_sync_status_wins_over_a_stored_mark(tmp_path: Path) -> None:
    checkpoint = tmp_path / "pull.sqlite"
    async with (
        MockMakini(records_per_entity=50, clock_skew=-600) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        await pool.pull("assets", TOKENS[:1], checkpoint=checkpoint).run()
        changed = server.update(
            TOKENS[0][1], "assets", server.records(TOKENS[0][1], "assets")[2]["id"], {}
        )
        status = await pool.connection(TOKENS[0][1]).sync_status()
        synced = status.entities["assets"].last_synced_at
        assert synced is not None
        async with pool.pull(
            "assets", TOKENS[:1], checkpoint=checkpoint, since_sync_status=True
        ) as pull:
            got = [item.record["id"] async for item in pull]
        (chain,) = pull.report.chains
        assert chain.modified_after_source == "sync-status"
        assert chain.modified_after == (synced - OVERLAP).strftime("%Y-%m-%dT%H:%M:%SZ")
        # Not the stored mark (the data's newest, in 2024): only what changed since the sync.
        assert got == [changed["id"]]
