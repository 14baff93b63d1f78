"""Running a pull from the command line: the pool, a pre-flight, progress, the summary."""

from __future__ import annotations

import contextlib
import logging
import sys
import textwrap
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs
import orjson

from makini_async._config import RetryPolicy, Timeouts
from makini_async._progress import Progress
from makini_async.bulk import DEFAULT_PATIENCE, Outcome, Pull, PullReport
from makini_async.checkpoint import CheckpointMismatch
from makini_async.cli._args import PROG, CliError, PullSettings
from makini_async.errors import (
    ConnectionFailed,
    MakiniError,
    SinkError,
    UsageError,
)
from makini_async.pool import MakiniPool
from makini_async.sinks import JsonLinesSink, open_sink

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from makini_async.entities import Entity
    from makini_async.sinks import Sink

__all__ = [
    "PullResult",
    "failures",
    "make_pool",
    "make_sink",
    "preflight",
    "progress_stream",
    "run_pull",
    "summary",
    "summary_json",
]


PREFLIGHT_TIMEOUT: Final = 3.0
#: Columns the summary's failure details wrap at (well inside a 120-column terminal).
WIDTH: Final = 100


def make_pool(settings: PullSettings, **overrides: Any) -> MakiniPool:
    options: dict[str, Any] = {
        "timeouts": settings.timeouts,
        "retry": settings.retry,
        "as_dicts": not settings.typed,
        "allow_insecure_http": settings.allow_insecure_http,
    }
    if settings.base_url is not None:
        options["base_url"] = settings.base_url
    options.update(overrides)
    return MakiniPool(**options)


async def preflight(settings: PullSettings) -> None:
    """One ``GET /connection`` with the first token: is the API reachable at all?

    Only a connection that cannot be made (refused, unknown host) fails the
    pre-flight; any answer, an error answer included, means the API is there.
    """
    quick = Timeouts(connect=PREFLIGHT_TIMEOUT, read=PREFLIGHT_TIMEOUT, total=PREFLIGHT_TIMEOUT)
    retry = RetryPolicy(attempts=2, wait_initial=0.05, wait_max=0.05, timeout=PREFLIGHT_TIMEOUT)
    name, token = settings.connections[0]
    library_logger = logging.getLogger("makini_async")
    was_disabled, library_logger.disabled = library_logger.disabled, True  # no warnings here
    try:
        await _status_probe(settings, name, token, quick, retry)
    finally:
        library_logger.disabled = was_disabled


async def _status_probe(
    settings: PullSettings, name: str, token: str, timeouts: Timeouts, retry: RetryPolicy
) -> None:
    async with make_pool(settings, timeouts=timeouts, retry=retry) as pool:
        try:
            await pool.connection(token, name=name).info()
        except ConnectionFailed as exc:
            msg = f"cannot reach {pool.base_url}: {exc.message}"
            raise CliError(msg) from None
        except UsageError as exc:
            raise CliError(exc.message) from None
        except MakiniError:
            pass  # an answer (or a slow one): the pull reports per connection


class ProgressLogHandler(logging.Handler):
    """Library warnings during a pull, written around the progress line."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.WARNING)
        self.progress = progress
        self.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.progress.message(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the pull
            self.handleError(record)


@contextlib.asynccontextmanager
async def showing_progress(
    report: PullReport, stream: TextIO, *, isatty: bool, interval: float | None
) -> AsyncIterator[Progress]:
    """The live progress line (and library warnings around it) for the block.

    The final line is written only when the block completes: an interrupted
    pull (an error, Ctrl-C) leaves the last progress line as it was.
    """
    progress = Progress(report, stream, isatty=isatty, interval=interval)
    progress.start()
    handler = ProgressLogHandler(progress)
    logger = logging.getLogger("makini_async")
    logger.addHandler(handler)
    completed = False
    try:
        yield progress
        completed = True
    finally:
        await progress.stop(final=completed)
        logger.removeHandler(handler)


@attrs.frozen
class PullResult:
    """What a pull left behind, for the summary."""

    report: PullReport
    where: str  # the sink's location: a directory, or a database without its password
    paths: dict[Entity, Path]
    per_entity: dict[Entity, int]
    invalid_paths: dict[Entity, Path]
    invalid_per_entity: dict[Entity, int]
    sink_kind: str = "jsonl"
    #: Whether the pull ran tuned (``tuning.tuned()``; ``None``: not said).
    tuned: bool | None = None


def make_sink(settings: PullSettings) -> Sink:
    """The pull's sink: JSON Lines for ``--out`` (appending when resumable), else ``--sink``."""
    append = settings.checkpoint is not None and not settings.fresh
    if settings.sink is None:
        assert settings.out is not None  # noqa: S101 - the settings hold one of the two
        return JsonLinesSink(settings.out, append=append)
    try:
        return open_sink(settings.sink, append=append)
    except UsageError as exc:
        raise CliError(exc.message) from None


