"""What one unauthenticated request may cost the receiver: size, time, concurrency.

A webhook body arrives before anyone knows who sent it, so the receiver
bounds it itself, whatever the host application allows (an aiohttp app's
``client_max_size``, an ASGI server's defaults):

* **size**: a ``Content-Length`` over the cap is refused with 413 before a
  byte is read; a body without one (chunked) is read in bounded chunks and
  refused with 413 as soon as it passes the cap;
* **time**: the whole body must arrive within the read deadline, else 408;
* **concurrency**: at most ``max_in_flight`` bodies are being read at once;
  one more is refused at once with 503, before anything is read.

Each refusal closes the connection. Connections that drop mid-body, bodies
too slow or too large, refusals for load and bad signatures are events an
attacker controls: :class:`DropLog` logs them as one summary line per
interval, never a line (or a traceback) each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from makini_async.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohttp import web

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_READ_TIMEOUT",
    "DropLog",
    "Dropped",
    "ReceiverStats",
    "Refused",
    "Tally",
    "check_limits",
    "read_aiohttp",
    "refuse_aiohttp",
]

logger = logging.getLogger("makini_async")

#: Seconds the whole body of one delivery may take to arrive.
DEFAULT_READ_TIMEOUT: Final = 10.0
#: Bodies read at once; one more is refused with 503 before it is read.
DEFAULT_MAX_IN_FLIGHT: Final = 64
#: Seconds between two summary lines of dropped or refused connections.
DEFAULT_LOG_INTERVAL: Final = 60.0

_WHAT: Final = {
    "dropped": "dropped before their body was read",
    408: "too slow to send their body (408)",
    413: "sent a body over the cap (413)",
    503: "refused while the receiver was reading its limit of bodies (503)",
}


@attrs.define
class ReceiverStats:
    """Counters of one receiver since it was made."""

    received: int = 0  # deliveries that reached receive()
    rejected: int = 0  # 400: bad signature or body
    duplicates: int = 0  # 200, already accepted before
    refused: int = 0  # 503: queue full or closing
    accepted: int = 0  # 200 and queued
    too_large: int = 0  # 413: over max_body
    timed_out: int = 0  # 408: body not all there within read_timeout
    busy: int = 0  # 503: max_in_flight bodies were being read already
    dropped: int = 0  # the peer went away before its body was read
    bytes_read: int = 0  # body bytes read off the wire, refused bodies included
    handled: int = 0  # handler returned
    failed: int = 0  # handler raised or timed out
    unhandled: int = 0  # still queued when close() gave up waiting
    max_queued: int = 0


class Tally(Protocol):
    """Where the bytes read are counted (:class:`ReceiverStats` is one)."""

    bytes_read: int


class Refused(Exception):
    """A body the receiver will not read further: answer ``status`` and close."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Dropped(Exception):
    """The peer went away mid-body: nothing can be answered."""


def check_limits(max_body: object, read_timeout: object, max_in_flight: object) -> None:
    """:class:`UsageError` for a limit that would not bound anything."""
    for name, value in (("max_body", max_body), ("max_in_flight", max_in_flight)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            msg = f"{name} must be an integer >= 1, got {value!r}"
            raise UsageError(msg)
    if (
        isinstance(read_timeout, bool)
        or not isinstance(read_timeout, (int, float))
        or not math.isfinite(read_timeout)
        or read_timeout <= 0
    ):
        msg = f"read_timeout must be a finite number of seconds > 0, got {read_timeout!r}"
        raise UsageError(msg)


class DropLog:
    """Counts dropped and refused connections; logs one summary line per ``interval``."""

    def __init__(
        self, interval: float = DEFAULT_LOG_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._counts: Counter[str | int] = Counter()
        self._since: float | None = None

    def note(self, what: str | int) -> None:
        """Count one event; log the summary if the last one is ``interval`` old.

        ``what``: ``"dropped"``, a refusal's status (408, 413, 503), or the
        text of any other event (a rejection's fixed reason).
        """
        now = self._clock()
        self._counts[what] += 1
        if self._since is None or now - self._since >= self.interval:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Log what was counted since the last line (if anything) and start over."""
        now = self._clock() if now is None else now
        if self._counts:
            parts = "; ".join(
                f"{count} {_WHAT.get(what, what)}"
                for what, count in sorted(self._counts.items(), key=lambda kv: str(kv[0]))
            )
            last = "" if self._since is None else f" in the last {now - self._since:.0f} s"
            logger.warning("webhook receiver, deliveries not accepted%s: %s", last, parts)
            self._counts.clear()
        self._since = now


async def read_aiohttp(
    request: web.BaseRequest, max_body: int, read_timeout: float, tally: Tally
) -> bytes:
    """The body of ``request``, read by the receiver's own limits.

    Raises :class:`Refused` (413 or 408) or :class:`Dropped` (the peer left).
    """
    from aiohttp import ClientPayloadError  # noqa: PLC0415 - aiohttp is loaded only when used

    length = request.content_length
    if length is not None and length > max_body:
        raise Refused(413)
    stream = request.content

    async def read() -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await stream.readany()
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            tally.bytes_read += len(chunk)
            if size > max_body:
                raise Refused(413)
            chunks.append(chunk)

    try:
        return await asyncio.wait_for(read(), read_timeout)
    except asyncio.TimeoutError:
        raise Refused(408) from None
    except (ConnectionError, ClientPayloadError):
        # The peer left, or cut a chunked body short.
        raise Dropped from None


async def refuse_aiohttp(request: web.BaseRequest, status: int, body: bytes) -> web.Response:
    """Answer ``status`` and close the connection: the rest of the body is never read."""
    from aiohttp import web  # noqa: PLC0415 - importing the library must not load aiohttp

    resp = web.Response(status=status, body=body, content_type="application/json")
    resp.force_close()
    await resp.prepare(request)
    await resp.write_eof()
    transport = request.transport
    if transport is not None:
        # No lingering read of what the peer still sends.
        transport.close()
    return resp
