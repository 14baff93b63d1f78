"""Bulk pulls against the embedded mock: completeness, isolation, resume, cancellation."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sqlite3
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from makini_async import (
    BreakerPolicy,
    JSONCheckpoint,
    MakiniPool,
    Outcome,
    ReauthorizationRequired,
    RetryPolicy,
    SQLiteCheckpoint,
    Timeouts,
    set_testing,
)
from makini_async.testing import FaultPlan, MockMakini
from tests.integration.scaleutil import MIX

ENTITIES = ["work-orders", "assets"]
OVERLAP = dt.timedelta(seconds=300)


def expected(
    server: MockMakini, tokens: list[str], entities: list[str]
) -> set[tuple[str, str, str]]:
    return {
        (name, entity, r["id"])
        for name, token in tokens_with_names(tokens)
        for entity in entities
        for r in server.records(token, entity)
    }


def client_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks of the pull (the mock server's own handler tasks share the loop)."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("makini-pull")]


def tokens_with_names(tokens: list[str]) -> list[tuple[str, str]]:
    return [(f"plant-{i:04d}", token) for i, token in enumerate(tokens)]


async def test_300_connections_with_faults_deliver_exactly_the_expected_records() -> None:
    set_testing(True)  # retries happen, waits are zero
    plan = MIX
    tokens = [f"tok-secret-{i:04d}" for i in range(300)]
    async with (
        MockMakini(records_per_entity=120, faults=plan) as server,
        MakiniPool(
            base_url=server.url,
            as_dicts=True,
            retry=RetryPolicy(attempts=12),
            breaker=BreakerPolicy(threshold=50),
        ) as pool,
    ):
        got: list[tuple[str, str, str]] = []
        async with pool.pull(ENTITIES, tokens_with_names(tokens)) as pull:
            async for item in pull:
                got.append((item.connection, item.entity.value, item.record["id"]))
        want = expected(server, tokens, ENTITIES)
        assert len(got) == len(set(got))
        assert set(got) == want
        report = pull.report
        assert report.ok
        assert report.records == len(want)
        assert report.retries > 0
        assert report.rate_limited > 0
        assert report.connections_done == report.connections_total == 300
        assert sum(server.stats(t).statuses[429] for t in tokens) == report.rate_limited
        assert not any(t in report.summary() for t in tokens)


async def test_typed_pull_yields_records_tagged_with_connection() -> None:
    async with MockMakini(records_per_entity=30) as server, MakiniPool(base_url=server.url) as pool:
        items = [
            i async for i in pool.pull("purchase-orders", [("acme", "tok-a"), ("globex", "tok-b")])
        ]
    assert {i.connection for i in items} == {"acme", "globex"}
    assert len(items) == 60
    assert all(type(i.record).__name__ == "PurchaseOrder" for i in items)


async def test_stalled_and_reauth_connections_do_not_hold_up_the_rest() -> None:
    tokens = [f"tok-{i:03d}" for i in range(100)]
    async with (
        MockMakini(records_per_entity=40) as server,
        MakiniPool(
            base_url=server.url,
            as_dicts=True,
            timeouts=Timeouts(read=0.3, total=0.6),
            retry=RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.01),
        ) as pool,
    ):
        server.configure_connection(tokens[10], faults=FaultPlan(seed=1, stall=1.0))
        server.configure_connection(tokens[20], status="reauthorization_required")
        started = time.monotonic()
        async with pool.pull("work-orders", tokens_with_names(tokens), concurrency=20) as pull:
            count = sum([1 async for _ in pull])
        elapsed = time.monotonic() - started
    report = pull.report
    outcomes = {c.connection: c.outcome for c in report.chains}
    assert outcomes["plant-0010"] is Outcome.FAILED
    assert outcomes["plant-0020"] is Outcome.REAUTHORIZATION_REQUIRED
    assert sum(o is Outcome.COMPLETED for o in outcomes.values()) == 98
    assert count == 98 * 40
    assert report.failed_connections == ["plant-0010", "plant-0020"]
    # The stalled connection's budget: 2 attempts x 0.6 s total timeout, plus a little.
    assert elapsed < 2 * 0.6 + 1.0


async def test_raise_on_error_raises_the_first_failure() -> None:
    async with MockMakini(records_per_entity=10) as server, MakiniPool(base_url=server.url) as pool:
        server.configure_connection("tok-bad", status="reauthorization_required")
        with pytest.raises(ReauthorizationRequired):
            async with pool.pull("assets", ["tok-bad", "tok-good"], raise_on_error=True) as pull:
                async for _ in pull:
                    pass
        assert client_tasks() == []


async def test_cancelling_the_consumer_leaves_nothing_behind() -> None:
    async with MockMakini(records_per_entity=500, faults=FaultPlan(latency=0.002)) as server:
        async with MakiniPool(base_url=server.url, as_dicts=True) as pool:
            seen = 0
            first_page = asyncio.Event()

            async def consume() -> None:
                nonlocal seen
                async with pool.pull(
                    ENTITIES, [f"t{i}" for i in range(50)], concurrency=10
                ) as pull:
                    async for _ in pull:
                        seen += 1
                        first_page.set()

            task = asyncio.create_task(consume())
            await first_page.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert client_tasks() == []
            assert 0 < seen < 50 * 2 * 500
            # With the pool still open: no request is left in flight at the server.
            for _ in range(100):
                if sum(server.stats(f"t{i}").in_flight for i in range(50)) == 0:
                    break
                await asyncio.sleep(0.01)
            assert sum(server.stats(f"t{i}").in_flight for i in range(50)) == 0
            # ...and the pool still works.
            assert (
                len([r async for r in pool.connection("t0").list("assets", page_size=500)]) == 500
            )


async def test_slow_consumer_applies_backpressure() -> None:
    async with (
        MockMakini(records_per_entity=1000) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        tokens = [f"t{i}" for i in range(40)]
        async with pool.pull("work-orders", tokens, concurrency=8) as pull:
            delivered = 0
            async for _page in pull.pages():
                delivered += 1
                await asyncio.sleep(0.001)
                fetched = sum(server.stats(t).requests for t in tokens)
                # Bounded: one page per worker ahead of the consumer, plus the one here.
                assert fetched - delivered <= 8 + 1
                if delivered == 30:
                    break


@pytest.mark.parametrize("kind", ["sqlite", "json"])
async def test_checkpoint_resume_completes_the_union(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"pull.{'sqlite' if kind == 'sqlite' else 'json'}"
    tokens = [f"tok-{i}" for i in range(6)]
    async with (
        MockMakini(records_per_entity=300) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        want = expected(server, tokens, ENTITIES)
        first: set[tuple[str, str, str]] = set()
        async with pool.pull(
            ENTITIES, tokens_with_names(tokens), checkpoint=path, concurrency=3
        ) as pull:
            pages = 0
            async for page in pull.pages():
                first.update((page.connection, page.entity.value, r["id"]) for r in page.records)
                pages += 1
                if pages == 15:
                    break  # a crash, as far as the checkpoint can tell
        assert first < want
        second: set[tuple[str, str, str]] = set()
        async with pool.pull(ENTITIES, tokens_with_names(tokens), checkpoint=path) as pull:
            async for item in pull:
                second.add((item.connection, item.entity.value, item.record["id"]))
        assert first | second == want
        # Resumed where it stood, not from scratch: at most the pages in hand are repeated.
        assert len(first & second) <= 15 * 100
        assert len(second) < len(want)
        assert pull.report.ok
        assert any(c.resumed for c in pull.report.chains)
        # An incremental pull after a complete one brings only what changed since the
        # newest record each chain had landed, less the overlap (300 s).
        newest = {
            (name, entity): max(r["updated_at"] for r in server.records(token, entity))
            for name, token in tokens_with_names(tokens)
            for entity in ENTITIES
        }
        changed = server.records(tokens[0], "assets")[5]["id"]
        server.update(tokens[0], "assets", changed, {"name": "renamed"})
        async with pool.pull(ENTITIES, tokens_with_names(tokens), checkpoint=path) as pull:
            third = [(i.connection, i.entity.value, i.record) async for i in pull]
        assert ("plant-0000", "assets", changed) in [(c, e, r["id"]) for c, e, r in third]
        for name, entity, record in third:
            if record["id"] != changed:  # the overlap: within 300 s of its chain's newest
                top = dt.datetime.fromisoformat(newest[name, entity])
                assert dt.datetime.fromisoformat(record["updated_at"]) >= top - OVERLAP
        assert all(c.start == "incremental" for c in pull.report.chains)
        assert all(c.modified_after_source == "data" for c in pull.report.chains)
    store = SQLiteCheckpoint(path) if kind == "sqlite" else JSONCheckpoint(path)
    try:
        states = list(store.items())
        assert len(states) == len(tokens) * 2
        assert all(not s.in_progress and s.high_water for _c, _e, s in states)
        assert not any(t in repr(states) for t in tokens)
    finally:
        store.close()


async def test_since_sync_status_uses_last_sync_time() -> None:
    async with (
        MockMakini(records_per_entity=50) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool,
    ):
        async with pool.pull("assets", ["tok-a"], since_sync_status=True) as pull:
            items = [i async for i in pull]
        (chain,) = pull.report.chains
        assert chain.modified_after is not None
        # The mock's last sync is "now": nothing modified after it.
        assert items == []


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from makini_async import MakiniPool, set_testing

    async def main(url, checkpoint, out, n):
        set_testing(True)
        tokens = [(f"plant-{i:04d}", f"tok-secret-{i:04d}") for i in range(n)]
        async with MakiniPool(base_url=url, as_dicts=True) as pool:
            async with pool.pull(["work-orders", "assets"], tokens, checkpoint=checkpoint,
                                 concurrency=8) as pull:
                with open(out, "a") as fh:
                    async for page in pull.pages():
                        fh.write("".join(f"{page.connection}\\t{page.entity.value}\\t{r['id']}\\n"
                                         for r in page.records))
                        fh.flush()
        sys.exit(0 if pull.report.ok else 1)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
    """
)


