"""The receiver's front ends: an aiohttp handler and an ASGI app, both reading by its limits.

Each delivery goes through the same steps, cheapest first::

    Content-Length over max_body                    -> 413, nothing read
    max_in_flight bodies already being read         -> 503, nothing read
    read the body in bounded chunks                 -> 413 past max_body,
                                                       408 past read_timeout
    the peer went away                              -> counted, nothing answered
    WebhookReceiver.receive(body, signature)        -> 200 / 400 / 503

Refusals close the connection (the rest of the body is never read) and are
counted in the receiver's stats and its :class:`~makini_async.webhooks._limits.DropLog`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from makini_async.webhooks._asgi import (
    ASGIReceive,
    ASGIScope,
    ASGISend,
    answer,
    content_length,
    read_body,
)
from makini_async.webhooks._limits import (
    DropLog,
    Dropped,
    ReceiverStats,
    Refused,
    read_aiohttp,
    refuse_aiohttp,
)
from makini_async.webhooks._signature import SIGNATURE_HEADER

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["Gate", "serve_aiohttp", "serve_asgi"]


class Gate(Protocol):
    """What a front end needs of a receiver (a :class:`WebhookReceiver` is one)."""

    stats: ReceiverStats
    drop_log: DropLog
    max_body: int
    read_timeout: float
    max_in_flight: int
    #: Bodies being read now, counted against ``max_in_flight``.
    reading: int

    async def receive(self, body: bytes, signature: str | None) -> int: ...


_HEADER = SIGNATURE_HEADER.lower().encode()


def _refused(receiver: Gate, status: int) -> None:
    stats = receiver.stats
    if status == 413:
        stats.too_large += 1
    elif status == 408:
        stats.timed_out += 1
    else:
        stats.busy += 1
    receiver.drop_log.note(status)


def _dropped(receiver: Gate) -> None:
    receiver.stats.dropped += 1
    receiver.drop_log.note("dropped")


async def serve_aiohttp(receiver: Gate, request: web.Request) -> web.StreamResponse:
    """Read ``request`` by ``receiver``'s limits and answer it."""
    from aiohttp import web  # noqa: PLC0415 - importing the library must not load aiohttp

    length = request.content_length
    if length is not None and length > receiver.max_body:
        _refused(receiver, 413)
        return await refuse_aiohttp(request, 413, answer(413))
    if receiver.reading >= receiver.max_in_flight:
        _refused(receiver, 503)
        return await refuse_aiohttp(request, 503, answer(503))
    receiver.reading += 1
    try:
        body = await read_aiohttp(request, receiver.max_body, receiver.read_timeout, receiver.stats)
    except Refused as exc:
        _refused(receiver, exc.status)
        return await refuse_aiohttp(request, exc.status, answer(exc.status))
    except Dropped:
        _dropped(receiver)
        # Nobody is there to read it.
        return web.Response(status=400)
    finally:
        receiver.reading -= 1
    status = await receiver.receive(body, request.headers.get(SIGNATURE_HEADER))
    return web.Response(status=status, body=answer(status), content_type="application/json")


async def serve_asgi(
    receiver: Gate, scope: ASGIScope, receive: ASGIReceive, send: ASGISend
) -> None:
    """Answer one ASGI ``http`` request by ``receiver``'s limits."""
    status = 405
    if scope.get("method") == "POST":
        status = await _deliver_asgi(receiver, scope, receive)
        if status == 0:
            return
    headers = [(b"content-type", b"application/json")]
    if status in (408, 413, 503):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer(status)})


async def _deliver_asgi(receiver: Gate, scope: ASGIScope, receive: ASGIReceive) -> int:
    """The status to answer; 0 when the client went away."""
    length = content_length(scope)
    if length is not None and length > receiver.max_body:
        _refused(receiver, 413)
        return 413
    if receiver.reading >= receiver.max_in_flight:
        _refused(receiver, 503)
        return 503
    receiver.reading += 1
    try:
        body = await read_body(receive, receiver.max_body, receiver.read_timeout, receiver.stats)
    except Refused as exc:
        _refused(receiver, exc.status)
        return exc.status
    finally:
        receiver.reading -= 1
    if body is None:
        _dropped(receiver)
        return 0
    header = None
    for name, value in scope.get("headers", ()):
        if bytes(name).lower() == _HEADER:
            header = bytes(value).decode("latin-1")
    return await receiver.receive(body, header)