async def run_pull(settings: PullSettings, *, stream: TextIO, isatty: bool) -> PullResult:
    """Pull everything into the sink with live progress; the shared code path."""
    per_entity: Counter[Entity] = Counter()
    invalid_per_entity: Counter[Entity] = Counter()
    sink = make_sink(settings)
    async with make_pool(settings) as pool:
        pull: Pull[Any] = Pull(
            pool,
            list(settings.entities),
            list(settings.connections),
            modified_after=settings.modified_after,
            checkpoint=settings.checkpoint,
            sink=sink,
            concurrency=settings.concurrency,
            as_dicts=not settings.typed,
            patience=DEFAULT_PATIENCE if settings.patience is None else settings.patience,
            state_name=settings.state_name,
            fresh=settings.fresh,
        )
        try:
            async with (
                showing_progress(
                    pull.report, stream, isatty=isatty, interval=settings.progress_interval
                ),
                pull,
            ):
                # The pull lands each page in the sink (a SinkError fails only its
                # chain); here we only count what landed.
                async for page in pull.pages():
                    per_entity[page.entity] += len(page.records)
                    invalid_per_entity[page.entity] += len(page.invalid)
        except (SinkError, CheckpointMismatch) as exc:
            raise CliError(exc.message) from None
    paths: dict[Entity, Path] = {}
    invalid_paths: dict[Entity, Path] = {}
    kind = type(sink).__name__
    if isinstance(sink, JsonLinesSink):
        paths, invalid_paths, kind = dict(sink.paths), dict(sink.invalid_paths), "jsonl"
    elif kind == "ParquetSink":
        kind = "parquet"
        paths = {e: Path(sink.location) / e.value for e in settings.entities}
    else:
        kind = "postgresql"
    return PullResult(
        pull.report,
        sink.location,
        paths,
        dict(per_entity),
        invalid_paths,
        dict(invalid_per_entity),
        kind,
    )


def _error_fields(error: BaseException | None) -> tuple[str, str, str]:
    if error is None:
        return "-", "", "-"
    if isinstance(error, MakiniError):
        return error.code or type(error).__name__, error.message, error.request_id or "-"
    return type(error).__name__, str(error), "-"