def _cursors_committed(path: Path) -> bool:
    """Whether the SQLite checkpoint holds a chain past its first page."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT state FROM chains").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return any('"cursor"' in state and '"cursor":null' not in state for (state,) in rows)


async def test_sigkill_mid_pull_then_resume_delivers_everything(tmp_path: Path) -> None:
    checkpoint = tmp_path / "pull.sqlite"
    out = tmp_path / "delivered.tsv"
    n = 30
    tokens = [f"tok-secret-{i:04d}" for i in range(n)]
    plan = FaultPlan(seed=9, latency=0.004, error_503=0.03, drop=0.02)
    async with MockMakini(records_per_entity=400, faults=plan) as server:
        args = [sys.executable, "-c", CHILD, server.url, str(checkpoint), str(out), str(n)]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        child = await asyncio.create_subprocess_exec(*args, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if out.exists() and out.stat().st_size > 60_000 and _cursors_committed(checkpoint):
                break  # pages delivered, and some cursors committed (saves go in groups)
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
        first = out.read_text().splitlines()
        want = expected(server, tokens, ENTITIES)
        assert 0 < len(set(first)) < len(want)
        child = await asyncio.create_subprocess_exec(*args, env=env)
        assert await asyncio.wait_for(child.wait(), 60) == 0
        lines = out.read_text().splitlines()
        delivered = {tuple(line.split("\t")) for line in lines}
        assert delivered == want
        # Resumed, not restarted: the second run delivered far less than everything.
        assert len(lines) - len(first) < len(want)
