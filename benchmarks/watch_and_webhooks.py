"""The health watch's round time and concurrency, and the webhook receiver's answer times.

Run: python benchmarks/watch_and_webhooks.py [--connections 1000 10000] [--deliveries 1000]

1. ``pool.watch(...).check()`` over N mock connections (2 ms of latency per
   answer, so requests overlap): a baseline round, then a round in which ten
   connections went offline. Reports the seconds per round, the changes found
   and the most status requests the server had in flight at once.
2. The receiver, mounted as an aiohttp sub-application, with every handler
   blocked: the mock's sender delivers events (each twice, shuffled) one
   after the other and times each answer.

Everything runs in one process and one event loop, so the numbers are a
floor for the library's own cost, not a network measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web

from makini_async import MakiniPool, WebhookEvent, WebhookReceiver
from makini_async.testing import FaultPlan, MockMakini

SECRET = "whsec_benchmark"  # noqa: S105 - signs mock deliveries only


async def watch_rounds(sizes: list[int], concurrency: int) -> None:
    async with (
        MockMakini(faults=FaultPlan(latency=0.002)) as server,
        MakiniPool(base_url=server.url) as pool,
    ):
        for n in sizes:
            tokens = [f"bench-{n}-{i}" for i in range(n)]
            watch = pool.watch(tokens, concurrency=concurrency, interval=0)
            started = time.perf_counter()
            await watch.check()
            baseline = time.perf_counter() - started
            server.reset_stats()
            for token in tokens[:10]:
                server.set_status(token, "offline")
            started = time.perf_counter()
            changes = await watch.check()
            changed = time.perf_counter() - started
            print(
                f"watch over {n:,} connections, concurrency {concurrency}: "
                f"rounds of {baseline:.2f}s and {changed:.2f}s, {len(changes)} changes, "
                f"at most {server.max_concurrent_total} status requests in flight"
            )


async def receiver_answers(deliveries: int) -> None:
    gate = asyncio.Event()

    async def blocked(_event: WebhookEvent) -> None:
        await gate.wait()

    receiver = WebhookReceiver(SECRET, blocked, queue_size=deliveries)
    runner = web.AppRunner(receiver.app("/hook"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with MockMakini() as server:
            events = [("sync.completed", {"records": i}) for i in range(deliveries // 2)]
            sent = await server.send_webhook(
                url,
                SECRET,
                events=events,
                duplicate=1,
                shuffle=True,
                connection_token="bench",  # noqa: S106
            )
        times = sorted(d.elapsed for d in sent)
        statuses = sorted({d.status for d in sent if d.status is not None})
        print(
            f"receiver, handlers blocked: {len(sent):,} deliveries answered {statuses}, "
            f"median {times[len(times) // 2] * 1000:.2f} ms, "
            f"p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms, max {times[-1] * 1000:.2f} ms; "
            f"{receiver.stats.duplicates} duplicates dropped"
        )
    finally:
        gate.set()
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--deliveries", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(watch_rounds(args.connections, args.concurrency))
    asyncio.run(receiver_answers(args.deliveries))


if __name__ == "__main__":
    main()
