"""One driver at a time on a PostgreSQL checkpoint, and units fenced by its epoch (real server)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from makini_async import CheckpointInUse, LeaseLost, SinkError, set_testing
from makini_async.bulk import PulledPage
from makini_async.checkpoint import ChainState, PostgresCheckpoint, PullLease
from makini_async.entities import Entity
from makini_async.scale import ProcessEngine, ShardedPull
from makini_async.sinks import PostgresSink
from makini_async.testing import FaultPlan, MockMakini

from .pgutil import fetch, states
from .scaleutil import ENTITIES, expected, named_tokens, pool_options


async def test_a_second_lease_on_one_name_is_refused_until_the_first_is_given_up(
    pg_dsn: str,
) -> None:
    first = PullLease(pg_dsn, "pull A")
    fence = await first.acquire()
    try:
        with pytest.raises(CheckpointInUse) as caught:
            await PullLease(pg_dsn, "pull A").acquire()
        assert "another pull is running on checkpoint 'pull A'" in caught.value.message
        other = PullLease(pg_dsn, "pull B")  # another checkpoint: its own lease
        await other.acquire()
        await other.release()
    finally:
        await first.release()
    second = PullLease(pg_dsn, "pull A")
    again = await second.acquire()
    await second.release()
    assert again.epoch == fence.epoch + 1


async def test_a_driver_that_dies_releases_its_lease_at_once(pg_dsn: str) -> None:
    holder = textwrap.dedent(
        f"""
        import asyncio, sys
        from makini_async.checkpoint import PullLease
        async def main():
            lease = PullLease({pg_dsn!r}, "pull K")
            await lease.acquire()
            print("held", flush=True)
            await asyncio.sleep(600)
        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", holder, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"held"
        with pytest.raises(CheckpointInUse):
            await PullLease(pg_dsn, "pull K").acquire()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
    # PostgreSQL ends the dead driver's session as its socket closes.
    for _ in range(50):
        lease = PullLease(pg_dsn, "pull K")
        try:
            fence = await lease.acquire()
        except CheckpointInUse:
            await asyncio.sleep(0.1)
            continue
        await lease.release()
        assert fence.epoch == 2
        return
    pytest.fail("the killed driver's lease was never released")


async def test_a_store_fenced_by_an_old_epoch_writes_nothing(pg_dsn: str) -> None:
    old = PullLease(pg_dsn, "pull F")
    fence = await old.acquire()
    store = PostgresCheckpoint(pg_dsn)
    await store.open()
    store.fence(fence)
    try:
        await store.save("acme", "work-orders", ChainState(cursor="c1"))
        await old.release()
        newer = PullLease(pg_dsn, "pull F")
        await newer.acquire()  # epoch 2: units of epoch 1 are fenced out
        try:
            with pytest.raises(LeaseLost) as caught:
                await store.save("acme", "work-orders", ChainState(cursor="c2"))
            assert "taken over (epoch 1 -> 2)" in caught.value.message
        finally:
            await newer.release()
        assert (await store.load("acme", "work-orders")) == ChainState(cursor="c1")
    finally:
        await store.close()


@pytest.mark.parametrize("state", [ChainState(cursor="c1"), None], ids=["cursor", "no-cursor"])
async def test_a_sink_fenced_by_an_old_epoch_lands_no_rows(
    pg_dsn: str, state: ChainState | None
) -> None:
    old = PullLease(pg_dsn, "pull S")
    fence = await old.acquire()
    await old.release()
    newer = PullLease(pg_dsn, "pull S")
    await newer.acquire()
    sink = PostgresSink(pg_dsn, max_batch_delay=0)
    sink.checkpoint_store.fence(fence)
    failures: list[SinkError] = []
    sink.report_failures(lambda _connection, _entity, exc: failures.append(exc))
    try:
        await sink.open([Entity.WORK_ORDERS])
        record = {"id": "w1", "updated_at": "2026-01-01T00:00:00Z"}
        page = PulledPage("acme", Entity.WORK_ORDERS, [record], None, "c1", "req_1")
        await sink.write(page, state)
        try:
            await sink.flush()
        except SinkError as exc:
            failures.append(exc)
    finally:
        with contextlib.suppress(SinkError):
            await sink.close()
        await newer.release()
    assert failures
    assert all("LeaseLost" in exc.message for exc in failures)
    assert await fetch(pg_dsn, "SELECT id FROM makini_work_orders") == []
    assert await states(pg_dsn) == {}


async def test_two_sharded_pulls_on_one_postgres_destination_the_second_is_refused(
    tmp_path: Path, pg_dsn: str
) -> None:
    set_testing(True)
    tokens = named_tokens(8)
    async with MockMakini(records_per_entity=400, faults=FaultPlan(latency=0.02)) as server:

        def pull() -> ShardedPull:
            return ShardedPull(
                ENTITIES,
                tokens,
                sink=pg_dsn,
                engine=ProcessEngine(1),
                pool_options=pool_options(server),
                as_dicts=True,
            )

        first = pull()
        running = asyncio.create_task(first.run())
        # Polled: its lease is taken before any unit starts.
        while first.units[0].attempt is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        second = pull()
        with pytest.raises(CheckpointInUse):
            await second.run()
        report = await asyncio.wait_for(running, 120)
        want = expected(server, tokens)
    assert report.ok
    rows = [
        (r[0], r[1])
        for table in ("makini_work_orders", "makini_assets")
        for r in await fetch(pg_dsn, f"SELECT connection, id FROM {table}")  # noqa: S608
    ]
    assert len(rows) == len(set(rows)) == len(want)
