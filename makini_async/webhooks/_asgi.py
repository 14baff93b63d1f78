"""Plain ASGI plumbing for the receiver: reading a body with a cap, canned answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import orjson

__all__ = ["MAX_BODY", "ASGIReceive", "ASGIScope", "ASGISend", "answer", "read_body"]

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
    413: _json({"error": "body too large"}),
    503: _json({"error": "busy, deliver again later"}),
}


def answer(status: int) -> bytes:
    """The small JSON body sent with ``status``."""
    return _ANSWERS.get(status, b"{}")


async def read_body(receive: ASGIReceive) -> tuple[bytes, bool]:
    """The request's body, and whether it was cut off for being over :data:`MAX_BODY`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", False
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > MAX_BODY:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
