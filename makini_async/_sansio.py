"""Pure request building and response deciphering: no I/O, no aiohttp.

Everything here works on ``(status, headers, body bytes)`` so it is tested
without sockets.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import math
import re
import unicodedata
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit

import orjson

from makini_async._constants import MAX_TOKEN_LENGTH
from makini_async._scrub import clean, scrub_data
from makini_async.errors import (
    APIError,
    MalformedResponse,
    RateLimitError,
    ServerError,
    UnexpectedRedirect,
    UsageError,
    error_class_for,
)
from makini_async.models._fields import to_date, to_datetime

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "check_base_url",
    "check_record_id",
    "check_token",
    "decode_json",
    "error_from_response",
    "format_when",
    "is_loopback",
    "list_params",
    "parse_page",
    "parse_retry_after",
    "parse_single",
    "redirect_error",
    "summarize_body",
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
            (to_date if len(text) == 10 else to_datetime)(text)
        except ValueError:
            pass
        else:
            return text
    msg = (
        f"{name} must be an ISO 8601 date or date-time (2024-01-01 or "
        f"2024-01-01T00:00:00Z), a date or a datetime; got {value!r}"
    )
    raise UsageError(msg)


def check_base_url(base_url: object, *, allow_insecure_http: bool = False) -> None:
    """Raise :class:`UsageError` unless ``base_url`` is a usable API base URL.

    It must be an ``https://`` URL with a host, no user name or password, no
    query and no fragment. ``http://`` is accepted only for loopback hosts
    (``127.0.0.0/8``, ``::1``, ``localhost``) unless ``allow_insecure_http``:
    over plain HTTP anyone on the path reads every token. Messages never show
    a password.
    """
    shown = _show_url(base_url)
    msg = f"base_url must be an http:// or https:// URL with a host, got {shown}"
    if not isinstance(base_url, str):
        raise UsageError(msg)
    try:
        parts = urlsplit(base_url)
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        raise UsageError(msg) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(msg)
    if "@" in parts.netloc:
        msg = f"base_url must not contain a user name or password, got {shown}"
        raise UsageError(msg)
    if parts.query or parts.fragment or "?" in base_url or "#" in base_url:
        msg = f"base_url must not have a query or fragment, got {shown}"
        raise UsageError(msg)
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        msg = (
            f"base_url {shown} uses plain http:// for a host that is not loopback, which "
            "would send every token in clear text; use https://, or pass "
            "MakiniPool(allow_insecure_http=True) if this really is intended"
        )
        raise UsageError(msg)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a URL's host name) is this machine."""
    host = host.rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _show_url(value: object) -> str:
    # Never show credentials: drop everything between ``//`` and the last ``@``.
    if not isinstance(value, str):
        return f"an object of type {type(value).__name__}"
    return repr(clean(_USERINFO.sub(r"\1<redacted>@", value)))


_USERINFO: Final = re.compile(r"(//).*@", re.DOTALL)

# RFC 6750 ``b64token``: what may follow ``Bearer `` in an Authorization header.
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*", re.ASCII)


def valid_token(token: object) -> bool:
    """Whether ``token`` can go in an Authorization header.

    A token is 1 to ``MAX_TOKEN_LENGTH`` characters of the RFC 6750
    ``b64token`` set: ASCII letters, digits, ``-._~+/``, then optional ``=``.
    """
    return (
        isinstance(token, str)
        and 0 < len(token) <= MAX_TOKEN_LENGTH
        and _B64TOKEN.fullmatch(token) is not None
    )


def check_token(token: object) -> None:
    """Raise :class:`UsageError` (never naming the token) unless it is a valid token."""
    if not valid_token(token):
        kind = "" if isinstance(token, str) else f" (got {type(token).__name__})"
        msg = (
            f"a connection token must be a string of 1 to {MAX_TOKEN_LENGTH} characters "
            f"from A-Z a-z 0-9 - . _ ~ + / followed by optional = padding{kind}"
        )
        raise UsageError(msg)


def check_record_id(id: object) -> str:
    """``id`` as a path segment, or :class:`UsageError`.

    Ids that are empty or that a server or proxy could read as ``.`` or
    ``..`` (after Unicode normalisation) are refused: they would address the
    collection itself (``DELETE /api/v1/assets/..``) instead of one record.
    """
    if not isinstance(id, str):
        msg = f"record id must be a string, got {type(id).__name__}"
        raise UsageError(msg)
    if unicodedata.normalize("NFKC", id).strip() in _DOT_SEGMENTS:
        msg = f"record id must not be empty, '.' or '..', got {clean(repr(id))}"
        raise UsageError(msg)
    return quote(id, safe="")


_DOT_SEGMENTS: Final = frozenset({"", ".", ".."})


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
