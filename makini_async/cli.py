"""The ``makini-async`` command line: bulk pulls to JSON Lines, a demo, the mock server.

::

    makini-async demo                                   # mock server + pull, exits 0
    makini-async pull --entity work-orders --entity assets \\
        --tokens-file tokens.txt --out ./out --checkpoint pull.sqlite
    makini-async mock-server --port 8080
    makini-async --version

``pull`` writes one JSON Lines file per entity (``OUT/work-orders.jsonl``):
each line is a record as the API sent it plus ``"_connection"`` (the
connection's name, never its token). Records that do not fit their model go,
whole, to ``OUT/work-orders.invalid.jsonl`` with the field path and reason.
Exit codes: 0 every chain completed (and, with ``--strict``, no invalid
record), 1 some connection failed, needed reauthorization or was skipped,
2 bad input (one ``makini-async: error: ...`` line on stderr), 130
interrupted.

Tokens come from ``--tokens-file`` (one ``TOKEN`` or ``NAME,TOKEN`` per line;
blank lines and ``#`` comments ignored) or from an environment variable
(``--tokens-env``, default ``MAKINI_TOKENS``) holding the same entries
separated by newlines or spaces (``plant-1,TOKEN1 plant-2,TOKEN2``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, NoReturn, TextIO

import attrs
import orjson

from makini_async import __version__
from makini_async._config import RetryPolicy, Timeouts
from makini_async._progress import Progress
from makini_async._sansio import check_base_url, format_when, valid_token
from makini_async.bulk import Outcome, Pull, PullReport
from makini_async.checkpoint import open_checkpoint
from makini_async.connection import default_name
from makini_async.entities import Entity, to_entity
from makini_async.errors import (
    CheckpointError,
    ConnectionFailed,
    MakiniError,
    SinkError,
    UsageError,
)
from makini_async.models import unstructure
from makini_async.pool import MakiniPool

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from makini_async.bulk import PulledPage

__all__ = ["main"]

PROG: Final = "makini-async"
DEFAULT_TOKENS_ENV: Final = "MAKINI_TOKENS"
PREFLIGHT_TIMEOUT: Final = 3.0
DEMO_ENTITIES: Final = ("work-orders", "assets", "purchase-orders")
DEMO_VARIATIONS: Final = 0.05
DEMO_UNREADABLE: Final = 0.005

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class _CliError(Exception):
    """Bad input: reported as one ``makini-async: error: ...`` line, exit code 2."""


# -- arguments ----------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors always read ``makini-async: error: ...``.

    (Sub-parsers would otherwise say ``makini-async pull: error: ...``.)
    """

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{PROG}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        msg = f"expected a whole number, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = f"must be at least 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        msg = f"expected a number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not value > 0:
        msg = f"must be more than 0, got {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Command-line tools for makini_async: bulk pulls, a demo, a mock server.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )

    pull = commands.add_parser(
        "pull",
        help="pull entities from every connection into JSON Lines files",
        description=(
            "Pull entities from many connections into one JSON Lines file per entity. "
            "Exit codes: 0 all completed, 1 some connection failed, 2 bad input, "
            "130 interrupted."
        ),
    )
    entities = ", ".join(e.value for e in Entity)
    pull.add_argument(
        "--entity",
        action="append",
        required=True,
        metavar="ENTITY",
        help=f"an entity to pull (repeatable): {entities}",
    )
    tokens = pull.add_mutually_exclusive_group()
    tokens.add_argument(
        "--tokens-file",
        metavar="FILE",
        help="one TOKEN or NAME,TOKEN per line; blank lines and # comments are ignored",
    )
    tokens.add_argument(
        "--tokens-env",
        metavar="VAR",
        default=None,
        help=(
            f"environment variable holding the tokens (default {DEFAULT_TOKENS_ENV}): "
            "TOKEN or NAME,TOKEN entries separated by newlines or spaces"
        ),
    )
    pull.add_argument("--out", required=True, metavar="DIR", help="output directory")
    pull.add_argument(
        "--modified-after",
        metavar="WHEN",
        help="only records modified at or after this ISO 8601 date or date-time",
    )
    pull.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="resume from / record progress in this file (.json, else SQLite); "
        "output files are appended to instead of truncated",
    )
    _add_client_options(pull)
    pull.add_argument(
        "--typed",
        action="store_true",
        help="structure records into typed models (validates them; slower)",
    )
    pull.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any record did not fit its model (written to ENTITY.invalid.jsonl)",
    )

    demo = commands.add_parser(
        "demo",
        help="pull from an in-process mock server with faults (exits 0 when working)",
        description=(
            "Start a mock Makini server with random faults, two connections needing "
            "reauthorization and one that never answers, and pull work-orders, assets "
            "and purchase-orders from every connection. Exits 0 when the only failed "
            "connections are those three."
        ),
    )
    demo.add_argument("--connections", type=_positive_int, default=300)
    demo.add_argument("--records", type=_positive_int, default=200, help="records per entity")
    demo.add_argument("--out", default="makini-demo-out", metavar="DIR")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--concurrency", type=_positive_int, default=None, metavar="N")
    demo.add_argument("--progress-interval", type=_positive_float, default=None, metavar="S")
    demo.add_argument(
        "--dicts",
        action="store_true",
        help="pull plain dicts instead of typed records (faster; no record is validated)",
    )

    mock = commands.add_parser(
        "mock-server",
        help="serve the mock Makini API (see --help)",
        add_help=False,
        description="Serve the mock Makini API; options as python -m makini_async.testing.",
    )
    mock.add_argument("mock_args", nargs=argparse.REMAINDER)
    return parser


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url", default=None, metavar="URL", help="API base URL (default the library's)"
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain http:// base URL for a host that is not loopback (tokens in clear)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help="chains (connection, entity) pulled at once",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="read timeout of each attempt",
    )
    parser.add_argument(
        "--attempts",
        type=_positive_int,
        default=None,
        metavar="N",
        help="attempts per request, retries included",
    )
    parser.add_argument(
        "--progress-interval",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal (default 2)",
    )


