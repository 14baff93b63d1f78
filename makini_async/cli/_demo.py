"""``makini-async demo``: a faulty mock server, pulled through the ``pull`` code path."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Final

from makini_async._client.config import RetryPolicy, Timeouts
from makini_async._files import write_atomic
from makini_async.bulk import PullOptions
from makini_async.cli._args import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    PullSettings,
    load_tokens,
)
from makini_async.cli._run import preflight, progress_stream, run_pull
from makini_async.cli._settings import check_out_dir
from makini_async.cli._summary import summary
from makini_async.entities import to_entity

if TYPE_CHECKING:
    import argparse

__all__ = ["cmd_demo"]


DEMO_ENTITIES: Final = ("work-orders", "assets", "purchase-orders")


DEMO_VARIATIONS: Final = 0.05


DEMO_UNREADABLE: Final = 0.005


def cmd_demo(args: argparse.Namespace) -> int:
    if args.connections < 4:
        msg = "demo needs --connections of at least 4 (three of them fail on purpose)"
        raise CliError(msg)
    out = Path(args.out)
    check_out_dir(out)
    return asyncio.run(demo(args, out))


async def demo(args: argparse.Namespace, out: Path) -> int:
    """Serve a faulty mock in-process and pull from it via the ``pull`` code path."""
    from makini_async.testing import FaultPlan, MockMakini  # noqa: PLC0415 - only the demo

    faults = FaultPlan(
        seed=args.seed,
        error_500=0.02,
        error_502=0.02,
        error_503=0.02,
        rate_limit_429=0.02,
        drop=0.01,
        truncate=0.005,
    )
    rng_tokens = [f"demo_{secrets.token_hex(16)}" for _ in range(args.connections)]
    names = [f"plant-{i:03d}" for i in range(1, args.connections + 1)]
    reauth = {names[1], names[2]}
    stalled = names[-1]
    tokens_file = out / "demo-tokens.txt"
    text = "# demo tokens for the in-process mock server\n" + "".join(
        f"{n},{t}\n" for n, t in zip(names, rng_tokens, strict=True)
    )
    try:
        # Private (0600), as a tokens file should be: ``pull`` warns about others.
        write_atomic(tokens_file, text.encode(), mode=0o600)
    except OSError as exc:
        msg = f"cannot write {tokens_file}: {exc.strerror or exc}"
        raise CliError(msg) from None
    # The same loader as ``pull --tokens-file``.
    connections = load_tokens(str(tokens_file), None)
    # A little real-world drift, as source systems send it: most of it read by the
    # tolerant rules, a few records no rule can read (kept in ENTITY.invalid.jsonl).
    async with MockMakini(
        records_per_entity=args.records,
        faults=faults,
        seed=args.seed,
        variations=DEMO_VARIATIONS,
        unreadable=DEMO_UNREADABLE,
    ) as server:
        by_name = dict(connections)
        for name in sorted(reauth):
            server.configure_connection(by_name[name], status="reauthorization_required")
        server.configure_connection(by_name[stalled], faults=FaultPlan(seed=args.seed, stall=1.0))
        settings = PullSettings(
            entities=tuple(to_entity(e) for e in DEMO_ENTITIES),
            connections=connections,
            out=out,
            base_url=server.url,
            # The stalled connection's breaker opens; a chain waits for it this long.
            options=PullOptions(concurrency=args.concurrency, patience=2.0),
            typed=not args.dicts,
            # Short timeouts so the stalled connection gives up in seconds; enough
            # attempts that the random faults (about 1 request in 10) never win.
            timeouts=Timeouts(connect=2.0, read=1.0, total=5.0),
            retry=RetryPolicy(attempts=6, wait_initial=0.05, wait_max=0.5, timeout=4.0),
            progress_interval=args.progress_interval,
        )
        print(
            f"Demo: mock Makini at {server.url}, {len(connections)} connections x "
            f"{args.records} records x {len(DEMO_ENTITIES)} entities, random faults on; "
            f"{', '.join(sorted(reauth))} need reauthorization, {stalled} never answers.",
            flush=True,
        )
        await preflight(settings)
        stream, isatty = progress_stream()
        outcome = await run_pull(settings, stream=stream, isatty=isatty)
    tokens = [token for _, token in connections]
    print(summary(outcome, tokens))
    report = outcome.report
    planned = {*reauth, stalled}
    unexpected = sorted(set(report.failed_connections) - planned)
    print()
    print("Planned failures (the demo shows how failures are reported):")
    for name in sorted(reauth):
        print(f"  {name}: the customer must reconnect (401 REAUTHORIZATION_REQUIRED)")
    print(
        f"  {stalled}: the server never answers; every attempt hit the read timeout, "
        "then the connection's circuit breaker may have opened"
    )
    print(f"Tokens used: {tokens_file} (mock tokens)")
    if unexpected:
        print(f"Unexpected failures: {', '.join(unexpected)}")
        return EXIT_FAILED
    print("Demo OK: every other connection completed.")
    return EXIT_OK
