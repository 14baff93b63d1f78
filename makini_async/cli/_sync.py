"""``makini-async sync``: keep every connection mirrored, until SIGTERM or SIGINT.

::

    makini-async sync --entity work-orders --tokens-file tokens.txt \\
        --sink env:WAREHOUSE_DSN --every 900 \\
        --webhook-port 8080 --webhook-secret env:MAKINI_WEBHOOK_SECRET

SIGTERM or SIGINT stops it: no new pull starts, running pulls land what they
fetched, and the command exits 0. SIGHUP reads the tokens file again: added
connections start, removed ones stop, a rotated token is taken by its
connection without losing its state. With ``--webhook-port`` it answers
``POST /webhooks/makini`` (with ``--webhook-secret``), ``GET /status`` and
``GET /healthz``. ``--on-reauthorization COMMAND`` runs COMMAND with the
connection's name in ``MAKINI_CONNECTION`` (never its token) when a
customer must reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from makini_async import tuning
from makini_async._client.config import RetryPolicy, Timeouts
from makini_async.bulk import PullOptions
from makini_async.checkpoint import safe_dsn
from makini_async.cli._args import (
    EXIT_OK,
    PROG,
    CliError,
    _add_client_options,
    _positive_float,
    load_tokens,
    parse_entities,
)
from makini_async.cli._settings import _check_base_url, _from_env
from makini_async.cli._tokens_file import check_tokens_file
from makini_async.errors import UsageError
from makini_async.pool import MakiniPool
from makini_async.sync import DEFAULT_EVERY

if TYPE_CHECKING:
    import argparse

    from makini_async.sync import Sync

__all__ = ["add_sync_parser", "cmd_sync"]

logger = logging.getLogger("makini_async")

#: Seconds a reauthorization hook may run.
HOOK_TIMEOUT = 30.0


def add_sync_parser(commands: Any) -> None:
    sync = commands.add_parser(
        "sync",
        help="keep every connection mirrored into PostgreSQL (or DuckDB), until stopped",
        description=(
            "Pull every (connection, entity) into the sink, then incrementally every "
            "--every seconds, spread over the interval, and at once when a webhook says "
            "a sync completed. Runs until SIGTERM or SIGINT (exit 0); SIGHUP reads the "
            "tokens file again."
        ),
    )
    sync.add_argument("--entity", action="append", required=True, metavar="ENTITY")
    sync.add_argument("--tokens-file", required=True, metavar="FILE")
    sync.add_argument(
        "--allow-open-tokens-file",
        action="store_true",
        help="accept a tokens file others can write",
    )
    sync.add_argument(
        "--sink",
        required=True,
        metavar="DSN",
        help="postgresql://... (or env:VAR holding it), or duckdb:FILE (one instance)",
    )
    sync.add_argument("--every", type=_positive_float, default=DEFAULT_EVERY, metavar="SECONDS")
    sync.add_argument("--webhook-port", type=int, default=None, metavar="PORT")
    sync.add_argument("--webhook-host", default="127.0.0.1", metavar="HOST")
    sync.add_argument("--webhook-secret", default=None, metavar="env:VAR")
    sync.add_argument("--on-reauthorization", default=None, metavar="COMMAND")
    sync.add_argument(
        "--instance", default=None, metavar="NAME", help="this instance's name (default host:pid)"
    )
    sync.add_argument(
        "--lease", type=_positive_float, default=60.0, metavar="SECONDS", help="claim lease"
    )
    sync.add_argument("--no-tune", action="store_true", help="leave this process untuned")
    _add_client_options(sync, progress=False)


def _secret(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith("env:"):
        raise CliError("--webhook-secret takes env:VAR (a secret stays off the command line)")
    return _from_env(value, "--webhook-secret")


def _hook(command: str | None) -> Any:
    if command is None:
        return None
    argv = shlex.split(command)
    if not argv:
        raise CliError("--on-reauthorization needs a command")

    async def run(name: str) -> None:
        env = {**os.environ, "MAKINI_CONNECTION": name}
        process = await asyncio.create_subprocess_exec(*argv, env=env)
        try:
            code = await asyncio.wait_for(process.wait(), HOOK_TIMEOUT)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            logger.warning("sync: --on-reauthorization timed out for %s", name)
            return
        if code:
            logger.warning("sync: --on-reauthorization exited %d for %s", code, name)

    return run


def cmd_sync(args: argparse.Namespace) -> int:
    warning = check_tokens_file(Path(args.tokens_file), allow_open=args.allow_open_tokens_file)
    entities = parse_entities(args.entity)
    connections = load_tokens(args.tokens_file, None)
    sink = _from_env(args.sink, "--sink")
    secret = _secret(args.webhook_secret)
    if args.webhook_port is not None and not 0 <= args.webhook_port <= 65535:
        raise CliError(f"--webhook-port must be 0-65535, got {args.webhook_port}")
    base_url = (
        None
        if args.base_url is None
        else _check_base_url(args.base_url, allow_insecure_http=args.allow_insecure_http)
    )
    if warning is not None:
        sys.stderr.write(warning)
    pool_options: dict[str, Any] = {"allow_insecure_http": args.allow_insecure_http}
    if base_url is not None:
        pool_options["base_url"] = base_url
    if args.timeout is not None:
        pool_options["timeouts"] = Timeouts(read=args.timeout)
    if args.attempts is not None:
        pool_options["retry"] = RetryPolicy(attempts=args.attempts)
    try:
        options = PullOptions(
            concurrency=args.concurrency,
            **({} if args.patience is None else {"patience": args.patience}),
        )
    except UsageError as exc:
        raise CliError(exc.message) from None
    logging.basicConfig(level=logging.INFO, format=f"{PROG}: %(message)s", stream=sys.stderr)

    async def main() -> int:
        async with MakiniPool(as_dicts=True, **pool_options) as pool:
            try:
                sync = pool.sync(
                    entities,
                    connections,
                    sink=sink,
                    every=args.every,
                    options=options,
                    webhook_secret=secret,
                    on_reauthorization=_hook(args.on_reauthorization),
                    instance=args.instance,
                    lease=args.lease,
                    sink_deadline=args.sink_deadline,
                )
            except UsageError as exc:
                raise CliError(exc.message) from None
            async with sync:
                return await _serve(sync, args)

    code, _tuned = tuning.run_tuned(main(), enabled=not args.no_tune)
    return code


async def _serve(sync: Sync, args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        try:
            check_tokens_file(Path(args.tokens_file), allow_open=args.allow_open_tokens_file)
            await sync.reload(load_tokens(args.tokens_file, None))
        except (CliError, UsageError) as exc:
            logger.warning("sync: tokens file not reloaded: %s", exc)

    def on_hup() -> None:
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sync.stop)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        where = ""
        if args.webhook_port is not None:
            url = await sync.serve(args.webhook_host, args.webhook_port)
            where = f"; status at {url}/status"
        logger.info(
            "sync: %d connections x %d entities into %s every %.0f s%s",
            len(sync.service.connections),
            len(sync.service.entities),
            safe_dsn(sync.location),
            args.every,
            where,
        )
        await sync.wait()
        logger.info("sync: stopping; pulls in progress land what they fetched")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        if reloads:
            await asyncio.gather(*reloads, return_exceptions=True)
    return EXIT_OK
