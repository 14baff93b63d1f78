"""Several sync instances on one database, and the command killed, restarted and reloaded."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from makini_async import MakiniPool
from makini_async.testing import FaultPlan, MockMakini

TOKENS = [(f"site-{i:02d}", f"token-inst-{i}") for i in range(8)]


async def landed(dsn: str) -> list[tuple[str, str, str]]:
    """Every row of the work orders' table: (connection, id, record)."""
    db = await asyncpg.connect(dsn)
    try:
        exists = await db.fetchval("SELECT to_regclass('makini_work_orders') IS NOT NULL")
        if not exists:
            return []
        found = await db.fetch("SELECT connection, id, record FROM makini_work_orders")
    finally:
        await db.close()
    return [(r["connection"], r["id"], r["record"]) for r in found]


def wanted(server: MockMakini, tokens: list[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(n, r["id"]) for n, t in tokens for r in server.records(t, "work-orders")}


async def until(check: Any, timeout: float = 30.0) -> None:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            pytest.fail("timed out")
        await asyncio.sleep(0.1)


async def test_two_instances_never_pull_one_chain_at_once_and_every_change_lands_once(
    pg_dsn: str,
) -> None:
    faults = FaultPlan(latency=0.05)  # every page takes a while: overlapping pulls would show
    async with (
        MockMakini(records_per_entity=450, faults=faults) as server,
        MakiniPool(base_url=server.url, as_dicts=True) as pool_a,
        MakiniPool(base_url=server.url, as_dicts=True) as pool_b,
        pool_a.sync("work-orders", TOKENS, sink=pg_dsn, every=0.5, instance="a", lease=5) as a,
        pool_b.sync("work-orders", TOKENS, sink=pg_dsn, every=0.5, instance="b", lease=5) as b,
    ):
        changed = []
        for round_ in range(5):
            await asyncio.sleep(0.6)
            for name, token in TOKENS[round_ : round_ + 2]:
                rid = server.records(token, "work-orders")[round_ * 10]["id"]
                await server.change(token, "work-orders", rid, {"title": f"r{round_}"})
                changed.append((name, rid, f"r{round_}"))

        async def all_landed() -> bool:
            rows = {(c, i): r for c, i, r in await landed(pg_dsn)}
            return all(f'"{title}"' in rows.get((c, i), "") for c, i, title in changed)

        await until(all_landed)
        rows = await landed(pg_dsn)
        assert len(rows) == len({(c, i) for c, i, _ in rows}) == len(wanted(server, TOKENS))
        for _, token in TOKENS:
            assert server.stats(token).max_concurrent == 1, token  # never two pulls at once
        assert a.service.pulls_run > 0
        assert b.service.pulls_run > 0  # the work is shared


# -- the command ---------------------------------------------------------------------------


def sync_command(
    tmp_path: Path, server: MockMakini, dsn: str, *extra: str
) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "SYNC_DSN": dsn, "PYTHONUNBUFFERED": "1"}
    argv = [
        sys.executable,
        "-c",
        "from makini_async.cli import main; raise SystemExit(main())",
        "sync",
        "--entity",
        "work-orders",
        "--tokens-file",
        str(tmp_path / "tokens.txt"),
        "--sink",
        "env:SYNC_DSN",
        "--base-url",
        server.url,
        *extra,
    ]
    return argv, env


def write_tokens(tmp_path: Path, tokens: list[tuple[str, str]]) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text("".join(f"{n},{t}\n" for n, t in tokens))
    path.chmod(0o600)


async def start(argv: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:  # the child has its own descriptor
        return await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )


async def test_a_killed_instance_is_taken_over_and_a_restart_resumes_with_nothing_lost(
    pg_dsn: str, tmp_path: Path
) -> None:
    write_tokens(tmp_path, TOKENS)
    log = tmp_path / "sync.log"
    faults = FaultPlan(latency=0.3)
    async with MockMakini(records_per_entity=1500, faults=faults) as server:
        expected = wanted(server, TOKENS)
        argv, env = sync_command(tmp_path, server, pg_dsn, "--every", "60", "--lease", "2")
        first = await start([*argv, "--instance", "a"], env, log)

        async def some() -> bool:
            return len(await landed(pg_dsn)) > 0

        await until(some)
        first.kill()  # kill -9 in the middle of the first mirror
        await first.wait()
        assert 0 < len(await landed(pg_dsn)) < len(expected)

        # Another instance takes the dead one's chains once their leases expire.
        second = await start([*argv, "--instance", "b"], env, log)

        async def complete() -> bool:
            return len(await landed(pg_dsn)) == len(expected)

        await until(complete, timeout=60)
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0

        # A restart of the same instance resumes from its state: nothing is pulled in full again.
        before = sum(server.stats(t).requests for _, t in TOKENS)
        third = await start([*argv, "--instance", "b"], env, log)
        await asyncio.sleep(3)
        third.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(third.wait(), 30) == 0
        after = sum(server.stats(t).requests for _, t in TOKENS)
        assert after - before <= len(TOKENS)  # at most its incremental pulls, none due yet
    rows = await landed(pg_dsn)
    assert {(c, i) for c, i, _ in rows} == expected
    assert len(rows) == len(expected)
    text = log.read_text()
    assert "Traceback" not in text
    assert all(token not in text for _, token in TOKENS)


async def test_sighup_adds_and_removes_connections(pg_dsn: str, tmp_path: Path) -> None:
    log = tmp_path / "sync.log"
    write_tokens(tmp_path, TOKENS[:3])
    async with MockMakini(records_per_entity=50) as server:
        argv, env = sync_command(tmp_path, server, pg_dsn, "--every", "1", "--instance", "x")
        process = await start(argv, env, log)
        try:

            async def names(want: set[str]) -> bool:
                return {c for c, _, _ in await landed(pg_dsn)} == want

            await until(lambda: names({n for n, _ in TOKENS[:3]}))
            write_tokens(tmp_path, [TOKENS[1], TOKENS[2], TOKENS[3], TOKENS[4]])
            process.send_signal(signal.SIGHUP)
            await until(lambda: names({n for n, _ in TOKENS[:5]}))
            await asyncio.sleep(1.5)  # the removed connection's next pull would be due by now
            removed = server.stats(TOKENS[0][1]).requests
            await asyncio.sleep(2.5)
            assert server.stats(TOKENS[0][1]).requests == removed
            assert server.stats(TOKENS[1][1]).requests > 1  # the others go on
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
    assert "Traceback" not in log.read_text()


async def test_the_reauthorization_command_is_run_once_with_the_name_never_the_token(
    pg_dsn: str, tmp_path: Path
) -> None:
    log = tmp_path / "sync.log"
    told = tmp_path / "told.txt"
    write_tokens(tmp_path, TOKENS[:3])
    hook = f"sh -c 'echo \"$MAKINI_CONNECTION\" >> {told}'"
    async with MockMakini(records_per_entity=10) as server:
        server.configure_connection(TOKENS[1][1], status="reauthorization_required")
        argv, env = sync_command(
            tmp_path, server, pg_dsn, "--every", "1", "--on-reauthorization", hook
        )
        process = await start(argv, env, log)
        try:

            async def was_told() -> bool:
                return told.exists() and told.read_text().strip() != ""

            await until(was_told)
            calls = server.stats(TOKENS[1][1]).requests
            await asyncio.sleep(3)  # three intervals: paused, and told once
            assert server.stats(TOKENS[1][1]).requests == calls
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
    assert told.read_text().split() == [TOKENS[1][0]]
    assert TOKENS[1][1] not in told.read_text() + log.read_text()
