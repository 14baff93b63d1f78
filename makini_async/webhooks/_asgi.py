"""Plain ASGI plumbing for the receiver: reading a body within limits, canned answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import orjson

from makini_async.webhooks._limits import Refused, Tally

__all__ = [
    "MAX_BODY",
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "answer",
    "content_length",
    "read_body",
]

ASGIScope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Makini's payloads are small; this bounds what one request may make us buffer.
MAX_BODY: Final = 1024 * 1024


def _json(payload: dict[str, str]) -> bytes:
    return orjson.dumps(payload)


_ANSWERS: Final = {
    200: _json({"status": "accepted"}),
    400: _json({"error": "invalid webhook signature or body"}),
    405: _json({"error": "POST only"}),
    408: _json({"error": "body not received in time"}),
    413: _json({"error": "body too large"}),
    503: _json({"error": "busy, deliver again later"}),
}


def answer(status: int) -> bytes:
    """The small JSON body sent with ``status``."""
    return _ANSWERS.get(status, b"{}")


def content_length(scope: ASGIScope) -> int | None:
    """The request's ``Content-Length``, if it sent a valid one."""
    for name, value in scope.get("headers", ()):
        if bytes(name).lower() == b"content-length":
            text = bytes(value).strip()
            if text.isdigit() and len(text) <= 18:
                return int(text)
            return None
    return None


async def read_body(
    receive: ASGIReceive,
    max_body: int = MAX_BODY,
    read_timeout: float | None = None,
    tally: Tally | None = None,
) -> bytes | None:
    """The request's body, read within ``max_body`` bytes and ``read_timeout`` seconds.

    ``None`` when the client went away (``http.disconnect``). Raises
    :class:`~makini_async.webhooks._limits.Refused` with 413 as soon as the
    body passes ``max_body``, or 408 when it is not all there in time.
    """

    async def read() -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if tally is not None:
                tally.bytes_read += len(chunk)
            if size > max_body:
                raise Refused(413)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    if read_timeout is None:
        return await read()
    try:
        return await asyncio.wait_for(read(), read_timeout)
    except asyncio.TimeoutError:
        raise Refused(408) from None
