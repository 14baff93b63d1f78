"""Webhook signatures, the raw event and receiver-side idempotency.

Pure code, no I/O. A receiver verifies the ``X-Makini-Signature`` header
*before* parsing, answers 200 fast, and drops events it has already processed
(deliveries can be duplicated and out of order)::

    verify(secret, body, request.headers["X-Makini-Signature"])
    event = parse_event(body)
    if seen.check_and_add(event.id):
        ...  # first delivery: process it (asynchronously)

Signature (*contract*): ``t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256 keyed with the webhook secret over ``b"<t>." + body``. Several
``v1=`` entries may appear during secret rotation; any match passes.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs
import orjson

from makini_async.errors import UsageError, WebhookVerificationError

__all__ = [
    "DEFAULT_TOLERANCE",
    "EVENT_TYPES",
    "SIGNATURE_HEADER",
    "SeenEvents",
    "WebhookEvent",
    "parse_event",
    "sign",
    "verify",
]

#: The header carrying the signature.
SIGNATURE_HEADER: Final[str] = "X-Makini-Signature"

#: Seconds a signature's timestamp may lie in the past (or future).
DEFAULT_TOLERANCE: Final[int] = 300

#: Event types of the contract.
EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {
        "sync.completed",
        "sync.failed",
        "connection.reauthorization_required",
        "connection.status_changed",
        "system.error",
    }
)


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _digest(secret: str | bytes, body: bytes, timestamp: int) -> str:
    return hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Makini-Signature`` value for ``body`` sent at ``timestamp``.

    >>> sign("s3cret", b"{}", 1700000000)[:13]
    't=1700000000,'
    """
    return f"t={int(timestamp)},v1={_digest(secret, body, int(timestamp))}"


def _parse_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            value = value.strip()
            # ASCII digits only, and few of them: int() would also take "1_0",
            # non-ASCII digits, and spend quadratic time on a huge number.
            if not (value.isascii() and value.isdigit() and len(value) <= 12):
                msg = "webhook signature header has a non-integer timestamp"
                raise WebhookVerificationError(msg)
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value.strip())
    if timestamp is None:
        msg = "webhook signature header has no timestamp"
        raise WebhookVerificationError(msg)
    if not signatures:
        msg = "webhook signature header has no v1 signature"
        raise WebhookVerificationError(msg)
    return timestamp, signatures


def _secrets(secrets: object) -> list[bytes]:
    """Every secret as key bytes; :class:`UsageError` for an empty or mistyped one."""
    if isinstance(secrets, (str, bytes, bytearray)):
        items: list[object] = [secrets]
    elif isinstance(secrets, Iterable) and not isinstance(secrets, Mapping):
        items = list(secrets)
    else:
        msg = f"webhook secrets must be a str, bytes, or a list of them, got {_tname(secrets)}"
        raise UsageError(msg)
    keys: list[bytes] = []
    for item in items:
        if not isinstance(item, (str, bytes, bytearray)):
            msg = f"each webhook secret must be a str or bytes, got {_tname(item)}"
            raise UsageError(msg)
        if not item:
            # An unset environment variable gives "", and an HMAC keyed with
            # nothing is a signature anyone can compute.
            msg = "a webhook secret is empty (is its environment variable unset?)"
            raise UsageError(msg)
        keys.append(item.encode() if isinstance(item, str) else bytes(item))
    if not keys:
        # Fails closed (nothing can match), as it always has.
        msg = "no webhook secret to verify with"
        raise WebhookVerificationError(msg)
    return keys


def _tname(value: object) -> str:
    return type(value).__name__


def _seconds(value: object, name: str, *, allow_negative: bool = False) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or (value < 0 and not allow_negative)
    ):
        bound = "a finite number" if allow_negative else "a finite number >= 0"
        msg = f"{name} must be {bound} of seconds, got {value!r}"
        raise UsageError(msg)
    return float(value)


