"""Arguments of the ``makini-async`` command: the parser and validated pull settings."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import attrs

from makini_async._wire.constants import VERSION
from makini_async._wire.requests import valid_token
from makini_async.bulk import PullOptions
from makini_async.checkpoint._postgres import safe_dsn
from makini_async.connection import default_name
from makini_async.entities import Entity, to_entity

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from makini_async._client.config import RetryPolicy, Timeouts

__all__ = [
    "DEFAULT_TOKENS_ENV",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "CliError",
    "PullSettings",
    "build_parser",
    "load_tokens",
    "parse_entities",
]


PROG: Final = "makini-async"


DEFAULT_TOKENS_ENV: Final = "MAKINI_TOKENS"


EXIT_OK: Final = 0


EXIT_FAILED: Final = 1


EXIT_USAGE: Final = 2


EXIT_INTERRUPTED: Final = 130


class CliError(Exception):
    """Bad input: reported as one ``makini-async: error: ...`` line, exit code 2."""


class Parser(argparse.ArgumentParser):
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


def build_parser(*more: Callable[[Any], None]) -> argparse.ArgumentParser:
    """The command's parser; each of ``more`` adds a command to its subparsers."""
    parser = Parser(
        prog=PROG,
        description="Tools for makini_async: bulk pulls, a sync, a demo, a mock server.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )

    pull = commands.add_parser(
        "pull",
        help="pull entities from every connection into JSON Lines files",
        description=(
            "Pull entities from many connections into one JSON Lines file per entity. "
            "Exit codes: 0 all completed, 1 some connection failed, 2 bad input, "
            "3 sink unavailable, 130 SIGINT, 143 SIGTERM."
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
    pull.add_argument(
        "--allow-open-tokens-file",
        action="store_true",
        help="accept a tokens file others can read or write (refused or warned about otherwise)",
    )
    pull.add_argument(
        "--out", metavar="DIR", help="JSON Lines output directory (the same as --sink jsonl:DIR)"
    )
    pull.add_argument(
        "--sink",
        metavar="SINK",
        help=(
            "where records land: jsonl:DIR (at least once), parquet:DIR (exactly once per "
            "committed file), duckdb:FILE or postgresql://USER@HOST/DB (exactly once); "
            "env:VAR reads the "
            "value from an environment variable (keeps a password off the command line)"
        ),
    )
    pull.add_argument(
        "--summary-json",
        metavar="FILE",
        help="also write the outcome as JSON to FILE, for schedulers",
    )
    pull.add_argument(
        "--modified-after",
        metavar="WHEN",
        help="only records modified at or after this ISO 8601 date or date-time",
    )
    pull.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="resume from / record progress in this file (.json, else SQLite) or in "
        "PostgreSQL (postgresql://..., or env:VAR); JSON Lines files are then appended to "
        "instead of truncated. Parquet and PostgreSQL sinks keep their own checkpoint",
    )
    pull.add_argument(
        "--state-name",
        metavar="NAME",
        default=None,
        help="the state to use in the checkpoint (default: the destination, such as "
        "jsonl:/abs/out): a checkpoint keeps one state per destination, and refuses a "
        "state recorded for another one",
    )
    pull.add_argument(
        "--fresh",
        action="store_true",
        help="start the checkpoint's state over: a full pull (JSON Lines files are "
        "truncated), also when the state was recorded for another destination",
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
    pull.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="shard the pull over N worker processes (units of whole connections); "
        "JSON Lines and Parquet then land under DIR/bucket-NNNNN/",
    )
    pull.add_argument(
        "--engine",
        choices=("processes", "ray"),
        default=None,
        help="run the shards on local processes (default with --workers) or on Ray "
        "(the ray extra; a local Ray unless --ray-address)",
    )
    pull.add_argument(
        "--ray-address",
        metavar="ADDR",
        default=None,
        help="the Ray cluster to run on (ray://HOST:10001 or auto); needs --engine ray",
    )
    pull.add_argument(
        "--otel",
        action="store_true",
        help="export traces and metrics over OTLP/HTTP, configured by the OTEL_* environment "
        "variables (needs the otel extra)",
    )
    pull.add_argument(
        "--no-tune",
        action="store_true",
        help="leave the garbage collector and the heap of this process and its workers as "
        "they are (by default they run makini_async.tuning.tuned())",
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

    for add in more:
        add(commands)

    mock = commands.add_parser(
        "mock-server",
        help="serve the mock Makini API (see --help)",
        add_help=False,
        description="Serve the mock Makini API; options as python -m makini_async.testing.",
    )
    mock.add_argument("mock_args", nargs=argparse.REMAINDER)
    return parser


def _add_client_options(parser: argparse.ArgumentParser, *, progress: bool = True) -> None:
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
        "--patience",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="how long a chain may wait, in all, for its connection's open circuit breaker "
        "(default 300)",
    )
    parser.add_argument(
        "--sink-deadline",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="how long a Parquet or PostgreSQL sink waits out a full disk or a database that "
        "went away before the pull ends with exit code 3 (default 120)",
    )
    if not progress:
        return
    parser.add_argument(
        "--progress-interval",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal (default 2)",
    )


@attrs.frozen(kw_only=True)
class PullSettings:
    """Everything a pull needs, validated."""

    entities: tuple[Entity, ...]
    connections: tuple[tuple[str, str], ...]  # (name, token)
    out: Path | None = None
    sink: str | None = attrs.field(default=None, repr=False)  # a DSN may hold a password
    summary_json: Path | None = None
    base_url: str | None = None
    allow_insecure_http: bool = False
    checkpoint: Path | str | None = attrs.field(default=None, repr=False)
    #: How the pull reads: ``--modified-after``, ``--concurrency``, ``--patience``,
    #: ``--state-name`` and ``--fresh``.
    options: PullOptions = attrs.field(factory=PullOptions)
    typed: bool = False
    strict: bool = False
    timeouts: Timeouts | None = None
    retry: RetryPolicy | None = None
    progress_interval: float | None = None
    #: Seconds a sink waits out its destination (``None``: the sink's default).
    sink_deadline: float | None = None
    #: Sharding: worker count and engine (``None`` for both: one process, no shards).
    workers: int | None = None
    engine: str | None = None
    ray_address: str | None = None
    #: Run the command (and its workers) with ``tuning.tuned()``.
    tune: bool = True

    @property
    def sharded(self) -> bool:
        return self.workers is not None or self.engine is not None

    def __repr__(self) -> str:
        where = self.out if self.sink is None else safe_dsn(self.sink)
        return f"<PullSettings {len(self.connections)} connections -> {where}>"


def parse_entities(values: Sequence[str]) -> tuple[Entity, ...]:
    out: list[Entity] = []
    for value in values:
        try:
            entity = to_entity(value.strip())
        except ValueError as exc:
            raise CliError(str(exc)) from None
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
            raise CliError(msg)
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
        raise CliError(msg)
    names: set[str] = set()
    tokens: set[str] = set()
    out: list[tuple[str, str]] = []
    for given, token in entries:
        name = given if given is not None else default_name(token)
        if name in names:
            msg = f"{source}: duplicate connection name {name!r}"
            raise CliError(msg)
        if token in tokens:
            msg = f"{source}: the token of connection {name!r} appears twice"
            raise CliError(msg)
        names.add(name)
        tokens.add(token)
        out.append((name, token))
    return tuple(out)


def load_tokens(tokens_file: str | None, tokens_env: str | None) -> tuple[tuple[str, str], ...]:
    if tokens_file is not None:
        path = Path(tokens_file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            msg = f"tokens file not found: {tokens_file}"
            raise CliError(msg) from None
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"cannot read tokens file {tokens_file}: {type(exc).__name__}"
            raise CliError(msg) from None
        source = f"tokens file {tokens_file}"
        return _named(_parse_tokens(text.splitlines(), source), source)
    var = tokens_env or DEFAULT_TOKENS_ENV
    value = os.environ.get(var, "")
    source = f"environment variable {var}"
    if not value.strip():
        msg = f"no tokens: give --tokens-file FILE or set {var}"
        raise CliError(msg)
    # Entries are separated by any white space (tokens contain none), so a
    # single "name,token" is never mistaken for two tokens.
    return _named(_parse_tokens(value.split(), source), source)
