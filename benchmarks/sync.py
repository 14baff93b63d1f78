"""``makini-async sync`` as it runs: webhook-to-PostgreSQL lag, and the idle cost of a schedule.

Run: python -m benchmarks.sync [--lag-connections 1000] [--rate 10] [--seconds 60]
                               [--idle-connections 10000] [--idle-seconds 120]

The sync runs as the command, in its own process; the mock server (in this
process) sends ``sync.completed`` the moment it changes a record, as Makini
would once it has synced it; PostgreSQL is a real server (pgserver).

1. **Lag.** N connections, every change announced: records change at
   ``--rate`` a second on random connections, and each change's lag is the
   time from the change to the row's new value in PostgreSQL (polled every
   20 ms: the figures include up to that much).
2. **Idle cost.** M connections on a 15-minute schedule, once the first mirror
   is done: the sync process's CPU (user + system, from ``/proc``) over
   ``--idle-seconds``, as a share of one core, and its RSS. Nothing changes,
   so this is what keeping M connections on schedule costs: about
   M / 900 incremental pulls a second.

Writes ``benchmarks/results/sync.json`` and ``sync.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks._common import RESULTS, machine
from makini_async.testing import MockMakini

SECRET = "whsec_benchmark_sync"  # noqa: S105 - signs mock deliveries only
TABLE = "makini_work_orders"


def _postgres() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver.get_server(tempfile.mkdtemp(prefix="sync-bench-pg-"), cleanup_mode="stop")


async def _rows(dsn: str) -> int:
    db = await asyncpg.connect(dsn)
    try:
        if not await db.fetchval(f"SELECT to_regclass('{TABLE}') IS NOT NULL"):
            return 0
        return int(await db.fetchval(f"SELECT count(*) FROM {TABLE}"))  # noqa: S608
    finally:
        await db.close()


def _database(uri: str, name: str) -> str:
    """pgserver's URI with another database (its path; the user is also "postgres")."""
    return re.sub(r"/postgres(\?|$)", rf"/{name}\1", uri, count=1)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _start_sync(
    tmp: Path, server: MockMakini, dsn: str, tokens: list[tuple[str, str]], *extra: str
) -> asyncio.subprocess.Process:
    path = tmp / "tokens.txt"
    path.write_text("".join(f"{n},{t}\n" for n, t in tokens))
    path.chmod(0o600)
    env = {**os.environ, "BENCH_DSN": dsn, "BENCH_SECRET": SECRET}
    argv = [
        sys.executable,
        "-c",
        "from makini_async.cli import main; raise SystemExit(main())",
        "sync",
        "--entity",
        "work-orders",
        "--tokens-file",
        str(path),
        "--sink",
        "env:BENCH_DSN",
        "--base-url",
        server.url,
        "--instance",
        "bench",
        *extra,
    ]
    with (tmp / "sync.log").open("ab") as log:
        return await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
        )


async def _stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), 60)


