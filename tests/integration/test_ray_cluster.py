"""Sharded pulls on a real multi-node Ray cluster (token auth on), through Ray Client.

The cluster is a head and worker nodes started with ``ray start`` on this
machine (``raycluster.LocalCluster``); records and checkpoints land in a real
PostgreSQL (pgserver). A node is lost by SIGKILLing its raylet, a driver by
SIGKILLing the ``makini-async`` process. Ray's session (logs included) lives
under the session's pytest temporary directory, so the session's token scan
reads every Ray log as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from makini_async import PageSizes, set_testing
from makini_async.scale import RayEngine, ShardedPull
from makini_async.testing import FaultPlan, MockMakini

from .pgutil import fetch
from .raycluster import LocalCluster, Node
from .scaleutil import ENTITIES, expected, named_tokens, pool_options

if TYPE_CHECKING:
    from collections.abc import Iterator

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Ray's own imports may warn (deprecations of its deps)
    ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray_cluster

TABLES = ("makini_work_orders", "makini_assets")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    made = LocalCluster(tmp_path_factory.mktemp("rc"))
    try:
        made.start_head(num_cpus=1)
        made.add_node(num_cpus=1)
        yield made
    finally:
        made.stop()


@contextlib.contextmanager
def client(cluster: LocalCluster) -> Iterator[None]:
    """This process as a Ray Client driver of ``cluster`` (its token in the environment)."""
    from ray._private.authentication_test_utils import reset_auth_token_state

    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.token)
    reset_auth_token_state()  # Ray read the environment when it was imported
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for attempt in range(3):
                try:
                    ray.init(cluster.address, log_to_driver=False)
                    break
                except ConnectionError:  # Ray Client's proxy may fail a session as it starts
                    if attempt == 2:
                        raise
                    time.sleep(1)
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_auth_token_state()


async def rows(dsn: str) -> list[tuple[str, str, str]]:
    got = []
    for table in TABLES:
        entity = table.removeprefix("makini_").replace("_", "-")
        for r in await fetch(dsn, f"SELECT connection, id FROM {table}"):  # noqa: S608
            got.append((r[0], entity, r[1]))
    return got


async def landed_count(dsn: str) -> int:
    total = 0
    for table in TABLES:
        with contextlib.suppress(Exception):  # the table may not exist yet
            total += (await fetch(dsn, f"SELECT count(*) FROM {table}"))[0][0]  # noqa: S608
    return total


def sharded(
    server: MockMakini, tokens: list[tuple[str, str]], dsn: str, workers: int = 2, **engine: Any
) -> Any:
    options = {**pool_options(server), "page_sizes": PageSizes(dict.fromkeys(ENTITIES, 50))}
    return ShardedPull(
        ENTITIES,
        tokens,
        sink=dsn,
        engine=RayEngine(workers=workers, **engine),
        pool_options=options,
        as_dicts=True,
        units=6,
        progress_interval=0.1,
    )


async def test_a_pull_through_ray_client_lands_on_every_node(
    cluster: LocalCluster, pg_dsn: str
) -> None:
    set_testing(True)
    tokens = named_tokens(24)
    async with MockMakini(records_per_entity=150, faults=FaultPlan(seed=3, latency=0.01)) as server:
        with client(cluster):
            pull = sharded(server, tokens, pg_dsn)
            report = await asyncio.wait_for(pull.run(), 180)
        want = expected(server, tokens)
    got = await rows(pg_dsn)
    assert report.ok, report.summary()
    assert len(got) == len(set(got))
    assert set(got) == want
    live = {n.node_id for n in cluster.nodes if _alive(n.raylet)}
    assert {u.node for u in pull.units} == live
    assert len(live) == 2
    states = await fetch(pg_dsn, "SELECT count(*) FROM makini_checkpoints")
    assert states[0][0] == len(tokens) * len(ENTITIES)
    # Nothing Ray records shows a token: task listings (names, arguments, errors), logs.
    listing = cluster.run("list", "tasks", "--detail", "--address", cluster.dashboard)
    assert listing.returncode == 0, listing.stderr.decode()[-2000:]
    assert b"makini-unit-" in listing.stdout
    assert b"tok_secret_" not in listing.stdout + listing.stderr
    logs = cluster.logs()
    assert any(p.suffix in (".log", ".out", ".err") for p in logs)
    assert [p.name for p in logs if b"tok_secret_" in p.read_bytes()] == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


@pytest.mark.parametrize("loss", ["node", "raylet"])
async def test_a_lost_node_loses_nothing_and_its_units_run_again(
    cluster: LocalCluster, pg_dsn: str, loss: str
) -> None:
    set_testing(True)
    cluster.add_node(num_cpus=1)
    tokens = named_tokens(30)
    # Chains of 16 slow pages: a unit is mid-way for long enough to lose its node then.
    plan = FaultPlan(seed=8, latency=0.1)
    async with MockMakini(records_per_entity=800, faults=plan) as server:
        want = expected(server, tokens)
        with client(cluster):
            pull = sharded(server, tokens, pg_dsn, workers=3)
            task = asyncio.create_task(pull.run())
            await _until(lambda: landed_count(pg_dsn), len(want) // 5, task)
            doomed = await _node_running_a_unit(cluster, pull, task, per_chain=800)
            if loss == "node":  # a machine that dies: every process of the node at once
                cluster.kill_node(doomed)
            else:  # only its raylet: workers already running may still finish their unit
                cluster.kill_raylet(doomed)
            killed_at = time.monotonic()
            rerun = None
            while not task.done():
                if rerun is None and any(u.attempts >= 2 for u in pull.units):
                    rerun = time.monotonic() - killed_at
                await asyncio.sleep(0.02)
            report = await asyncio.wait_for(task, 240)
            finished = time.monotonic() - killed_at
    got = await rows(pg_dsn)
    assert report.ok, report.summary()
    assert len(got) == len(set(got))
    assert set(got) == want
    assert doomed.node_id not in {u.node for u in pull.units if u.attempts > 1}
    if loss == "node":
        # The lost node's unit ran again (units it finished before stay counted there).
        assert any(u.attempts >= 2 for u in pull.units)
    # Measured, for the record (pytest -s): how soon a lost unit ran again.
    print(f"lost {loss}: a unit ran again after {rerun}s; the pull ended {finished:.1f}s after")


async def _node_running_a_unit(
    cluster: LocalCluster, pull: ShardedPull, task: asyncio.Task[Any], per_chain: int
) -> Node:
    """A worker node (not the head) whose worker process runs a unit less than half done.

    Only an early unit: progress arrives a little late, so a unit about to end may
    already have handed its result back, and then nothing needs to run again.
    """
    while not task.done():
        for status in pull.units:
            if status.done or status.pid is None:
                continue
            chains = pull.unit_chains(status.unit)
            if sum(c.records for c in chains) >= len(chains) * per_chain / 2:
                continue
            node = cluster.node_of(status.pid)
            if node is not None and node is not cluster.head:
                return node
        await asyncio.sleep(0.02)
    raise AssertionError("the pull ended before a node could be lost")


async def test_units_no_live_node_can_run_fail_once_node_wait_passes(
    cluster: LocalCluster, pg_dsn: str
) -> None:
    set_testing(True)
    only = cluster.add_node(num_cpus=1, resources='{"makini_only_here": 1}')
    tokens = named_tokens(12)
    async with MockMakini(records_per_entity=800, faults=FaultPlan(latency=0.05)) as server:
        with client(cluster):
            pull = sharded(
                server,
                tokens,
                pg_dsn,
                task_options={"resources": {"makini_only_here": 1}},
                node_wait=2.0,
            )
            task = asyncio.create_task(pull.run())
            await _until(lambda: landed_count(pg_dsn), 1, task)
            cluster.kill_node(only)
            report = await asyncio.wait_for(task, 90)  # never hangs
    assert not report.ok
    errors = {str(c.error) for c in report.chains if c.error is not None}
    assert any("no live Ray node could run it for 2s" in e for e in errors), errors
    assert any("makini_only_here 1" in e for e in errors)


async def _until(count: Any, target: int, task: asyncio.Task[Any]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if task.done():
            await task
            raise AssertionError("the pull ended before the fault could be injected")
        if await count() >= target:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the pull made no progress")


# -- the command line as a cluster user runs it: Ray Client, a driver killed and restarted --


async def test_a_killed_driver_resumes_from_postgres_and_a_second_driver_is_refused(
    cluster: LocalCluster, pg_dsn: str, tmp_path: Path
) -> None:
    set_testing(True)
    tokens = named_tokens(30)
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("".join(f"{name},{token}\n" for name, token in tokens))
    tokens_file.chmod(0o600)
    # Slow pages and few in flight: the pull takes long enough to be cut a fifth of the way in.
    async with MockMakini(records_per_entity=1000, faults=FaultPlan(latency=0.2)) as server:
        want = expected(server, tokens)
        command = [
            str(Path(sys.executable).with_name("makini-async")),
            "pull",
            *[a for e in ENTITIES for a in ("--entity", e)],
            "--tokens-file",
            str(tokens_file),
            "--sink",
            pg_dsn,
            "--engine",
            "ray",
            "--ray-address",
            cluster.address,
            "--base-url",
            server.url,
            "--allow-insecure-http",
            "--concurrency",
            "4",
        ]
        with (tmp_path / "first.out").open("wb") as log:
            first = await _start(command, cluster, log)
            watch = asyncio.create_task(first.wait())
            try:
                await _until(lambda: landed_count(pg_dsn), len(want) // 5, watch)
                second = await _start(command, cluster)
                out, _ = await asyncio.wait_for(second.communicate(), 60)
                assert second.returncode == 2, out.decode()[-2000:]
                assert b"another pull is running on checkpoint" in out
                first.send_signal(signal.SIGKILL)
            finally:
                if first.returncode is None:
                    first.kill()
                await watch
        before = await landed_count(pg_dsn)
        assert 0 < before < len(want)
        again = await _start(command, cluster)
        out, _ = await asyncio.wait_for(again.communicate(), 240)
    text = out.decode()
    assert again.returncode == 0, text[-3000:]
    assert "Units:" in text
    got = await rows(pg_dsn)
    assert len(got) == len(set(got))
    assert set(got) == want
    assert "tok_secret_" not in text


async def _start(
    command: list[str], cluster: LocalCluster, out: Any = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command, env=cluster.env(), stdout=out, stderr=asyncio.subprocess.STDOUT
    )


# -- last: it ends the module's cluster ----------------------------------------------------


async def test_a_lost_head_ends_the_pull_with_its_units_lost_never_hanging(
    cluster: LocalCluster, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_testing(True)
    # Ray Client waits this long for its server to come back (30 s by default).
    monkeypatch.setenv("RAY_CLIENT_RECONNECT_GRACE_PERIOD", "2")
    tokens = named_tokens(12)
    async with MockMakini(records_per_entity=1000, faults=FaultPlan(latency=0.1)) as server:
        with client(cluster):
            pull = sharded(server, tokens, pg_dsn)
            task = asyncio.create_task(pull.run())
            await _until(lambda: landed_count(pg_dsn), 1, task)
            assert cluster.head is not None
            cluster.kill_node(cluster.head)
            report = await asyncio.wait_for(task, 90)  # never hangs
    assert not report.ok
    errors = {str(c.error) for c in report.chains if c.error is not None}
    assert any("lost the Ray cluster" in e for e in errors), errors
    # What had landed stays, with its checkpoints: a rerun resumes from there.
    assert await landed_count(pg_dsn) > 0
