"""SIGINT and SIGTERM during ``makini-async pull``: stop gracefully, or at once when asked twice.

The first signal stops the pull: no new page is fetched, pages already
fetched land in the sink with their checkpoint, and the command then prints
its summary, writes ``--summary-json`` (marked ``interrupted``) and exits with
130 (SIGINT) or 143 (SIGTERM). A second signal exits at once with the same
code: every sink is crash-safe (a killed run resumes without loss), so
nothing is corrupted, only the summary is not written.

The handlers are Python-level (``signal.signal``), installed for the whole
command, so a signal that arrives before the pull starts (during the
pre-flight) stops it before its first request, and one that arrives while
the summary is written waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any, Final

from makini_async.cli._args import EXIT_INTERRUPTED, PROG

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType, TracebackType

    from makini_async.scale import ShardedPull

__all__ = ["EXIT_TERMINATED", "Interrupts", "stoppable_run"]

#: Exit code after SIGTERM: 128 + 15, as a shell reports a process SIGTERM ended.
EXIT_TERMINATED: Final = 128 + signal.SIGTERM

_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
_CODES: Final = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}


def _say(text: str) -> None:
    # os.write, not sys.stderr: a signal handler may run while the stream is mid-write.
    with contextlib.suppress(OSError):
        os.write(2, f"\n{PROG}: {text}\n".encode())


class Interrupts:
    """The command's SIGINT and SIGTERM handlers, as a context manager.

    :meth:`stopping` names what stops the running pull; :attr:`signal` is the
    name of the first signal received (``None`` while none was).
    """

    def __init__(self) -> None:
        self.signal: str | None = None
        self._code = EXIT_INTERRUPTED
        self._saved: dict[int, Any] = {}
        self._target: tuple[asyncio.AbstractEventLoop, Callable[[], None]] | None = None
        self._kill: Callable[[], None] | None = None

    @property
    def code(self) -> int:
        """The exit code the first signal asks for: 130 (SIGINT) or 143 (SIGTERM)."""
        return self._code

    def __enter__(self) -> Interrupts:
        for number in _SIGNALS:
            self._saved[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for number, handler in self._saved.items():
            signal.signal(number, handler)
        self._saved.clear()

    @contextlib.contextmanager
    def stopping(
        self, stop: Callable[[], None], *, kill: Callable[[], None] | None = None
    ) -> Iterator[None]:
        """While the block runs, a first signal calls ``stop`` on this loop.

        ``kill`` runs before a second signal exits the process (for example
        to kill worker processes, so that none writes after the command
        ended). A signal received before the block stops it at once.
        """
        loop = asyncio.get_running_loop()
        self._target, self._kill = (loop, stop), kill
        if self.signal is not None:
            stop()
        try:
            yield
        finally:
            self._target, self._kill = None, None

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self.signal is not None:
            _say(f"{name} again: exiting now (rerun with the same checkpoint to resume)")
            if self._kill is not None:
                with contextlib.suppress(Exception):
                    self._kill()
            os._exit(self._code)
        self.signal = name
        self._code = _CODES.get(signal.Signals(number), EXIT_INTERRUPTED)
        _say(
            f"interrupted ({name}): stopping; pages already fetched land first, then the "
            f"summary (send {name} again to exit at once)"
        )
        target = self._target
        if target is not None:
            loop, stop = target
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                loop.call_soon_threadsafe(stop)


async def stoppable_run(pull: ShardedPull, interrupts: Interrupts) -> None:
    """Run a sharded pull that a first signal stops gracefully and a second one kills.

    Graceful where the engine can stop (local processes: no unit starts, each
    running unit lands what it fetched and reports); elsewhere the run is
    cancelled, as Ctrl-C did before. Before a second signal exits, the local
    worker processes are killed, so that none writes after the command has
    ended (a rerun could otherwise meet a second writer) and none is left
    waiting for work.
    """
    task = asyncio.ensure_future(pull.run())

    def stop() -> None:
        if not pull.stop():
            task.cancel()

    def kill() -> None:
        # Local worker processes are killed, idle ones included; Ray's workers are
        # Ray's to stop (they may be on other machines).
        engine_kill = getattr(pull.engine, "kill", None)
        if engine_kill is not None:
            engine_kill()

    with interrupts.stopping(stop, kill=kill):
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled() or interrupts.signal is None:
                raise