async def _mirrored(dsn: str, want: int, timeout: float) -> float:
    started = time.monotonic()
    while await _rows(dsn) < want:
        if time.monotonic() - started > timeout:
            msg = f"the first mirror did not finish in {timeout:.0f} s"
            raise RuntimeError(msg)
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def lag(dsn: str, connections: int, rate: float, seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    tokens = [(f"plant-{i:05d}", f"token-lag-{i:05d}") for i in range(connections)]
    rng = random.Random(1)
    async with MockMakini(records_per_entity=20) as server:
        port = rng.randrange(20000, 30000)
        process = await _start_sync(
            tmp, server, dsn, tokens, "--every", "900", "--webhook-port", str(port),
            "--webhook-secret", "env:BENCH_SECRET",
        )  # fmt: skip
        server.register_webhook(f"http://127.0.0.1:{port}/webhooks/makini", SECRET)
        mirror = await _mirrored(dsn, connections * 20, timeout=600)
        await asyncio.sleep(5)  # the connections' ids are learnt after the mirror starts
        db = await asyncpg.connect(dsn)
        pending: dict[tuple[str, str], tuple[str, float]] = {}
        lags: list[float] = []
        try:

            async def changes() -> None:
                for n in range(int(seconds * rate)):
                    name, token = rng.choice(tokens)
                    rid = f"wo_{rng.randrange(20):06d}"
                    marker = f"bench-{n}"
                    pending[(name, rid)] = (marker, time.monotonic())
                    await server.change(token, "work-orders", rid, {"title": marker})
                    await asyncio.sleep(1 / rate)

            async def watch() -> None:
                while pending or not producer.done():
                    found = await db.fetch(
                        f"SELECT connection, id, record::jsonb->>'title' FROM {TABLE} "  # noqa: S608
                        "WHERE record::jsonb->>'title' LIKE 'bench-%'"
                    )
                    now = time.monotonic()
                    for connection, rid, title in found:
                        wanted = pending.get((connection, rid))
                        if wanted is not None and wanted[0] == title:
                            lags.append(now - wanted[1])
                            del pending[(connection, rid)]
                    await asyncio.sleep(0.02)

            producer = asyncio.create_task(changes())
            await asyncio.wait_for(watch(), seconds + 120)
        finally:
            await db.close()
            code = await _stop(process)
    lags.sort()
    return {
        "connections": connections,
        "rate_per_s": rate,
        "changes": len(lags),
        "first_mirror_s": round(mirror, 1),
        "p50_s": round(statistics.median(lags), 3),
        "p99_s": round(lags[min(len(lags) - 1, int(len(lags) * 0.99))], 3),
        "max_s": round(lags[-1], 3),
        "exit_code": code,
    }


async def idle(dsn: str, connections: int, seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    tokens = [(f"site-{i:05d}", f"token-idle-{i:05d}") for i in range(connections)]
    async with MockMakini(records_per_entity=5) as server:
        # The first mirror pulls every chain at once; its chains then rejoin their phases
        # over one interval. A second process started on that state is on schedule at once.
        first = await _start_sync(tmp, server, dsn, tokens, "--every", "900")
        mirror = await _mirrored(dsn, connections * 5, timeout=900)
        await _stop(first)
        process = await _start_sync(tmp, server, dsn, tokens, "--every", "900")
        await asyncio.sleep(20)  # start-up: the table read, the collector settles
        cpu0, t0 = _cpu_seconds(process.pid), time.monotonic()
        rss = []
        requests0 = sum(server.stats(t).requests for _, t in tokens)
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(5)
            rss.append(_rss_mib(process.pid))
        cpu1, t1 = _cpu_seconds(process.pid), time.monotonic()
        requests1 = sum(server.stats(t).requests for _, t in tokens)
        code = await _stop(process)
    return {
        "connections": connections,
        "every_s": 900,
        "first_mirror_s": round(mirror, 1),
        "window_s": round(t1 - t0, 1),
        "cpu_share_of_one_core": round((cpu1 - cpu0) / (t1 - t0), 4),
        "rss_mib_max": round(max(rss), 1),
        "rss_mib_first_last": [round(rss[0], 1), round(rss[-1], 1)],
        "pulls_per_s": round((requests1 - requests0) / (t1 - t0), 2),
        "exit_code": code,
    }


def _markdown(doc: dict[str, Any]) -> str:
    lag_, idle_ = doc["lag"], doc["idle"]
    return "\n".join(
        [
            "# makini-async sync",
            "",
            f"Generated {doc['generated']} by `{doc['command']}`.",
            "",
            "| what | result | target |",
            "|---|---|---|",
            (
                f"| webhook to PostgreSQL lag, {lag_['connections']} connections at "
                f"{lag_['rate_per_s']:g} changes/s ({lag_['changes']} changes) | p50 "
                f"{lag_['p50_s']} s, p99 {lag_['p99_s']} s, max {lag_['max_s']} s | p99 < 2 s |"
            ),
            (
                f"| idle, {idle_['connections']} connections every 15 min "
                f"({idle_['pulls_per_s']} pulls/s over {idle_['window_s']} s) | CPU "
                f"{idle_['cpu_share_of_one_core'] * 100:.2f}% of a core, RSS "
                f"{idle_['rss_mib_max']} MiB | < 2%, < 300 MB |"
            ),
            "",
            (
                f"First mirror: {lag_['first_mirror_s']} s ({lag_['connections']} connections x 20 "
                f"records), {idle_['first_mirror_s']} s ({idle_['connections']} x 5). The idle "
                "figures are of a second process started on the mirrored state: every chain on "
                "its phase, as after any restart."
            ),
            "",
        ]
    )


async def main(opts: argparse.Namespace) -> dict[str, Any]:
    server = _postgres()
    try:
        base = server.get_uri()
        server.psql("CREATE DATABASE bench_lag;")
        server.psql("CREATE DATABASE bench_idle;")
        doc: dict[str, Any] = {
            "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "command": "python -m benchmarks.sync " + " ".join(sys.argv[1:]),
            "machine": machine(),
        }
        doc["lag"] = await lag(
            _database(base, "bench_lag"), opts.lag_connections, opts.rate, opts.seconds
        )
        print(json.dumps(doc["lag"]), flush=True)
        doc["idle"] = await idle(
            _database(base, "bench_idle"), opts.idle_connections, opts.idle_seconds
        )
        print(json.dumps(doc["idle"]), flush=True)
        return doc
    finally:
        server.cleanup()


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lag-connections", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--idle-connections", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    opts = parser.parse_args(argv)
    doc = asyncio.run(main(opts))
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "sync.json").write_text(json.dumps(doc, indent=2) + "\n")
    (opts.out / "sync.md").write_text(_markdown(doc))
    print(_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