def verify(
    secrets: str | bytes | Iterable[str | bytes],
    body: bytes,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check ``header`` (the ``X-Makini-Signature`` value) against ``body``.

    ``secrets`` is one secret or several (during rotation, pass old and new).
    Raises :class:`~makini_async.errors.WebhookVerificationError` unless some
    ``v1`` entry matches some secret (constant-time comparison) and the
    timestamp is within ``tolerance`` seconds of ``now`` (default: the
    current time), in either direction.

    Arguments that cannot be right raise :class:`~makini_async.errors.UsageError`
    before anything is checked: an empty secret (an unset environment
    variable would otherwise make every forger's signature valid), a
    ``tolerance`` that is negative, NaN or infinite (which would turn off the
    replay window), a ``body`` that is not bytes, a ``header`` that is not a
    string.
    """
    keys = _secrets(secrets)
    if not isinstance(body, (bytes, bytearray, memoryview)):
        msg = f"body must be the raw request body as bytes, got {_tname(body)}"
        raise UsageError(msg)
    if header is not None and not isinstance(header, str):
        msg = f"header must be a str (the {SIGNATURE_HEADER} value) or None, got {_tname(header)}"
        raise UsageError(msg)
    window = _seconds(tolerance, "tolerance")
    current = time.time() if now is None else _seconds(now, "now", allow_negative=True)
    if not header:
        msg = "missing webhook signature header"
        raise WebhookVerificationError(msg)
    timestamp, signatures = _parse_header(header)
    if timestamp < current - window:
        msg = "webhook signature timestamp is too old"
        raise WebhookVerificationError(msg)
    if timestamp > current + window:
        msg = "webhook signature timestamp is in the future"
        raise WebhookVerificationError(msg)
    payload = bytes(body)
    matched = False
    for key in keys:
        expected = _digest(key, payload, timestamp).encode()
        for candidate in signatures:
            # No short-circuit: every comparison runs, each in constant time.
            matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    if not matched:
        msg = "webhook signature does not match"
        raise WebhookVerificationError(msg)


@attrs.frozen
class WebhookEvent:
    """One webhook payload (*contract*)."""

    id: str
    type: str
    created_at: str
    connection_id: str
    data: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def known_type(self) -> bool:
        """Whether :attr:`type` is one of :data:`EVENT_TYPES`."""
        return self.type in EVENT_TYPES


_INVALID: Final = object()


def parse_event(body: bytes) -> WebhookEvent:
    """Parse a (verified) webhook body.

    Raises :class:`~makini_async.errors.WebhookVerificationError` when the
    body is not a JSON object with string ``id``, ``type``, ``created_at``,
    ``connection_id`` and an object ``data``. Unknown event types are kept.
    """
    if not isinstance(body, (bytes, bytearray, memoryview, str)):
        msg = f"body must be the raw request body as bytes, got {_tname(body)}"
        raise UsageError(msg)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = _INVALID
    if payload is _INVALID:
        msg = "webhook body is not valid JSON"
        raise WebhookVerificationError(msg)
    if not isinstance(payload, dict):
        msg = "webhook body is not a JSON object"
        raise WebhookVerificationError(msg)
    fields: dict[str, str] = {}
    for name in ("id", "type", "created_at", "connection_id"):
        value = payload.get(name)
        if not isinstance(value, str):
            msg = f"webhook body field {name!r} is missing or not a string"
            raise WebhookVerificationError(msg)
        fields[name] = value
    data = payload.get("data", {})
    if not isinstance(data, dict):
        msg = "webhook body field 'data' is not an object"
        raise WebhookVerificationError(msg)
    return WebhookEvent(data=data, **fields)


class SeenEvents:
    """A bounded LRU of processed event ids, for idempotent receivers.

    ``check_and_add(id)`` returns ``True`` the first time it sees ``id``
    (process the event) and ``False`` for a duplicate (skip it). Only the
    ``maxsize`` most recently seen ids are remembered.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            msg = "maxsize must be at least 1"
            raise ValueError(msg)
        self.maxsize = maxsize
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()

    def check_and_add(self, event_id: str) -> bool:
        """``True`` if ``event_id`` is new (and now remembered), else ``False``."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.maxsize:
            self._ids.popitem(last=False)
        return True

    def discard(self, event_id: str) -> None:
        """Forget ``event_id`` (a delivery that was refused, so its redelivery counts)."""
        self._ids.pop(event_id, None)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
