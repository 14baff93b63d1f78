"""The live progress display of the ``makini-async`` command line.

:class:`Progress` reads a live :class:`~makini_async.bulk.PullReport` and
writes to a text stream. On a terminal it draws tqdm bars, one for the whole
pull and one per entity, each with a percentage and an ETA once the
listing's ``total_count`` is known; elsewhere (a pipe, a log file) it writes
one plain line per interval. It only shows counts and connection *numbers*,
so it can never print a token. Rendering is separate from timing so that
tests need no terminal::

    progress = Progress(pull.report, sys.stderr, isatty=sys.stderr.isatty())
    progress.start()
    ...  # pull
    await progress.stop()

Totals are estimates while chains are still waiting to start: a chain's
total is known from its first page, and a chain not started yet is counted
as the average of its entity's known ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from collections.abc import Iterable

    from makini_async.bulk import ChainReport, PullReport

__all__ = ["TTY_INTERVAL", "Progress", "estimate"]

#: Seconds between updates of the terminal's bars (about 5 Hz).
TTY_INTERVAL: Final = 0.2
#: Default seconds between plain progress lines when not on a terminal.
LOG_INTERVAL: Final = 2.0
_BAR_FORMAT: Final = (
    "{desc:<16} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, "
    "{rate_fmt}]{postfix}"
)


def estimate(chains: Iterable[ChainReport]) -> tuple[int, int | None]:
    """Records delivered and the records expected (``None`` while no chain can say)."""
    done = 0
    known: list[int] = []
    unknown = 0
    for chain in chains:
        done += chain.records
        if chain.total is not None:
            # A finished chain delivered what it delivered, whatever the listing said.
            known.append(chain.records if chain.done else max(chain.total, chain.records))
        elif chain.done:
            known.append(chain.records)
        else:
            unknown += 1
    if not known or not any(known):
        return done, None if unknown else done
    mean = sum(known) / len(known)
    return done, max(done, round(sum(known) + unknown * mean))


def _screen(stream: TextIO) -> tuple[int, int]:
    """The terminal's columns and rows; one that reports none (a bare pty) gets 100 x 25.

    (tqdm hides bars below the last row it knows of: zero rows would hide them all.)
    """
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return 100, 25
    return (size.columns if size.columns >= 40 else 100), (size.lines if size.lines >= 5 else 25)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Periodic progress output for one pull.

    ``isatty`` picks the style: tqdm bars redrawn every :data:`TTY_INTERVAL`
    seconds, or a plain line every ``interval`` seconds (default
    :data:`LOG_INTERVAL`). :meth:`render` is the text of one plain update.
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
        self._bars: dict[str, Any] = {}

    def render(self) -> str:
        """One plain update's text (no line ending, no control characters)."""
        r = self.report
        failed = len(r.failed_connections)
        done, total = estimate(r.chains)
        line = (
            f"progress: elapsed={r.elapsed:.1f}s connections={r.connections_done}/"
            f"{r.connections_total} records={r.records} "
            f"records_per_s={r.records_per_second:.0f} retries={r.retries} "
            f"rate_limited={r.rate_limited} failed_connections={failed}"
        )
        if total:
            rate = r.records_per_second
            left = f"{(total - done) / rate:.0f}s" if rate > 0 else "?"
            line += f" expected_records~{total} percent={100 * done / total:.0f} eta={left}"
        return line

    def _by_entity(self) -> dict[str, list[ChainReport]]:
        groups: dict[str, list[ChainReport]] = defaultdict(list)
        for chain in self.report.chains:
            groups[chain.entity.value].append(chain)
        return groups

    def _draw(self) -> None:
        from tqdm import tqdm  # noqa: PLC0415 - only on a terminal

        r = self.report
        rows: list[tuple[str, list[ChainReport]]] = [("all", r.chains), *self._by_entity().items()]
        columns, rows_ = _screen(self.stream)
        for position, (name, chains) in enumerate(rows):
            bar = self._bars.get(name)
            if bar is None:
                bar = self._bars[name] = tqdm(
                    total=None,
                    desc=name,
                    unit=" rec",
                    unit_scale=True,
                    file=self.stream,
                    position=position,
                    leave=True,
                    ncols=columns,
                    nrows=rows_,
                    bar_format=_BAR_FORMAT,
                    mininterval=0,
                )
            done, total = estimate(chains)
            bar.total = total
            finished = sum(c.done for c in chains)
            failed = sum(c.done and c.outcome.value != "completed" for c in chains)
            extra = f"chains {finished}/{len(chains)}"
            if failed:
                extra += f", {failed} failed"
            if name == "all":
                extra += f", retries {r.retries}, 429s {r.rate_limited}"
            bar.set_postfix_str(extra, refresh=False)
            bar.update(done - bar.n)  # through update, so tqdm's rate and ETA follow
            bar.refresh()

    def update(self) -> None:
        """Write one update now."""
        if self.isatty:
            self._draw()
        else:
            self.stream.write(f"{self.render()}\n")
            self.stream.flush()
        self.updates += 1

    def message(self, text: str) -> None:
        """Write a line of other text (a warning) without garbling the bars."""
        if self.isatty and self._bars:
            from tqdm import tqdm  # noqa: PLC0415

            tqdm.write(text, file=self.stream)
        else:
            self.stream.write(f"{text}\n")
            self.stream.flush()

    def finish(self) -> None:
        """Write the final state; on a terminal, close the bars (they stay on screen)."""
        self.update()
        bars, self._bars = self._bars, {}
        for bar in bars.values():
            bar.close()

    async def run(self) -> None:
        """Update every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.update()

    def start(self) -> None:
        """Start updating in the background (inside the running loop)."""
        if self._task is None:
            if self.isatty:
                self._draw()  # bars start now, so their first rate is records per real second
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
        else:
            bars, self._bars = self._bars, {}
            for bar in bars.values():
                bar.close()
