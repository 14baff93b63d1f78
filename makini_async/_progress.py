"""The live progress display of the ``makini-async`` command line.

:class:`Progress` reads a live :class:`~makini_async.bulk.PullReport` and
writes to a text stream: on a terminal one self-updating line (``\\r`` then
the line, then "erase to end of line"), elsewhere (a pipe, a log file) one
plain line per interval. It only shows counts and connection *numbers*, so it
can never print a token. Rendering is separate from timing so that tests need
no terminal::

    progress = Progress(pull.report, sys.stderr, isatty=sys.stderr.isatty())
    progress.start()
    ...  # pull
    await progress.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from typing import TextIO

    from makini_async.bulk import PullReport

__all__ = ["TTY_INTERVAL", "Progress"]

#: Seconds between updates of the self-updating terminal line (about 5 Hz).
TTY_INTERVAL: Final = 0.2
#: Default seconds between plain progress lines when not on a terminal.
LOG_INTERVAL: Final = 2.0

_ERASE_LINE: Final = "\x1b[K"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Periodic progress output for one pull.

    ``isatty`` picks the style: a single line rewritten in place every
    :data:`TTY_INTERVAL` seconds, or a plain line every ``interval`` seconds
    (default :data:`LOG_INTERVAL`). :meth:`render` is the text of one update.
    """

    def __init__(
        self,
        report: PullReport,
        stream: TextIO,
        *,
        isatty: bool,
        interval: float | None = None,
    ) -> None:
        self.report = report
        self.stream = stream
        self.isatty = isatty
        default = TTY_INTERVAL if isatty else LOG_INTERVAL
        self.interval = default if interval is None else interval
        self.updates = 0
        self._task: asyncio.Task[None] | None = None

    def render(self) -> str:
        """One update's text (no line ending, no control characters)."""
        r = self.report
        failed = len(r.failed_connections)
        if self.isatty:
            return (
                f"[{_duration(r.elapsed)}] connections {r.connections_done}/"
                f"{r.connections_total} | records {r.records:,} "
                f"({r.records_per_second:,.0f}/s) | retries {r.retries:,} | "
                f"429s {r.rate_limited:,} | failed {failed}"
            )
        return (
            f"progress: elapsed={r.elapsed:.1f}s connections={r.connections_done}/"
            f"{r.connections_total} records={r.records} "
            f"records_per_s={r.records_per_second:.0f} retries={r.retries} "
            f"rate_limited={r.rate_limited} failed_connections={failed}"
        )

    def update(self) -> None:
        """Write one update now."""
        text = self.render()
        if self.isatty:
            self.stream.write(f"\r{text}{_ERASE_LINE}")
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()
        self.updates += 1

    def message(self, text: str) -> None:
        """Write a line of other text (a warning) without garbling the progress line."""
        if self.isatty:
            self.stream.write(f"\r{_ERASE_LINE}{text}\n")
            self.stream.write(f"\r{self.render()}{_ERASE_LINE}")
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()

    def finish(self) -> None:
        """Write the final state; on a terminal, end the self-updating line."""
        self.update()
        if self.isatty:
            self.stream.write("\n")
            self.stream.flush()

    async def run(self) -> None:
        """Update every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.update()

    def start(self) -> None:
        """Start updating in the background (inside the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="makini-progress")

    async def stop(self, *, final: bool = True) -> None:
        """Stop updating; with ``final``, write the last state first."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if final:
            self.finish()
