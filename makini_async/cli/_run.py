"""Running a pull from the command line: the pool, a pre-flight, progress, the summary."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from makini_async._client.config import RetryPolicy, Timeouts
from makini_async.bulk import Pull, PullReport
from makini_async.checkpoint import CheckpointMismatch
from makini_async.cli._args import PROG, CliError, PullSettings
from makini_async.cli._progress import Progress
from makini_async.cli._summary import PullResult, failures, summary, summary_json
from makini_async.errors import (
    ConnectionFailed,
    MakiniError,
    SinkError,
    SinkUnavailable,
    UsageError,
)
from makini_async.pool import MakiniPool
from makini_async.sinks import JsonLinesSink, open_sink

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from makini_async.cli._interrupt import Interrupts
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
    pre-flight; any answer, an error answer or one whose body was cut short
    included, means the API is there.
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
            if exc.request_id is not None:
                return  # an answer began (its body was cut short): the API is there
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


def make_sink(settings: PullSettings) -> Sink:
    """The pull's sink: JSON Lines for ``--out`` (appending when resumable), else ``--sink``."""
    append = settings.checkpoint is not None and not settings.options.fresh
    if settings.sink is None:
        assert settings.out is not None  # noqa: S101 - the settings hold one of the two
        return JsonLinesSink(settings.out, append=append)
    try:
        return open_sink(settings.sink, append=append, retry_deadline=settings.sink_deadline)
    except UsageError as exc:
        raise CliError(exc.message) from None


async def run_pull(
    settings: PullSettings,
    *,
    stream: TextIO,
    isatty: bool,
    interrupts: Interrupts | None = None,
) -> PullResult:
    """Pull everything into the sink with live progress; the shared code path.

    With ``interrupts``, a first SIGINT or SIGTERM stops the pull gracefully
    (:meth:`Pull.stop`): what was fetched lands, then this returns.
    """
    outage: str | None = None
    per_entity: Counter[Entity] = Counter()
    invalid_per_entity: Counter[Entity] = Counter()
    sink = make_sink(settings)
    async with make_pool(settings) as pool:
        pull: Pull[Any] = Pull(
            pool,
            list(settings.entities),
            list(settings.connections),
            checkpoint=settings.checkpoint,
            sink=sink,
            as_dicts=not settings.typed,
            options=settings.options,
        )
        try:
            async with (
                showing_progress(
                    pull.report, stream, isatty=isatty, interval=settings.progress_interval
                ),
                pull,
            ):
                with (
                    contextlib.nullcontext()
                    if interrupts is None
                    else interrupts.stopping(pull.stop)
                ):
                    # The pull lands each page in the sink (a SinkError fails only its
                    # chain); here we only count what landed.
                    async for page in pull.pages():
                        per_entity[page.entity] += len(page.records)
                        invalid_per_entity[page.entity] += len(page.invalid)
        except SinkUnavailable as exc:
            outage = exc.message  # the destination stayed down: the pull ended, told once
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
    elif kind == "DuckDBSink":
        kind = "duckdb"
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
        sink_unavailable=outage,
    )


def progress_stream() -> tuple[TextIO, bool]:
    stream = sys.stderr
    return stream, bool(stream.isatty())