# -- validated settings ------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PullSettings:
    """Everything a pull needs, validated."""

    entities: tuple[Entity, ...]
    connections: tuple[tuple[str, str], ...]  # (name, token)
    out: Path
    base_url: str | None = None
    allow_insecure_http: bool = False
    modified_after: str | None = None
    checkpoint: Path | None = None
    concurrency: int | None = None
    typed: bool = False
    strict: bool = False
    timeouts: Timeouts | None = None
    retry: RetryPolicy | None = None
    progress_interval: float | None = None

    def __repr__(self) -> str:
        return f"<PullSettings {len(self.connections)} connections -> {self.out}>"


def _parse_entities(values: Sequence[str]) -> tuple[Entity, ...]:
    out: list[Entity] = []
    for value in values:
        try:
            entity = to_entity(value.strip())
        except ValueError as exc:
            raise _CliError(str(exc)) from None
        if entity not in out:
            out.append(entity)
    return tuple(out)


def _parse_tokens(lines: Sequence[str], source: str) -> list[tuple[str | None, str]]:
    """``(name or None, token)`` per meaningful line; errors name line numbers only."""
    out: list[tuple[str | None, str]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name: str | None
        if "," in line:
            name, _, token = (part.strip() for part in line.partition(","))
        else:
            name, token = None, line
        bad = (
            not token
            or "," in token
            or not valid_token(token)
            or (name is not None and (not name or any(ord(ch) < 32 for ch in name)))
        )
        if bad:
            msg = f"{source}: line {number} is malformed; expected TOKEN or NAME,TOKEN"
            raise _CliError(msg)
        out.append((name, token))
    return out


def _named(entries: list[tuple[str | None, str]], source: str) -> tuple[tuple[str, str], ...]:
    """Give every token a unique name; reject duplicates.

    An unnamed token is named from the token itself (``conn-`` and a hash
    prefix, as the library does), never from its line: checkpoints are keyed
    by name, so a name must not move to another customer when lines move.
    """
    if not entries:
        msg = f"{source}: no tokens found"
        raise _CliError(msg)
    names: set[str] = set()
    tokens: set[str] = set()
    out: list[tuple[str, str]] = []
    for given, token in entries:
        name = given if given is not None else default_name(token)
        if name in names:
            msg = f"{source}: duplicate connection name {name!r}"
            raise _CliError(msg)
        if token in tokens:
            msg = f"{source}: the token of connection {name!r} appears twice"
            raise _CliError(msg)
        names.add(name)
        tokens.add(token)
        out.append((name, token))
    return tuple(out)


def _load_tokens(tokens_file: str | None, tokens_env: str | None) -> tuple[tuple[str, str], ...]:
    if tokens_file is not None:
        path = Path(tokens_file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            msg = f"tokens file not found: {tokens_file}"
            raise _CliError(msg) from None
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"cannot read tokens file {tokens_file}: {type(exc).__name__}"
            raise _CliError(msg) from None
        source = f"tokens file {tokens_file}"
        return _named(_parse_tokens(text.splitlines(), source), source)
    var = tokens_env or DEFAULT_TOKENS_ENV
    value = os.environ.get(var, "")
    source = f"environment variable {var}"
    if not value.strip():
        msg = f"no tokens: give --tokens-file FILE or set {var}"
        raise _CliError(msg)
    # Entries are separated by any white space (tokens contain none), so a
    # single "name,token" is never mistaken for two tokens.
    return _named(_parse_tokens(value.split(), source), source)


def _check_base_url(url: str, *, allow_insecure_http: bool) -> str:
    try:
        check_base_url(url, allow_insecure_http=allow_insecure_http)
    except UsageError as exc:
        message = exc.message.replace(
            "MakiniPool(allow_insecure_http=True)", "--allow-insecure-http"
        )
        raise _CliError(f"bad --base-url: {message}") from None
    return url


def _check_out_dir(out: Path) -> None:
    """Create ``out`` and a temporary file in it, or fail before any request."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".makini-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        msg = f"cannot write to output directory {out}: {reason}"
        raise _CliError(msg) from None


def _pull_settings(args: argparse.Namespace) -> PullSettings:
    """Validate the ``pull`` arguments (raises :class:`_CliError`)."""
    entities = _parse_entities(args.entity)
    connections = _load_tokens(args.tokens_file, args.tokens_env)
    modified_after = None
    if args.modified_after is not None:
        try:
            modified_after = format_when(args.modified_after, name="--modified-after")
        except UsageError:
            msg = (
                f"bad --modified-after {args.modified_after!r}: expected an ISO 8601 date "
                "or date-time such as 2024-01-01 or 2024-01-01T00:00:00Z"
            )
            raise _CliError(msg) from None
    base_url = (
        None
        if args.base_url is None
        else _check_base_url(args.base_url, allow_insecure_http=args.allow_insecure_http)
    )
    out = Path(args.out)
    _check_out_dir(out)
    checkpoint = None
    if args.checkpoint is not None:
        checkpoint = Path(args.checkpoint)
        try:
            open_checkpoint(checkpoint).close()
        except (UsageError, CheckpointError) as exc:
            raise _CliError(exc.message) from None
    timeouts = None if args.timeout is None else Timeouts(read=args.timeout)
    retry = None if args.attempts is None else RetryPolicy(attempts=args.attempts)
    return PullSettings(
        entities=entities,
        connections=connections,
        out=out,
        base_url=base_url,
        allow_insecure_http=args.allow_insecure_http,
        modified_after=modified_after,
        checkpoint=checkpoint,
        concurrency=args.concurrency,
        typed=args.typed,
        strict=args.strict,
        timeouts=timeouts,
        retry=retry,
        progress_interval=args.progress_interval,
    )


# -- the pull ------------------------------------------------------------------------


def _pool(settings: PullSettings, **overrides: Any) -> MakiniPool:
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


async def _preflight(settings: PullSettings) -> None:
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
    async with _pool(settings, timeouts=timeouts, retry=retry) as pool:
        try:
            await pool.connection(token, name=name).status()
        except ConnectionFailed as exc:
            msg = f"cannot reach {pool.base_url}: {exc.message}"
            raise _CliError(msg) from None
        except UsageError as exc:
            raise _CliError(exc.message) from None
        except MakiniError:
            pass  # an answer (or a slow one): the pull reports per connection


class _Writer:
    """One JSON Lines file per entity; one ``write`` call per page.

    Records that do not fit their model go to ``ENTITY.invalid.jsonl``
    (opened on the first one), each line the record as sent plus where it
    came from and why it does not fit.
    """

    def __init__(self, out: Path, entities: Sequence[Entity], *, append: bool) -> None:
        self.out = out
        self.paths = {e: out / f"{e.value}.jsonl" for e in entities}
        self.invalid_paths: dict[Entity, Path] = {}
        self._append = append
        self._files: dict[Entity, IO[bytes]] = {}
        self._invalid_files: dict[Entity, IO[bytes]] = {}

    def __enter__(self) -> _Writer:
        try:
            for entity, path in self.paths.items():
                self._files[entity] = self._open(path)
        except OSError as exc:
            self.close()
            msg = f"cannot open output file {exc.filename}: {exc.strerror}"
            raise _CliError(msg) from None
        return self

    def _open(self, path: Path) -> IO[bytes]:
        handle = _open_output(path, append=self._append)
        if self._append:
            _drop_partial_line(handle)
        return handle

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        files, self._files = self._files, {}
        invalid, self._invalid_files = self._invalid_files, {}
        for handle in (*files.values(), *invalid.values()):
            handle.close()

    def write(self, page: PulledPage, *, typed: bool) -> None:
        """Write one page's records and invalid records, or raise :class:`SinkError`.

        Every line is encoded before any is written, so a record that cannot
        be encoded leaves nothing of its page behind.
        """
        records = _encode_lines(page, typed=typed) if page.records else None
        invalid = _encode_invalid(page) if page.invalid else None
        if invalid is not None:
            handle = self._invalid_files.get(page.entity)
            if handle is None:
                path = self.out / f"{page.entity.value}.invalid.jsonl"
                handle = self._invalid_files[page.entity] = self._open(path)
                self.invalid_paths[page.entity] = path
            handle.write(invalid)
            handle.flush()
        if records is not None:
            handle = self._files[page.entity]
            handle.write(records)
            # Into the OS before the pull checkpoints past this page (when we ask
            # for the next one): a process killed after that loses nothing it wrote.
            handle.flush()


def _encode_lines(page: PulledPage, *, typed: bool) -> bytes:
    name = page.connection
    parts = []
    record: Any = None
    try:
        for record in page.records:
            row: dict[str, Any] = unstructure(record) if typed else record
            row["_connection"] = name
            parts.append(orjson.dumps(row))
    except (TypeError, RecursionError, MakiniError) as exc:
        raise _unwritable(page, record, exc) from None
    parts.append(b"")
    return b"\n".join(parts)


def _encode_invalid(page: PulledPage) -> bytes:
    parts = []
    item: Any = None
    try:
        for item in page.invalid:
            line = {
                "_connection": page.connection,
                "field": item.field,
                "reason": item.reason,
                "request_id": item.request_id,
                "record": item.data,
            }
            parts.append(orjson.dumps(line))
    except (TypeError, RecursionError) as exc:
        raise _unwritable(page, item, exc) from None
    parts.append(b"")
    return b"\n".join(parts)


def _unwritable(page: PulledPage, record: Any, exc: BaseException) -> SinkError:
    """The typed error for a record JSON cannot hold (orjson stops at 254 levels)."""
    rid = getattr(record, "id", None) if not isinstance(record, dict) else record.get("id")
    reason = exc.message if isinstance(exc, MakiniError) else f"{type(exc).__name__}: {exc}"
    msg = f"cannot write {page.entity.value} record {rid!r} as JSON ({reason})"
    return SinkError(msg, request_id=page.request_id, connection=page.connection)


def _open_output(path: Path, *, append: bool) -> IO[bytes]:
    """Open an output file for writing without following a symbolic link.

    A link planted where an output file goes would otherwise have the pull
    overwrite whatever it points to.
    """
    flags = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= (os.O_RDWR | os.O_APPEND) if append else (os.O_WRONLY | os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        if path.is_symlink():
            msg = f"output file {path} is a symbolic link; refusing to follow it"
            raise _CliError(msg) from None
        raise
    return os.fdopen(fd, "a+b" if append else "wb")


def _drop_partial_line(handle: IO[bytes]) -> None:
    """Cut a last line without its newline: a page half-written when the process died.

    That page was never checkpointed, so the resumed pull delivers it again;
    kept, the fragment would be a line that is not JSON.
    """
    end = handle.seek(0, os.SEEK_END)
    pos = end
    while pos > 0:
        start = max(0, pos - 65536)
        handle.seek(start)
        chunk = handle.read(pos - start)
        if pos == end and chunk.endswith(b"\n"):
            return
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            handle.truncate(start + cut + 1)
            return
        pos = start
    handle.truncate(0)


class _ProgressLogHandler(logging.Handler):
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
class _Outcome:
    """What a pull left behind, for the summary."""

    report: PullReport
    paths: dict[Entity, Path]
    per_entity: dict[Entity, int]
    invalid_paths: dict[Entity, Path]
    invalid_per_entity: dict[Entity, int]


async def _run_pull(settings: PullSettings, *, stream: TextIO, isatty: bool) -> _Outcome:
    """Pull everything into the output files with live progress; the shared code path."""
    per_entity: Counter[Entity] = Counter()
    invalid_per_entity: Counter[Entity] = Counter()
    append = settings.checkpoint is not None
    with _Writer(settings.out, settings.entities, append=append) as out:
        async with _pool(settings) as pool:
            pull = Pull(
                pool,
                list(settings.entities),
                list(settings.connections),
                modified_after=settings.modified_after,
                checkpoint=settings.checkpoint,
                concurrency=settings.concurrency,
                as_dicts=not settings.typed,
            )
            progress = Progress(
                pull.report, stream, isatty=isatty, interval=settings.progress_interval
            )
            progress.start()
            handler = _ProgressLogHandler(progress)
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
    return _Outcome(
        pull.report, out.paths, dict(per_entity), out.invalid_paths, dict(invalid_per_entity)
    )


# -- the summary -------------------------------------------------------------------


def _error_fields(error: BaseException | None) -> tuple[str, str, str]:
    if error is None:
        return "-", "", "-"
    if isinstance(error, MakiniError):
        return error.code or type(error).__name__, error.message, error.request_id or "-"
    return type(error).__name__, str(error), "-"


def _summary(outcome: _Outcome, tokens: Sequence[str]) -> str:
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


# -- commands ------------------------------------------------------------------------


def _progress_stream() -> tuple[TextIO, bool]:
    stream = sys.stderr
    return stream, bool(stream.isatty())


def _cmd_pull(args: argparse.Namespace) -> int:
    settings = _pull_settings(args)
    asyncio.run(_preflight(settings))
    stream, isatty = _progress_stream()
    outcome = asyncio.run(_run_pull(settings, stream=stream, isatty=isatty))
    tokens = [token for _, token in settings.connections]
    print(_summary(outcome, tokens))
    if not outcome.report.ok:
        return EXIT_FAILED
    if settings.strict and outcome.report.invalid:
        sys.stderr.write(
            f"{PROG}: {outcome.report.invalid} record(s) did not fit their model (--strict)\n"
        )
        return EXIT_FAILED
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.connections < 4:
        msg = "demo needs --connections of at least 4 (three of them fail on purpose)"
        raise _CliError(msg)
    out = Path(args.out)
    _check_out_dir(out)
    return asyncio.run(_demo(args, out))


async def _demo(args: argparse.Namespace, out: Path) -> int:
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
    with _open_output(tokens_file, append=False) as handle:
        handle.write(
            (
                "# demo tokens for the in-process mock server\n"
                + "".join(f"{n},{t}\n" for n, t in zip(names, rng_tokens, strict=True))
            ).encode()
        )
    # The same loader as ``pull --tokens-file``.
    connections = _load_tokens(str(tokens_file), None)
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
            concurrency=args.concurrency,
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
        await _preflight(settings)
        stream, isatty = _progress_stream()
        outcome = await _run_pull(settings, stream=stream, isatty=isatty)
    tokens = [token for _, token in connections]
    print(_summary(outcome, tokens))
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


def _cmd_mock_server(args: argparse.Namespace) -> int:
    from makini_async.testing import main as serve_main  # noqa: PLC0415 - only this command

    return serve_main(list(args.mock_args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``makini-async``; returns the exit code."""
    parser = _build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] == "mock-server":
        # Everything after the command belongs to the mock server's own parser,
        # checked first so that bad input is one error line like everywhere else.
        from makini_async.testing import build_parser as serve_parser  # noqa: PLC0415
        from makini_async.testing import main as serve_main  # noqa: PLC0415

        checker = serve_parser()
        checker.prog = f"{PROG} mock-server"

        def one_line(message: str) -> NoReturn:
            raise _CliError(f"mock-server: {message}")

        checker.error = one_line  # type: ignore[method-assign]

        def serve() -> int:
            checker.parse_args(arguments[1:])
            return serve_main(arguments[1:])

        try:
            return _guard(serve)
        except SystemExit as exc:  # its own --help or usage error
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        args = parser.parse_args(arguments)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    commands = {"pull": _cmd_pull, "demo": _cmd_demo, "mock-server": _cmd_mock_server}
    return _guard(lambda: commands[args.command](args))


def _guard(run: Callable[[], int]) -> int:
    """Run a command: bad input becomes one error line (2), Ctrl-C becomes 130."""
    started = time.monotonic()
    try:
        code = run()
    except _CliError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            sys.stderr.write(
                f"\n{PROG}: interrupted after {time.monotonic() - started:.1f}s "
                "(rerun with the same --checkpoint to resume)\n"
            )
        return EXIT_INTERRUPTED
    except MakiniError as exc:
        # A pull-wide failure (for example a checkpoint that cannot be written).
        _fail(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        _fail(f"unexpected {type(exc).__name__}: {exc}")
        return EXIT_FAILED
    return code


def _fail(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message.splitlines()[0] if message else 'failed'}\n")
