"""A PostgreSQL destination that goes away mid-pull: restarted, or down for good.

A server of its own (pgserver, restarted and stopped with its ``pg_ctl``), so
the session's shared server is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest

from makini_async import MakiniPool, PageSizes, SinkUnavailable, set_testing
from makini_async.bulk import Outcome
from makini_async.sinks import PostgresSink
from makini_async.testing import MockMakini

from .pgutil import fetch
from .test_cli import run_cli, write_tokens

N = 12
RECORDS = 300
SIZES = PageSizes({"assets": 10})
TOKENS = [f"tok-secret-outage-{i:02d}-{'z' * 12}" for i in range(N)]
NAMES = [f"plant-{i}" for i in range(N)]


@pytest.fixture(scope="module")
def own_pg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs on XDG_RUNTIME_DIR: harmless here
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("own-pg"), cleanup_mode="stop")
    yield server
    server.cleanup()
    # A server this module restarted with pg_ctl is not the process pgserver
    # started, and cleanup() may leave it running: stop it here too.
    with contextlib.suppress(Exception):
        _pg_ctl(server, "stop")


def _pg_ctl(server: Any, *args: str) -> None:
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", *args], pgdata=server.pgdata, user=server.system_user, timeout=60)


def _start(server: Any) -> None:
    """Start it again as pgserver started it: no TCP, its socket in its own folder."""
    socket_dir = server.get_postmaster_info().socket_dir
    _pg_ctl(server, "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start")


@pytest.fixture
def dsn(own_pg: Any) -> str:
    import uuid

    name = "o_" + uuid.uuid4().hex[:12]
    own_pg.psql(f"CREATE DATABASE {name};")
    return str(own_pg.get_uri(name))


async def _started_at(dsn: str) -> Any:
    return (await fetch(dsn, "SELECT pg_postmaster_start_time()"))[0][0]


async def test_a_restart_mid_pull_is_waited_out_and_every_record_lands_once(
    own_pg: Any, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    set_testing(True)
    before = await _started_at(dsn)
    restart: asyncio.Task[None] | None = None
    async with MockMakini(records_per_entity=RECORDS) as server:
        sink = PostgresSink(dsn)
        async with (
            MakiniPool(base_url=server.url, as_dicts=True, page_sizes=SIZES) as pool,
            pool.pull("assets", list(zip(NAMES, TOKENS, strict=True)), sink=sink) as pull,
        ):
            pages = after = 0
            with caplog.at_level(logging.WARNING, logger="makini_async"):
                async for _page in pull.pages():
                    pages += 1
                    after += restart is not None and restart.done()
                    if pages == 20:
                        restart = asyncio.create_task(asyncio.to_thread(_pg_ctl, own_pg, "restart"))
                    elif restart is not None and not restart.done():
                        # A slow consumer while the server restarts: batches commit meanwhile.
                        await asyncio.sleep(0.01)
            assert restart is not None
            await restart
    assert await _started_at(dsn) > before, "the server must have restarted"
    # The pull crossed the restart: pages landed after it (whether a batch met it
    # mid-commit, and so logged a retry, is a matter of timing).
    assert after > 0
    assert {c.outcome for c in pull.report.chains} == {Outcome.COMPLETED}
    rows = await fetch(dsn, "SELECT connection, id FROM makini_assets")
    assert len(rows) == N * RECORDS
    assert len({(r[0], r[1]) for r in rows}) == N * RECORDS


async def test_a_destination_down_past_the_deadline_ends_the_pull_once_and_a_rerun_completes(
    own_pg: Any, dsn: str, tmp_path: Path
) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt", TOKENS, NAMES)
    summary = tmp_path / "outcome.json"
    async with MockMakini(records_per_entity=RECORDS) as server:
        args = (
            "pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url", server.url,
            "--sink", dsn, "--summary-json", str(summary), "--sink-deadline", "2",
        )  # fmt: skip
        # Stopped once the pull is under way: its writes wait 2 s, then it ends.
        proc = asyncio.create_task(run_cli(*args, "--concurrency", "2", timeout=90))
        for _ in range(400):
            await asyncio.sleep(0.05)
            try:
                if (await fetch(dsn, "SELECT count(*) FROM makini_assets"))[0][0] > 0:
                    break
            except Exception:  # noqa: S112 - the table is not there yet
                continue
        await asyncio.to_thread(_pg_ctl, own_pg, "stop")
        try:
            code, stdout, stderr = await proc
        finally:
            await asyncio.to_thread(_start, own_pg)
        assert code == 3, stdout + stderr
        assert "sink unavailable:" in stderr
        # One cause, told once: not a failure of each connection.
        assert "Failed connections: 0" in stdout
        data = orjson.loads(summary.read_bytes())
        assert data["sink_unavailable"]
        # Schedulers still get every stopped chain, under the one cause.
        assert {g["error"] for g in data["failure_groups"]} == {"SinkUnavailable"}
        for token in TOKENS:
            assert token not in stdout + stderr + summary.read_text()
        # The database is back: the rerun resumes and lands every record once.
        code, stdout, stderr = await run_cli(*args, timeout=90)
        assert code == 0, stdout + stderr
    rows = await fetch(dsn, "SELECT connection, id FROM makini_assets")
    assert len(rows) == N * RECORDS
    assert len({(r[0], r[1]) for r in rows}) == N * RECORDS


async def test_waits_use_the_injected_clock_and_end_with_sink_unavailable(
    own_pg: Any, dsn: str
) -> None:
    set_testing(True)
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    # A port nothing listens on: every connection attempt is refused at once.
    unreachable = "postgresql://postgres@127.0.0.1:9/nowhere"
    sink = PostgresSink(unreachable, retry_deadline=30, sleep=sleep, clock=lambda: now[0])
    async with MockMakini(records_per_entity=20) as server:
        async with MakiniPool(base_url=server.url, as_dicts=True) as pool:
            with pytest.raises(SinkUnavailable, match="sink unavailable") as caught:
                async with pool.pull("assets", TOKENS[:2], sink=sink) as pull:
                    await pull.run()
    assert 20 <= now[0] <= 30
    assert "ConnectionRefusedError" in str(caught.value)
