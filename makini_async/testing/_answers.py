"""The mock's answers: error bodies, proxy pages, and the date helpers of its records."""

from __future__ import annotations

import calendar
import datetime as dt
import time
from typing import TYPE_CHECKING, Any, Final

import orjson

from makini_async.entities import Entity
from makini_async.testing._data import (
    format_datetime,
    now_iso,
)

if TYPE_CHECKING:
    from collections.abc import Mapping


RequestLogEntry = tuple[str, str, str, str, int]

_PREFIX: Final[str] = "/api/v1/"
_BY_PATH: Final[dict[str, Entity]] = {e.value: e for e in Entity}
_NO_DELETE: Final[frozenset[Entity]] = frozenset({Entity.PURCHASE_ORDERS, Entity.WORK_ORDERS})
_WRITES: Final[frozenset[str]] = frozenset({"POST", "PATCH", "DELETE"})
_LOCKED_WO_STATUSES: Final[frozenset[str]] = frozenset({"completed", "cancelled"})

_ERROR_TYPES: Final[dict[str, str]] = {
    "INVALID_REQUEST": "invalid_request_error",
    "INVALID_PAGE_SIZE": "invalid_request_error",
    "VALIDATION_FAILED": "validation_error",
    "AUTHENTICATION_FAILED": "authentication_error",
    "REAUTHORIZATION_REQUIRED": "authentication_error",
    "PERMISSION_DENIED": "permission_error",
    "NOT_FOUND": "not_found_error",
    "OPERATION_NOT_SUPPORTED": "operation_not_supported_error",
    "CONFLICT": "conflict_error",
    "RATE_LIMIT_EXCEEDED": "rate_limit_error",
    "INTERNAL_ERROR": "api_error",
    "CONNECTED_SYSTEM_ERROR": "connected_system_error",
    "SERVICE_UNAVAILABLE": "api_error",
}
_FAULT_ERRORS: Final[dict[str, tuple[int, str, str]]] = {
    "error_500": (500, "INTERNAL_ERROR", "Internal error (injected)"),
    "error_502": (502, "CONNECTED_SYSTEM_ERROR", "The connected system failed (injected)"),
    "error_503": (503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable (injected)"),
}
# What nginx answers when it cannot reach the API: a whole HTML page, no API body.
_GATEWAY_PAGES: Final[dict[int, bytes]] = {
    status: (
        f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
    for status, title in ((502, "Bad Gateway"), (504, "Gateway Time-out"))
}
_GATEWAY_FAULTS: Final[dict[str, int]] = {"html_error": 502, "error_504": 504}
_MALFORMED_BODY: Final[bytes] = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>upstream hiccup</p></body></html>"
)


class _Answer:
    """A response under construction: status, JSON body bytes, extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes | None, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


def _error(
    status: int,
    code: str,
    message: str,
    request_id: str,
    *,
    details: Mapping[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> _Answer:
    body = orjson.dumps(
        {
            "error": {
                "code": code,
                "type": _ERROR_TYPES.get(code, "api_error"),
                "message": message,
                "request_id": request_id,
                "details": dict(details or {}),
            }
        }
    )
    return _Answer(status, body, headers)


def _parse_when(value: str) -> str:
    """Normalise a filter date or date-time to ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    text = value.strip()
    if len(text) == 10:
        day = dt.date.fromisoformat(text)
        return f"{day.isoformat()}T00:00:00Z"
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return format_datetime(moment.timestamp() // 1)


def _epoch(iso: str) -> int | None:
    try:
        return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


def _bumped(old: Any, skew: float = 0.0) -> str:
    now = now_iso(skew)
    if isinstance(old, str) and now <= old:
        epoch = _epoch(old)
        return format_datetime(epoch + 1) if epoch is not None else now
    return now


def _validation(problems: Mapping[str, list[str]], request_id: str) -> _Answer:
    return _error(
        400,
        "VALIDATION_FAILED",
        "The record failed validation: " + ", ".join(sorted(problems)),
        request_id,
        details={"fields": dict(problems)},
    )
