"""What comes back: answers read and errors built from ``(status, headers, body)`` (no I/O).

Everything here works on bytes and header values, so it is tested without sockets.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import orjson

from makini_async._wire.scrub import clean, scrub_data
from makini_async.errors import (
    APIError,
    MalformedResponse,
    RateLimitError,
    ServerError,
    UnexpectedRedirect,
    error_class_for,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "decode_json",
    "error_from_response",
    "parse_page",
    "parse_retry_after",
    "parse_single",
    "redirect_error",
    "summarize_body",
]

_EMPTY: Mapping[str, Any] = {}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date.

    ``now`` is the current wall-clock time (``time.time()``), for HTTP dates.
    Unparseable values give ``None``; dates in the past give ``0.0``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        if now is None:
            now = dt.datetime.now(dt.timezone.utc).timestamp()
        try:
            return max(0.0, when.timestamp() - now)
        except (OverflowError, ValueError, OSError):
            return None
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def decode_json(body: bytes, *, request_id: str | None, what: str = "response") -> Any:
    """Parse a JSON body, or raise :class:`MalformedResponse`."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    # Raised outside the handler: the decode error is no use to anyone and a
    # chain would keep a reference to the whole body.
    snippet = clean(bytes(body[:_SNIPPET]).decode("utf-8", "replace"), limit=80)
    msg = f"{what} is not valid JSON ({error.msg} at position {error.pos}; starts {snippet!r})"
    raise MalformedResponse(msg, request_id=_request_id(request_id, ()))


# Bytes of a body shown in a message: enough for a credential to be scrubbed whole.
_SNIPPET: Final = 400
# Of a body that is not the API's JSON, at most this much text is quoted.
_GIST: Final = 100
_TITLE: Final = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_TAGS: Final = re.compile(r"<[^>]*>")


def summarize_body(body: bytes, content_type: str | None, secrets: tuple[str, ...] = ()) -> str:
    """One short line about a body that is not the API's JSON (a proxy's error page).

    Content type, size, and the page title or its first line of text: cut
    short, scrubbed of credentials and with control characters escaped, so a
    proxy's whole HTML page never lands in a message or a summary.
    """
    kind = (content_type or "no content type").split(";")[0].strip()
    head = bytes(body[: 4 * _SNIPPET])
    match = _TITLE.search(head)
    if match is not None:
        gist = match.group(1).decode("utf-8", "replace")
    else:
        text = _TAGS.sub(" ", head.decode("utf-8", "replace"))
        gist = next((line for line in text.splitlines() if line.strip()), "")
    gist = " ".join(gist.split())
    shown = f": {clean(gist, secrets, limit=_GIST)}" if gist else ""
    return f"({kind}, {len(body)} bytes){shown}"


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    connection: str | None = None,
    now: float | None = None,
    token: str | None = None,
) -> APIError:
    """The typed error for an error answer (status >= 400).

    All text taken from the answer is scrubbed of ``token`` (the connection's
    own) and of anything credential-shaped, has control characters escaped
    and is shortened, so the error can be logged and shown as it is.
    """
    secrets = (token,) if token else ()
    request_id = _request_id(headers.get("X-Request-Id"), secrets)
    code: str | None = None
    err_type: str | None = None
    message: str | None = None
    details: Mapping[str, Any] = _EMPTY
    try:
        payload = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        code = _text_or_none(error.get("code"), secrets)
        err_type = _text_or_none(error.get("type"), secrets)
        message = _text_or_none(error.get("message"), secrets)
        request_id = _request_id(_str_or_none(error.get("request_id")), secrets) or request_id
        raw_details = error.get("details")
        if isinstance(raw_details, dict):
            details = scrub_data(raw_details, secrets)
    if message is None:
        message = f"HTTP {status}"
        if body and payload is None:
            message += " " + summarize_body(body, headers.get("Content-Type"), secrets)
    cls = error_class_for(status, code)
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "type": err_type,
        "request_id": request_id,
        "details": details,
        "connection": connection,
    }
    if issubclass(cls, (RateLimitError, ServerError)):
        kwargs["retry_after"] = parse_retry_after(headers.get("Retry-After"), now=now)
    result = cls(message, **kwargs)
    result.structured = isinstance(error, dict)
    return result


def _request_id(value: str | None, secrets: tuple[str, ...]) -> str | None:
    return None if not value else clean(value, secrets, limit=_MAX_REQUEST_ID)


# Request IDs are short (``req_8f3a2c``); a longer one is cut.
_MAX_REQUEST_ID: Final = 100


def _text_or_none(value: object, secrets: tuple[str, ...]) -> str | None:
    return clean(value, secrets) if isinstance(value, str) else None


def redirect_error(
    method: str, path: str, status: int, headers: Mapping[str, str], *, token: str | None = None
) -> UnexpectedRedirect:
    """The error for a 3xx answer: redirects are never followed.

    Following one would send the token, a write body and its idempotency key
    wherever ``Location`` points. Only the target's origin is kept, scrubbed.
    """
    secrets = (token,) if token else ()
    location = _origin(headers.get("Location"), secrets)
    msg = (
        f"{method} {path}: the API answered {status} redirecting to "
        f"{location or 'an unknown location'}; redirects are never followed (the "
        "token and any write would go with it): check base_url"
    )
    return UnexpectedRedirect(
        msg,
        status=status,
        location=location,
        request_id=_request_id(headers.get("X-Request-Id"), secrets),
    )


def _origin(location: str | None, secrets: tuple[str, ...]) -> str | None:
    """``scheme://host[:port]`` of a Location, nothing of its path, query or user info."""
    if not location:
        return None
    try:
        parts = urlsplit(location.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return "the same origin"
    host = f"[{host}]" if ":" in host else host
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    return clean(origin, secrets, limit=100)


def parse_page(body: bytes, *, request_id: str | None) -> tuple[list[Any], str | None, int | None]:
    """``(data, next_cursor, total_count)`` of a listing answer.

    ``data`` is the list as sent: an item that is not an object is the
    caller's to set apart (as an invalid record), not a reason to refuse
    the whole page.
    """
    payload = decode_json(body, request_id=request_id, what="listing response")
    if not isinstance(payload, dict):
        msg = "listing response is not a JSON object"
        raise MalformedResponse(msg, request_id=request_id)
    data = payload.get("data")
    if not isinstance(data, list):
        msg = "listing response has no 'data' list"
        raise MalformedResponse(msg, request_id=request_id)
    next_cursor = payload.get("next_cursor")
    if next_cursor is not None and (not isinstance(next_cursor, str) or not next_cursor):
        if next_cursor == "":
            next_cursor = None
        else:
            msg = f"listing response has a non-string next_cursor {type(next_cursor).__name__}"
            raise MalformedResponse(msg, request_id=request_id)
    total = payload.get("total_count")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
        total = None
    return data, next_cursor, total


def parse_single(body: bytes, *, request_id: str | None) -> dict[str, Any]:
    """The ``data`` object of a single-record answer."""
    payload = decode_json(body, request_id=request_id)
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        msg = "response has no 'data' object"
        raise MalformedResponse(msg, request_id=request_id)
    return data


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
