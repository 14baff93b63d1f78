"""What goes out: request parameters, base URLs, tokens and record ids checked (no I/O)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import unicodedata
from typing import Final
from urllib.parse import quote, urlsplit

from makini_async._wire.constants import MAX_TOKEN_LENGTH
from makini_async._wire.scrub import clean
from makini_async.errors import UsageError
from makini_async.models._fields import to_date, to_datetime

__all__ = [
    "check_base_url",
    "check_record_id",
    "check_token",
    "format_when",
    "is_loopback",
    "list_params",
    "valid_token",
]


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
    if _PLAIN_ID.fullmatch(id) is not None:
        return id  # nothing to quote, and no dot segment: most ids, at one regex's cost
    if unicodedata.normalize("NFKC", id).strip() in _DOT_SEGMENTS:
        msg = f"record id must not be empty, '.' or '..', got {clean(repr(id))}"
        raise UsageError(msg)
    return quote(id, safe="")


_DOT_SEGMENTS: Final = frozenset({"", ".", ".."})
# Ids that ``quote`` leaves as they are and that cannot be read as a dot segment
# (a dot is allowed after the first character: "wo.1" but never "." or "..").
_PLAIN_ID: Final = re.compile(r"[A-Za-z0-9_\-~][A-Za-z0-9_.\-~]*", re.ASCII)


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
