"""The ``makini-async`` command line: bulk pulls into sinks, a sync, a demo, the mock server.

::

    makini-async demo                                   # mock server + pull, exits 0
    makini-async pull --entity work-orders --entity assets \\
        --tokens-file tokens.txt --out ./out --checkpoint pull.sqlite
    makini-async sync --entity work-orders --tokens-file tokens.txt \\
        --sink env:WAREHOUSE_DSN --every 900              # until SIGTERM (see _sync.py)
    makini-async mock-server --port 8080
    makini-async --version

``pull`` writes one JSON Lines file per entity (``OUT/work-orders.jsonl``):
each line is a record as the API sent it plus ``"_connection"`` (the
connection's name, never its token). Records that do not fit their model go,
whole, to ``OUT/work-orders.invalid.jsonl`` with the field path and reason.
Exit codes: 0 every chain completed (and, with ``--strict``, no invalid
record), 1 some connection failed, needed reauthorization or was skipped,
2 bad input (one ``makini-async: error: ...`` line on stderr), 3 the sink
stayed unavailable (one ``sink unavailable: ...`` line), 130 interrupted by
SIGINT, 143 by SIGTERM (after the summary: see ``_interrupt.py``).

Tokens come from ``--tokens-file`` (one ``TOKEN`` or ``NAME,TOKEN`` per line;
blank lines and ``#`` comments ignored) or from an environment variable
(``--tokens-env``, default ``MAKINI_TOKENS``) holding the same entries
separated by newlines or spaces (``plant-1,TOKEN1 plant-2,TOKEN2``). A
tokens file others can read is warned about; one others can write is
refused (exit 2) unless ``--allow-open-tokens-file``, as ssh treats keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import attrs

from makini_async import tuning
from makini_async._files import write_atomic
from makini_async.cli._args import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CliError,
    build_parser,
)
from makini_async.cli._demo import cmd_demo
from makini_async.cli._interrupt import Interrupts
from makini_async.cli._run import preflight, progress_stream, run_pull
from makini_async.cli._settings import pull_settings
from makini_async.cli._summary import sink_outage, summary, summary_json
from makini_async.cli._sync import add_sync_parser, cmd_sync
from makini_async.cli._tokens_file import check_tokens_file
from makini_async.errors import MakiniError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from makini_async.cli._args import PullSettings
    from makini_async.cli._summary import PullResult

__all__ = ["main"]


#: Exit code when the destination stayed down and the pull ended (``sink unavailable: ...``).
EXIT_SINK_UNAVAILABLE: Final = 3


def _cmd_pull(args: argparse.Namespace) -> int:
    warning = None
    if args.tokens_file is not None:
        warning = check_tokens_file(Path(args.tokens_file), allow_open=args.allow_open_tokens_file)
    exporting: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if args.otel:
        from makini_async.cli._otel import exporting as otel  # noqa: PLC0415 - only with --otel

        exporting = otel()
    with exporting, Interrupts() as interrupts:
        settings = pull_settings(args)
        if warning is not None:
            sys.stderr.write(warning)
        asyncio.run(preflight(settings))
        stream, isatty = progress_stream()
        if settings.sharded:
            from makini_async.cli._scale import run_sharded  # noqa: PLC0415 - only when sharding

            pulling = run_sharded(settings, stream=stream, isatty=isatty, interrupts=interrupts)
        else:
            pulling = run_pull(settings, stream=stream, isatty=isatty, interrupts=interrupts)
        # The command owns its process: it runs tuned unless --no-tune (a sharded
        # pull's workers say for themselves whether they did).
        outcome, tuned = tuning.run_tuned(pulling, enabled=settings.tune)
        outcome = attrs.evolve(outcome, tuned=tuned and outcome.tuned is not False)
        if interrupts.signal is not None:
            outcome = attrs.evolve(outcome, interrupted=interrupts.signal)
        return _report(settings, outcome, interrupts)


def _report(settings: PullSettings, outcome: PullResult, interrupts: Interrupts) -> int:
    """Print the summary, write ``--summary-json``; the exit code."""
    tokens = [token for _, token in settings.connections]
    print(summary(outcome, tokens), flush=True)
    if settings.summary_json is not None:
        write_summary_json(settings.summary_json, summary_json(outcome, tokens))
    if interrupts.signal is not None:
        return interrupts.code
    outage = sink_outage(outcome)
    if outage is not None:
        sys.stderr.write(f"{PROG}: sink unavailable: {outage[0]}\n")
        return EXIT_SINK_UNAVAILABLE
    if not outcome.report.ok:
        return EXIT_FAILED
    if settings.strict and outcome.report.invalid:
        sys.stderr.write(
            f"{PROG}: {outcome.report.invalid} record(s) did not fit their model (--strict)\n"
        )
        return EXIT_FAILED
    return EXIT_OK


def write_summary_json(path: Path, payload: bytes) -> None:
    """Replace ``path`` atomically, so a scheduler never reads half a summary.

    The temporary file is new (``O_EXCL | O_NOFOLLOW``): a link planted beside
    the summary is never written through.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, payload)
    except OSError as exc:
        msg = f"cannot write --summary-json {path}: {exc.strerror or exc}"
        raise CliError(msg) from None


def _cmd_mock_server(args: argparse.Namespace) -> int:
    from makini_async.testing import main as serve_main  # noqa: PLC0415 - only this command

    return serve_main(list(args.mock_args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``makini-async``; returns the exit code."""
    parser = build_parser(add_sync_parser)
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] == "mock-server":
        # Everything after the command belongs to the mock server's own parser,
        # checked first so that bad input is one error line like everywhere else.
        from makini_async.testing import build_parser as serve_parser  # noqa: PLC0415
        from makini_async.testing import main as serve_main  # noqa: PLC0415

        checker = serve_parser()
        checker.prog = f"{PROG} mock-server"

        def one_line(message: str) -> NoReturn:
            raise CliError(f"mock-server: {message}")

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
    commands = {
        "pull": _cmd_pull,
        "sync": cmd_sync,
        "demo": cmd_demo,
        "mock-server": _cmd_mock_server,
    }
    return _guard(lambda: commands[args.command](args))


def _guard(run: Callable[[], int]) -> int:
    """Run a command: bad input becomes one error line (2), Ctrl-C becomes 130."""
    started = time.monotonic()
    try:
        code = run()
    except CliError as exc:
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
