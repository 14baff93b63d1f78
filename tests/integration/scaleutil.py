"""Shared by the sharded-pull tests: tokens, a pull in one process, reading what landed."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from makini_async import BreakerPolicy, MakiniPool, RetryPolicy
from makini_async.sinks import JsonLinesSink
from makini_async.testing import FaultPlan

if TYPE_CHECKING:
    from makini_async.scale import ShardedPull
    from makini_async.testing import MockMakini

ENTITIES = ("work-orders", "assets")
#: The fault mix of the unsharded 300-connection test: every kind a pull must ride out.
MIX = FaultPlan(
    seed=42,
    error_500=0.03,
    error_502=0.03,
    error_503=0.03,
    rate_limit_429=0.03,
    drop=0.02,
    truncate=0.02,
)


def named_tokens(count: int) -> list[tuple[str, str]]:
    return [(f"plant-{i:04d}", f"tok_secret_{i:06d}") for i in range(count)]


def pool_options(server: MockMakini) -> dict[str, Any]:
    """The pool each worker opens: patient enough to ride out the fault mix."""
    return {
        "base_url": server.url,
        "as_dicts": True,
        "retry": RetryPolicy(attempts=12),
        "breaker": BreakerPolicy(threshold=50),
    }


async def unsharded(server: MockMakini, tokens: list[tuple[str, str]], out: Path) -> Any:
    """The same pull in this process, into ``out``: the reference."""
    async with MakiniPool(**pool_options(server)) as pool:
        async with pool.pull(ENTITIES, tokens, sink=JsonLinesSink(out)) as pull:
            await pull.run()
    return pull.report


def landed(out: Path) -> Counter[tuple[str, str, str]]:
    """``(connection, entity, id)`` of every line under ``out``, counted."""
    got: Counter[tuple[str, str, str]] = Counter()
    for path in out.rglob("*.jsonl"):
        entity = path.name.removesuffix(".jsonl")
        for line in path.read_bytes().splitlines():
            record = orjson.loads(line)
            got[(record["_connection"], entity, record["id"])] += 1
    return got


def expected(server: MockMakini, tokens: list[tuple[str, str]]) -> set[tuple[str, str, str]]:
    return {
        (name, entity, record["id"])
        for name, token in tokens
        for entity in ENTITIES
        for record in server.records(token, entity)
    }


async def kill_a_worker(
    pull: ShardedPull, task: asyncio.Task[Any], *, per_chain: int | None = None
) -> tuple[int, int]:
    """SIGKILL the worker of a unit that is running and has landed pages: ``(unit, pid)``.

    With ``per_chain`` (records a chain holds), only a unit less than half done
    is picked: progress arrives a little late, so a unit about to end may
    already have left its worker.
    """
    deadline = asyncio.get_running_loop().time() + 60
    while not task.done() and asyncio.get_running_loop().time() < deadline:
        for status in pull.units:
            chains = pull.unit_chains(status.unit)
            pages = sum(c.pages for c in chains)
            records = sum(c.records for c in chains)
            early = per_chain is None or records < len(chains) * per_chain / 2
            if status.pid is not None and not status.done and pages >= 2 and early:
                os.kill(status.pid, signal.SIGKILL)
                return status.unit, status.pid
        await asyncio.sleep(0.01)
    raise AssertionError("the pull ended before a worker could be killed")


class TuningProbe:
    """A sink factory that notes, in the worker, how its process is tuned (one file a bucket)."""

    def __init__(self, out: str) -> None:
        self.out = out

    def __call__(self, bucket: int) -> ProbeSink:
        return ProbeSink(Path(self.out) / f"bucket-{bucket}.json")


class ProbeSink:
    """Lands nothing; writes the collector's state of the process it runs in when opened."""

    checkpoint_store = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    async def open(self, entities: object) -> None:
        state = {
            "pid": os.getpid(),
            "threshold": gc.get_threshold()[0],
            "frozen": gc.get_freeze_count(),
        }
        self.path.write_bytes(orjson.dumps(state))

    async def write(self, page: object, state: object) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def close(self) -> None:
        pass
