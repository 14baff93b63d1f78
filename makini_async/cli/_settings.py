"""Validated settings of ``makini-async pull``: where records land, the checkpoint, the rest."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from makini_async._client.config import RetryPolicy, Timeouts
from makini_async._wire.requests import check_base_url, format_when
from makini_async.bulk import PullOptions
from makini_async.checkpoint import open_checkpoint
from makini_async.checkpoint._identity import check_state_name
from makini_async.cli._args import CliError, PullSettings, load_tokens, parse_entities
from makini_async.errors import CheckpointError, UsageError
from makini_async.sinks import JsonLinesSink, open_sink

if TYPE_CHECKING:
    import argparse

__all__ = ["check_out_dir", "pull_settings"]


def _check_base_url(url: str, *, allow_insecure_http: bool) -> str:
    try:
        check_base_url(url, allow_insecure_http=allow_insecure_http)
    except UsageError as exc:
        message = exc.message.replace(
            "MakiniPool(allow_insecure_http=True)", "--allow-insecure-http"
        )
        raise CliError(f"bad --base-url: {message}") from None
    return url


def check_out_dir(out: Path) -> None:
    """Create ``out`` and a temporary file in it, or fail before any request."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".makini-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        msg = f"cannot write to output directory {out}: {reason}"
        raise CliError(msg) from None


def pull_settings(args: argparse.Namespace) -> PullSettings:
    """Validate the ``pull`` arguments (raises :class:`CliError`)."""
    entities = parse_entities(args.entity)
    connections = load_tokens(args.tokens_file, args.tokens_env)
    modified_after = None
    if args.modified_after is not None:
        try:
            modified_after = format_when(args.modified_after, name="--modified-after")
        except UsageError:
            msg = (
                f"bad --modified-after {args.modified_after!r}: expected an ISO 8601 date "
                "or date-time such as 2024-01-01 or 2024-01-01T00:00:00Z"
            )
            raise CliError(msg) from None
    base_url = (
        None
        if args.base_url is None
        else _check_base_url(args.base_url, allow_insecure_http=args.allow_insecure_http)
    )
    out, sink = _where(args.out, args.sink)
    checkpoint = _checkpoint(args.checkpoint, sink)
    _check_engine(args, checkpoint)
    state_name = _state_name(args, checkpoint, sink)
    timeouts = None if args.timeout is None else Timeouts(read=args.timeout)
    retry = None if args.attempts is None else RetryPolicy(attempts=args.attempts)
    return PullSettings(
        entities=entities,
        connections=connections,
        out=out,
        sink=sink,
        summary_json=None if args.summary_json is None else Path(args.summary_json),
        base_url=base_url,
        allow_insecure_http=args.allow_insecure_http,
        checkpoint=checkpoint,
        options=PullOptions(
            modified_after=modified_after,
            concurrency=args.concurrency,
            state_name=state_name,
            fresh=args.fresh,
            **({} if args.patience is None else {"patience": args.patience}),
        ),
        typed=args.typed,
        strict=args.strict,
        timeouts=timeouts,
        retry=retry,
        progress_interval=args.progress_interval,
        sink_deadline=args.sink_deadline,
        workers=args.workers,
        engine=args.engine,
        ray_address=args.ray_address,
        tune=not args.no_tune,
    )


def _check_engine(args: argparse.Namespace, checkpoint: Path | str | None) -> None:
    """Sharding options that cannot work together fail before any request."""
    if args.ray_address is not None and args.engine != "ray":
        raise CliError("--ray-address needs --engine ray")
    if (
        isinstance(checkpoint, Path)
        and checkpoint.suffix.lower() == ".json"
        and (args.workers is not None or args.engine is not None)
    ):
        msg = (
            "a JSON checkpoint cannot be shared by worker processes: use an SQLite file "
            "(one machine) or postgresql://... (several)"
        )
        raise CliError(msg)
    if args.ray_address is not None and isinstance(checkpoint, Path):
        msg = (
            "a Ray cluster spans machines, which cannot share an SQLite checkpoint: "
            "use --checkpoint postgresql://... (or env:VAR)"
        )
        raise CliError(msg)


def _state_name(
    args: argparse.Namespace, checkpoint: Path | str | None, sink: str | None
) -> str | None:
    """``--state-name`` checked, and the options it (and ``--fresh``) cannot go with."""
    name: str | None = args.state_name
    if (name is not None or args.fresh) and (args.workers is not None or args.engine is not None):
        msg = (
            "--state-name and --fresh apply to one process: each unit of a sharded pull "
            "keeps the state of its own folder (use a new --checkpoint to start over)"
        )
        raise CliError(msg)
    if name is None:
        return None
    try:
        check_state_name(name)
    except UsageError as exc:
        raise CliError(f"bad --state-name: {exc.message}") from None
    if sink is not None and not _is_dsn(sink):
        msg = "--state-name: a Parquet sink keeps its checkpoint in its directory, unnamed"
        raise CliError(msg)
    if checkpoint is None and sink is None:
        raise CliError("--state-name names a state in a checkpoint: give --checkpoint too")
    return name


def _from_env(value: str, option: str) -> str:
    """``env:VAR`` is the value of ``VAR`` (a DSN with a password stays off the command line)."""
    if not value.startswith("env:"):
        return value
    var = value[4:]
    found = os.environ.get(var, "").strip()
    if not found:
        msg = f"{option} env:{var}: the environment variable {var} is not set"
        raise CliError(msg)
    return found


def _is_dsn(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))


def _where(out: str | None, sink: str | None) -> tuple[Path | None, str | None]:
    """The output directory (``--out`` or ``--sink jsonl:DIR``) or the sink's spec, checked."""
    if (out is None) == (sink is None):
        msg = "give exactly one of --out DIR and --sink SINK"
        raise CliError(msg)
    if out is not None:
        check_out_dir(Path(out))
        return Path(out), None
    assert sink is not None  # noqa: S101 - checked just above
    spec = _from_env(sink, "--sink")
    try:
        made = open_sink(spec)
    except UsageError as exc:
        raise CliError(exc.message) from None
    if isinstance(made, JsonLinesSink):
        check_out_dir(made.directory)
        return made.directory, None
    if spec.startswith("duckdb:"):
        check_out_dir(Path(made.location).parent)  # the file's folder; DuckDB makes the file
    elif not _is_dsn(spec):
        check_out_dir(Path(made.location))
    return None, spec


def _checkpoint(value: str | None, sink: str | None) -> Path | str | None:
    if value is None:
        return None
    if sink is not None:
        msg = (
            "--checkpoint is for JSON Lines output: Parquet, DuckDB and PostgreSQL sinks "
            "keep their own"
        )
        raise CliError(msg)
    spec = _from_env(value, "--checkpoint")
    if _is_dsn(spec):
        return spec  # shared by design (several processes), so not locked
    path = Path(spec)
    try:
        open_checkpoint(path).close()
    except (UsageError, CheckpointError) as exc:
        raise CliError(exc.message) from None
    return path
