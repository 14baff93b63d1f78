"""Running a pull from the command line: the pool, a pre-flight, progress, the summary."""

from __future__ import annotations

import logging
import sys
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs

from makini_async._config import RetryPolicy, Timeouts
from makini_async._progress import Progress
from makini_async.bulk import DEFAULT_PATIENCE, Outcome, Pull, PullReport
from makini_async.cli._args import PROG, CliError, PullSettings
from makini_async.cli._output import Writer
from makini_async.errors import (
    ConnectionFailed,
    MakiniError,
    SinkError,
    UsageError,
)
from makini_async.pool import MakiniPool

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from makini_async.entities import Entity

__all__ = ["PullResult", "make_pool", "preflight", "progress_stream", "run_pull", "summary"]


PREFLIGHT_TIMEOUT: Final = 3.0


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


@attrs.frozen
class PullResult:
    """What a pull left behind, for the summary."""

    report: PullReport
    paths: dict[Entity, Path]
    per_entity: dict[Entity, int]
    invalid_paths: dict[Entity, Path]
    invalid_per_entity: dict[Entity, int]


async def run_pull(settings: PullSettings, *, stream: TextIO, isatty: bool) -> PullResult:
    """Pull everything into the output files with live progress; the shared code path."""
    per_entity: Counter[Entity] = Counter()
    invalid_per_entity: Counter[Entity] = Counter()
    append = settings.checkpoint is not None
    with Writer(settings.out, settings.entities, append=append) as out:
        async with make_pool(settings) as pool:
            pull: Pull[Any] = Pull(
                pool,
                list(settings.entities),
                list(settings.connections),
                modified_after=settings.modified_after,
                checkpoint=settings.checkpoint,
                concurrency=settings.concurrency,
                as_dicts=not settings.typed,
                patience=DEFAULT_PATIENCE if settings.patience is None else settings.patience,
            )
            progress = Progress(
                pull.report, stream, isatty=isatty, interval=settings.progress_interval
            )
            progress.start()
            handler = ProgressLogHandler(progress)
            logger = logging.getLogger("makini_async")
            logger.addHandler(handler)
            interrupted = True
            try:
                async with pull:
                    async for page in pull.pages():
                        try:
                            out.write(page, typed=settings.typed)
                        except SinkError as exc:
                            pull.fail(page, exc)  # only this chain; its page comes again
                            continue
                        per_entity[page.entity] += len(page.records)
                        invalid_per_entity[page.entity] += len(page.invalid)
                interrupted = False
            finally:
                await progress.stop(final=not interrupted)
                logger.removeHandler(handler)
    return PullResult(
        pull.report, out.paths, dict(per_entity), out.invalid_paths, dict(invalid_per_entity)
    )


def _error_fields(error: BaseException | None) -> tuple[str, str, str]:
    if error is None:
        return "-", "", "-"
    if isinstance(error, MakiniError):
        return error.code or type(error).__name__, error.message, error.request_id or "-"
    return type(error).__name__, str(error), "-"


def summary(outcome: PullResult, tokens: Sequence[str]) -> str:
    """The final report: outcomes, records per entity, failures, totals, files."""
    report = outcome.report
    lines = ["", "Summary", "======="]
    lines.append("Chains by outcome:")
    for result, count in report.outcomes().items():
        lines.append(f"  {result.value:<26} {count:>8,}")
    lines.append("Records by entity:")
    lines.extend(f"  {e.value:<26} {outcome.per_entity.get(e, 0):>8,}" for e in outcome.paths)
    if outcome.invalid_paths:
        lines.append("Invalid records (kept whole, with the field that does not fit):")
        lines.extend(
            f"  {e.value:<26} {outcome.invalid_per_entity.get(e, 0):>8,}  {path}"
            for e, path in outcome.invalid_paths.items()
        )
    failed = [c for c in report.chains if c.done and c.outcome is not Outcome.COMPLETED]
    by_conn: dict[str, list[str]] = defaultdict(list)
    for chain in failed:
        code, message, request_id = _error_fields(chain.error)
        by_conn[chain.connection].append(
            f"    {chain.entity.value:<16} {chain.outcome.value:<25} {code}: {message} "
            f"(request_id={request_id})"
        )
    lines.append(f"Failed connections: {len(by_conn)}")
    for name in sorted(by_conn):
        lines.append(f"  {name}")
        lines.extend(by_conn[name])
    lines.append(
        f"Total: {report.records:,} records in {report.pages:,} pages from "
        f"{report.connections_total:,} connections in {report.elapsed:.1f}s "
        f"({report.records_per_second:,.0f} records/s); {report.invalid:,} invalid records, "
        f"{report.retries:,} retries, {report.rate_limited:,} rate-limited answers"
    )
    lines.append("Output files:")
    lines.extend(f"  {path}" for path in outcome.paths.values())
    return _redact("\n".join(lines), tokens)


def _redact(text: str, tokens: Sequence[str]) -> str:
    """Belt and braces: no token may reach the terminal, whatever an error said."""
    for token in tokens:
        if token in text:
            text = text.replace(token, "***")
    return text


def progress_stream() -> tuple[TextIO, bool]:
    stream = sys.stderr
    return stream, bool(stream.isatty())
