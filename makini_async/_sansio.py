"""Pure request building and response deciphering: no I/O, no aiohttp.

Everything here works on ``(status, headers, body bytes)`` so it is tested
without sockets.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import orjson

from makini_async.errors import (
    APIError,
    MalformedResponse,
    RateLimitError,
    ServerError,
    UsageError,
    error_class_for,
)
from makini_async.models._converter import _c_date, _c_datetime

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "check_base_url",
    "check_token",
    "decode_json",
    "error_from_response",
    "format_when",
    "list_params",
    "parse_page",
    "parse_retry_after",
    "parse_single",
    "valid_token",
]

_EMPTY: Mapping[str, Any] = {}


def format_when(value: dt.datetime | dt.date | str, *, name: str) -> str:
    """An ISO 8601 query value for ``modified_after``/``created_after``.

    Aware datetimes are converted to UTC and written with ``Z``; naive ones are
    taken as UTC. Strings are checked to be ISO dates or date-times.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return (
            value.isoformat(timespec="seconds" if not value.microsecond else "microseconds") + "Z"
        )
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            (_c_date if len(text) == 10 else _c_datetime)(text)
        except ValueError:
            pass
        else:
            return text
    msg = (
        f"{name} must be an ISO 8601 date or date-time (2024-01-01 or "
        f"2024-01-01T00:00:00Z), a date or a datetime; got {value!r}"
    )
    raise UsageError(msg)


def check_base_url(base_url: object) -> None:
    """Raise :class:`UsageError` unless ``base_url`` is an http(s) URL with a host."""
    msg = f"base_url must be an http:// or https:// URL with a host, got {base_url!r}"
    if not isinstance(base_url, str):
        raise UsageError(msg)
    try:
        parts = urlsplit(base_url)
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        raise UsageError(msg) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise UsageError(msg)


_BAD_TOKEN_CHAR: Final = re.compile(r"[\s\x00-\x1f\x7f]")


def valid_token(token: object) -> bool:
    """Whether ``token`` can go in an Authorization header (non-empty, no space or control)."""
    return isinstance(token, str) and bool(token) and not _BAD_TOKEN_CHAR.search(token)


def check_token(token: object) -> None:
    """Raise :class:`UsageError` (never naming the token) unless it is a valid token."""
    if not valid_token(token):
        msg = (
            "a connection token must be a non-empty string without whitespace or control characters"
        )
        raise UsageError(msg)


def list_params(
    page_size: int, cursor: str | None, modified_after: str | None, created_after: str | None
) -> dict[str, str]:
    """Query parameters of one listing request."""
    params = {"page_size": str(page_size)}
    if cursor is not None:
        params["cursor"] = cursor
    if modified_after is not None:
        params["modified_after"] = modified_after
    if created_after is not None:
        params["created_after"] = created_after
    return params


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
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        if now is None:
            now = dt.datetime.now(dt.timezone.utc).timestamp()
        return max(0.0, when.timestamp() - now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def decode_json(body: bytes, *, request_id: str | None, what: str = "response") -> Any:
    """Parse a JSON body, or raise :class:`MalformedResponse`."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        snippet = body[:80].decode("utf-8", "replace")
        msg = f"{what} is not valid JSON ({exc.msg} at position {exc.pos}; starts {snippet!r})"
        raise MalformedResponse(msg, request_id=request_id) from None


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    connection: str | None = None,
    now: float | None = None,
) -> APIError:
    """The typed error for an error answer (status >= 400)."""
    request_id = headers.get("X-Request-Id")
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
        code = _str_or_none(error.get("code"))
        err_type = _str_or_none(error.get("type"))
        message = _str_or_none(error.get("message"))
        request_id = _str_or_none(error.get("request_id")) or request_id
        raw_details = error.get("details")
        if isinstance(raw_details, dict):
            details = raw_details
    if message is None:
        text = body[:200].decode("utf-8", "replace").strip() if body else ""
        message = f"HTTP {status}" + (f": {text}" if text and payload is None else "")
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
    return cls(message, **kwargs)


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
