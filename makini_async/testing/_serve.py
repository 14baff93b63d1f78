"""Serving the mock from the command line, optionally as several processes on one port."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import signal
import sys
from typing import TYPE_CHECKING, Any

from makini_async.testing._faults import FAULT_KINDS, FaultPlan, RateLimit
from makini_async.testing._realistic import SHAPES
from makini_async.testing._server import MockMakini
from makini_async.testing._variations import check_rate

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main", "serve"]


async def _serve_async(
    options: dict[str, Any], ready: Any = None, *, announce: bool = True
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    server = MockMakini(**options)
    async with server:
        if ready is not None:
            ready.put(server.port)
        if announce:
            sys.stdout.write(f"Mock Makini listening on {server.url}\n")
            sys.stdout.flush()
        await stop.wait()


def _child(options: dict[str, Any], ready: Any) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_async(options, ready, announce=False))


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    processes: int = 1,
    records: int = 100,
    seed: int = 0,
    faults: FaultPlan | None = None,
    rate_limit: RateLimit | None = None,
    report_total_count: bool = True,
    variations: float = 0.0,
    unreadable: float = 0.0,
    shape: str = "light",
) -> None:
    """Serve the mock API until SIGINT/SIGTERM (blocking).

    With ``processes > 1``, that many server processes share ``port`` through
    ``SO_REUSEPORT`` (``port`` must then be fixed, not 0). Every process
    serves the same deterministic data; counters and writes are per process.
    ``variations`` / ``unreadable`` are the rates of varied records and
    ``shape`` the records' weight (see :class:`MockMakini`).
    Prints ``Mock Makini listening on http://HOST:PORT`` once all are ready.
    """
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "records_per_entity": records,
        "seed": seed,
        "faults": faults,
        "rate_limit": rate_limit,
        "report_total_count": report_total_count,
        "variations": variations,
        "unreadable": unreadable,
        "shape": shape,
    }
    if processes <= 1:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_async(options))
        return
    if port == 0:
        msg = "processes > 1 needs a fixed port"
        raise ValueError(msg)
    options["reuse_port"] = True
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    children = [ctx.Process(target=_child, args=(options, ready)) for _ in range(processes)]
    for child in children:
        child.start()
    stop = False

    def _on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for _ in children:
            ready.get(timeout=60)
        sys.stdout.write(f"Mock Makini listening on http://{host}:{port} ({processes} processes)\n")
        sys.stdout.flush()
        while not stop and all(c.is_alive() for c in children):
            children[0].join(0.2)
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
        for child in children:
            child.join(10)
        ready.close()
        ready.join_thread()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        msg = f"invalid port {text!r}: expected an integer from 0 to 65535"
        raise argparse.ArgumentTypeError(msg)
    return port


def _rate(text: str) -> float:
    try:
        return check_rate("a rate", float(text))
    except ValueError:
        msg = f"invalid rate {text!r}: expected a number from 0 to 1"
        raise argparse.ArgumentTypeError(msg) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m makini_async.testing``."""
    parser = argparse.ArgumentParser(
        prog="python -m makini_async.testing", description="Serve the mock Makini API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=8080)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--records", type=int, default=100, help="records per entity")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per response")
    parser.add_argument("--latency-jitter", type=float, default=0.0)
    parser.add_argument("--fault-seed", type=int, default=0)
    for kind in FAULT_KINDS:
        parser.add_argument(f"--{kind.replace('_', '-')}", type=float, default=0.0, metavar="RATE")
    parser.add_argument("--stall-seconds", type=float, default=3600.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument(
        "--rate-limit",
        default=None,
        metavar="N/SECONDS",
        help="per-token limit, e.g. 60/60 for 60 requests a minute",
    )
    parser.add_argument("--no-total-count", action="store_true")
    parser.add_argument(
        "--variations",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="share of records served with readable deviations from the contract",
    )
    parser.add_argument(
        "--unreadable",
        type=_rate,
        default=0.0,
        metavar="RATE",
        help="share of records served with one value no client can read",
    )
    parser.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="light",
        help="records as light as the contract's examples, or as heavy as real ones (1-3 KB)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: parse ``argv`` (default ``sys.argv[1:]``) and serve."""
    args = build_parser().parse_args(argv)
    plan_fields = {
        "seed": args.fault_seed,
        "latency": args.latency,
        "latency_jitter": args.latency_jitter,
        "stall_seconds": args.stall_seconds,
        "retry_after": args.retry_after,
        **{kind: getattr(args, kind) for kind in FAULT_KINDS},
    }
    active = any(plan_fields[k] for k in FAULT_KINDS) or args.latency or args.latency_jitter
    faults = FaultPlan(**plan_fields) if active else None
    rate_limit = None
    if args.rate_limit:
        count, _, seconds = args.rate_limit.partition("/")
        rate_limit = RateLimit(int(count), float(seconds or 60))
    serve(
        host=args.host,
        port=args.port,
        processes=args.processes,
        records=args.records,
        seed=args.seed,
        faults=faults,
        rate_limit=rate_limit,
        report_total_count=not args.no_total_count,
        variations=args.variations,
        unreadable=args.unreadable,
        shape=args.shape,
    )
    return 0