def failures(report: PullReport) -> list[dict[str, Any]]:
    """Failed chains grouped by connection and reason: one entry per (connection, reason)."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for chain in report.chains:
        if not chain.done or chain.outcome is Outcome.COMPLETED:
            continue
        code, message, request_id = _error_fields(chain.error)
        # One entry per reason (outcome and code): its first message and request ID
        # stand for the rest (they differ only in counts and IDs).
        key = (chain.connection, chain.outcome.value, code)
        entry = groups.setdefault(
            key,
            {
                "connection": chain.connection,
                "outcome": chain.outcome.value,
                "code": code,
                "message": _first_sentence(message),
                "entities": [],
                "request_ids": [],
            },
        )
        entry["entities"].append(chain.entity.value)
        if request_id != "-":
            entry["request_ids"].append(request_id)
    return sorted(groups.values(), key=lambda e: (e["connection"], e["outcome"], e["code"]))


def _first_sentence(message: str) -> str:
    # Messages name the connection and the request ID again; the summary shows them once.
    text = message.split(" (request_id=", 1)[0].split(" [", 1)[0]
    return text.splitlines()[0] if text else ""


def summary(outcome: PullResult, tokens: Sequence[str], *, width: int = WIDTH) -> str:
    """The final report: outcomes, records per entity, failures by connection, totals, where."""
    report = outcome.report
    lines = ["", "Summary", "======="]
    lines.append("Chains by outcome:")
    for result, count in report.outcomes().items():
        lines.append(f"  {result.value:<26} {count:>8,}")
    lines.append(f"Chains by start: {report.describe_starts()}")
    lines.append("Records by entity:")
    lines.extend(
        f"  {e.value:<26} {outcome.per_entity.get(e, 0):>8,}" for e in report_entities(report)
    )
    if outcome.invalid_paths or report.invalid:
        lines.append("Invalid records (kept whole, with the field that does not fit):")
        lines.extend(
            f"  {e.value:<26} {outcome.invalid_per_entity.get(e, 0):>8,}  "
            f"{outcome.invalid_paths.get(e, outcome.where)}"
            for e in report_entities(report)
            if outcome.invalid_per_entity.get(e)
        )
    groups = failures(report)
    by_conn: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in groups:
        by_conn[entry["connection"]].append(entry)
    lines.append(f"Failed connections: {len(by_conn)}")
    for name in sorted(by_conn):
        lines.append(f"  {name}")
        for entry in by_conn[name]:
            ids = entry["request_ids"]
            request = f" (request_id={ids[0]})" if ids else ""
            head = f"    {entry['outcome']}: {entry['code']}"
            lines.append(head)
            detail = f"{entry['message']}{request}"
            lines.extend(
                textwrap.wrap(detail, width, initial_indent="      ", subsequent_indent="      ")
                or []
            )
            lines.append(f"      entities: {', '.join(entry['entities'])}")
    lines.append(
        f"Total: {report.records:,} records in {report.pages:,} pages from "
        f"{report.connections_total:,} connections in {report.elapsed:.1f}s "
        f"({report.records_per_second:,.0f} records/s);"
    )
    lines.append(
        f"       {report.invalid:,} invalid records, {report.retries:,} retries, "
        f"{report.rate_limited:,} rate-limited answers"
    )
    lines.append(f"Data landed in ({outcome.sink_kind}): {outcome.where}")
    if report.state is not None:
        lines.append(f"Checkpoint: {report.state.describe()}")
    lines.extend(f"  {path}" for path in outcome.paths.values())
    if outcome.tuned is not None:
        lines.append(f"Tuning: {'on' if outcome.tuned else 'off'}")
    return _redact("\n".join(lines), tokens)


def report_entities(report: PullReport) -> list[Entity]:
    return list(dict.fromkeys(c.entity for c in report.chains))


def summary_json(outcome: PullResult, tokens: Sequence[str]) -> bytes:
    """The outcome for schedulers: the same facts as the summary, as JSON."""
    report = outcome.report
    data = {
        "ok": report.ok,
        "sink": {"kind": outcome.sink_kind, "location": outcome.where},
        "files": {e.value: str(p) for e, p in outcome.paths.items()},
        "invalid_files": {e.value: str(p) for e, p in outcome.invalid_paths.items()},
        "records": report.records,
        "pages": report.pages,
        "invalid": report.invalid,
        "retries": report.retries,
        "rate_limited": report.rate_limited,
        "elapsed_seconds": round(report.elapsed, 3),
        "connections": {
            "total": report.connections_total,
            "done": report.connections_done,
            "failed": report.failed_connections,
        },
        "outcomes": {o.value: n for o, n in report.outcomes().items()},
        "starts": report.starts(),
        "records_by_entity": {e.value: n for e, n in outcome.per_entity.items()},
        "failures": failures(report),
        "tuned": outcome.tuned,
        "checkpoint": None if report.state is None else report.state.to_json(),
    }
    text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    return (_redact(text, tokens) + "\n").encode()


def _redact(text: str, tokens: Sequence[str]) -> str:
    """Belt and braces: no token may reach the terminal, whatever an error said."""
    for token in tokens:
        if token in text:
            text = text.replace(token, "***")
    return text


def progress_stream() -> tuple[TextIO, bool]:
    stream = sys.stderr
    return stream, bool(stream.isatty())
