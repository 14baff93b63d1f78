"""After heavy work nothing is left behind, and a long pull's memory stays flat."""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
from typing import Any

import pytest

from makini_async import MakiniPool, Outcome, PageSizes, set_testing
from makini_async.testing import FaultPlan, MockMakini

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/self for sockets and memory"
)


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:  # noqa: PERF203 - an fd closed since listdir: not ours to count
            continue
    return count


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def others(tasks: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    return {t for t in tasks if t is not asyncio.current_task() and not t.done()}


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()


async def test_heavy_pulls_leave_no_task_and_no_socket() -> None:
    set_testing(True)
    tokens = [(f"plant-{i:03d}", f"tok_res_{i:03d}") for i in range(300)]
    faults = FaultPlan(seed=8, error_503=0.03, drop=0.02, stall=0.002, stall_seconds=30)
    await settle()
    sockets_before = open_sockets()
    tasks_before = others(asyncio.all_tasks())
    async with MockMakini(records_per_entity=150, faults=faults) as server:
        async with MakiniPool(base_url=server.url, as_dicts=True) as pool:
            async with pool.pull(["work-orders", "assets"], tokens) as pull:
                count = sum([1 async for _ in pull])
            # A pull abandoned half-way is cleaned up too.
            async with pool.pull(["vendors"], tokens) as abandoned:
                async for _ in abandoned:
                    break
    await settle()
    assert pull.report.outcomes().get(Outcome.COMPLETED, 0) >= 590
    assert count >= 590 * 150
    assert abandoned.report.outcomes()[Outcome.CANCELLED] > 0
    assert others(asyncio.all_tasks()) == tasks_before
    assert open_sockets() == sockets_before


@pytest.fixture
async def server_process(unused_tcp_port: int) -> Any:
    """The mock in a process of its own, so this process's memory is the client's alone."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "makini_async.testing", "--port", str(unused_tcp_port),
        "--records", "300",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"listening on" in line
        yield f"http://127.0.0.1:{unused_tcp_port}"
    finally:
        proc.terminate()
        await proc.wait()


@pytest.mark.slow
async def test_a_long_pull_keeps_its_memory_flat(server_process: str) -> None:
    # 12,000 connections, each a few pages: 3.6 million records.
    set_testing(True)
    tokens = [(f"site-{i:05d}", f"tok_soak_{i:05d}") for i in range(12_000)]
    samples: list[tuple[int, float]] = []
    sizes = PageSizes({"work-orders": 100})
    async with MakiniPool(base_url=server_process, as_dicts=True, page_sizes=sizes) as pool:
        async with pool.pull("work-orders", tokens) as pull:
            pages = 0
            async for _ in pull.pages():
                pages += 1
                if pages % 3_000 == 0:
                    gc.collect()
                    samples.append((pages, rss_mib()))
    assert pull.report.ok
    assert pull.report.records == 12_000 * 300
    # Once the pull is under way it holds no more memory the longer it runs:
    # from the first quarter to the end, RSS grows by less than a few MiB.
    quarter = samples[len(samples) // 4][1]
    assert max(rss for _, rss in samples) - quarter < 6.0, samples
