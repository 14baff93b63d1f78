"""SIGINT and SIGTERM sent to ``makini-async pull`` mid-pull: a summary, then a clean resume.

Real signals to a real subprocess of the command, pulling from the mock
server: the command stops fetching, lets what it fetched land, prints its
summary, writes ``--summary-json`` and exits 130 or 143; the summary's
records are exactly the lines that landed, and a rerun on the same
checkpoint completes with every record once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

import orjson
import pytest

from makini_async.testing import FaultPlan, MockMakini

from .scaleutil import landed
from .test_cli import CLI, write_tokens

if TYPE_CHECKING:
    from pathlib import Path

ENTITIES = ("work-orders", "assets")
TOKENS = [f"tok_stop_{i:03d}_{'z' * 16}" for i in range(12)]
NAMES = [f"plant-{i:03d}" for i in range(12)]
RECORDS = 400
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _args(tmp_path: Path, url: str, *extra: str) -> list[str]:
    tokens_file = write_tokens(tmp_path / "tokens.txt", TOKENS, NAMES)
    return [
        *CLI, "pull", "--entity", ENTITIES[0], "--entity", ENTITIES[1],
        "--tokens-file", str(tokens_file), "--out", str(tmp_path / "out"),
        "--checkpoint", str(tmp_path / "pull.sqlite"), "--base-url", url,
        "--concurrency", "4", "--summary-json", str(tmp_path / "summary.json"),
        "--progress-interval", "0.2", *extra,
    ]  # fmt: skip


async def _start(args: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def _when_landed(out: Path, lines: int) -> None:
    """Wait until at least ``lines`` records have landed under ``out`` (any unit, any entity)."""
    for _ in range(2000):
        await asyncio.sleep(0.01)
        found = sum(p.read_bytes().count(b"\n") for p in out.rglob("*.jsonl"))
        if found >= lines:
            return
    pytest.fail("the pull landed nothing in 20 s")


def _want(server: MockMakini) -> set[tuple[str, str, str]]:
    return {
        (name, entity, record["id"])
        for name, token in zip(NAMES, TOKENS, strict=True)
        for entity in ENTITIES
        for record in server.records(token, entity)
    }


async def _interrupt_then_resume(
    tmp_path: Path, sig: signal.Signals, *extra: str, after: int = 600
) -> None:
    out = tmp_path / "out"
    async with MockMakini(
        records_per_entity=RECORDS, faults=FaultPlan(seed=3, latency=0.01)
    ) as server:
        args = _args(tmp_path, server.url, *extra)
        proc = await _start(args)
        await _when_landed(out, after)
        proc.send_signal(sig)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
        text, err = stdout.decode(), stderr.decode()
        assert proc.returncode == CODES[sig], err
        assert "Traceback" not in err
        assert f"interrupted ({sig.name})" in err
        assert "Summary" in text
        assert f"Interrupted by {sig.name}" in text
        summary = orjson.loads((tmp_path / "summary.json").read_bytes())
        assert summary["interrupted"] == {"signal": sig.name}
        assert summary["ok"] is False
        # What the summary says landed is exactly what is in the files, once each.
        got = landed(out)
        assert max(got.values()) == 1
        assert summary["records"] == len(got)
        for entity in ENTITIES:
            in_files = sum(n for (_, e, _), n in got.items() if e == entity)
            assert summary["records_by_entity"].get(entity, 0) == in_files
        assert 0 < len(got) < len(NAMES) * len(ENTITIES) * RECORDS  # stopped mid-pull
        assert summary["outcomes"].get("cancelled", 0) > 0
        stopped = {
            (failure["connection"], entity)
            for failure in summary["failures"]
            if failure["outcome"] == "cancelled"
            for entity in failure["entities"]
        }
        assert stopped
        # The rerun resumes: every record. A chain the signal stopped repeats nothing
        # (its landed pages had their checkpoint); a chain that had completed runs
        # incrementally, so JSON Lines may repeat its overlap, as the documentation says.
        proc = await _start(args)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, stderr.decode()
        got = landed(out)
        assert set(got) == _want(server)
        assert max(n for (c, e, _), n in got.items() if (c, e) in stopped) == 1
        summary = orjson.loads((tmp_path / "summary.json").read_bytes())
        assert summary["interrupted"] is None
        assert summary["ok"] is True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_stops_the_pull_with_a_summary_and_a_clean_resume(
    tmp_path: Path, sig: signal.Signals
) -> None:
    await _interrupt_then_resume(tmp_path, sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_a_sharded_pull_with_a_summary_and_a_clean_resume(
    tmp_path: Path, sig: signal.Signals
) -> None:
    await _interrupt_then_resume(tmp_path, sig, "--workers", "2", after=1200)
    assert len(list((tmp_path / "out").glob("bucket-*"))) > 1  # sharded indeed


async def test_a_second_signal_exits_at_once_and_the_rerun_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with MockMakini(
        records_per_entity=RECORDS, faults=FaultPlan(seed=3, latency=0.01)
    ) as server:
        args = _args(tmp_path, server.url)
        proc = await _start(args)
        await _when_landed(out, 600)
        # Two signals at once (two kinds, so the kernel cannot merge them): the
        # second arrives while the first is being handled.
        os.kill(proc.pid, signal.SIGINT)
        os.kill(proc.pid, signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
        err = stderr.decode()
        assert proc.returncode in (130, 143), err  # the first delivered signal's code
        assert "again: exiting now" in err
        assert "Summary" not in stdout.decode()
        assert not (tmp_path / "summary.json").exists()
        proc = await _start(args)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, stderr.decode()
        # At least once: a page that landed without its checkpoint may come twice.
        assert set(landed(out)) == _want(server)


async def test_a_second_signal_to_a_sharded_pull_leaves_no_worker_writing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with MockMakini(
        records_per_entity=RECORDS, faults=FaultPlan(seed=3, latency=0.01)
    ) as server:
        args = _args(tmp_path, server.url, "--workers", "2")
        proc = await _start(args)
        await _when_landed(out, 1200)
        os.kill(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGINT)
        # communicate() ends only once no process holds the command's pipes: every
        # worker (idle ones included) and the fork server are gone too.
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        # The code of whichever signal the kernel delivered first.
        assert proc.returncode in (130, 143), stderr.decode()
        assert "again: exiting now" in stderr.decode()
        # The workers were killed with the command: nothing lands after it ended.
        sizes = {p: p.stat().st_size for p in out.rglob("*.jsonl")}
        await asyncio.sleep(1.0)
        assert {p: p.stat().st_size for p in out.rglob("*.jsonl")} == sizes
        proc = await _start(args)
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, stderr.decode()
        assert set(landed(out)) == _want(server)
