"""What a caller passes, checked and encoded: entities, filters, cursors, keys, bodies.

Pure functions (no I/O) shared by a resource's calls and their raw forms;
each bad argument is a :class:`~makini_async.errors.UsageError` that says
what was expected.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import orjson

from makini_async._invalid import ON_INVALID
from makini_async._wire.requests import format_when
from makini_async.entities import Entity, EntityLike, to_entity
from makini_async.errors import UsageError
from makini_async.models import Record, unstructure

if TYPE_CHECKING:
    import datetime as dt

__all__ = [
    "AUTO",
    "check_on_invalid",
    "cursor",
    "encode",
    "entity_of",
    "idempotency_key",
    "when",
]


class _Auto:
    def __repr__(self) -> str:
        return "AUTO"


#: Generate an idempotency key (the default for ``create`` and ``update``).
AUTO: Final = _Auto()


def entity_of(entity: EntityLike) -> Entity:
    """The :class:`Entity` for an argument, or :class:`UsageError`."""
    try:
        return to_entity(entity)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def check_on_invalid(on_invalid: object) -> None:
    """Raise :class:`UsageError` unless ``on_invalid`` is one of the policies."""
    if on_invalid not in ON_INVALID:
        msg = f"on_invalid must be one of {sorted(ON_INVALID)}, got {on_invalid!r}"
        raise UsageError(msg)


def when(value: dt.datetime | dt.date | str | None, name: str) -> str | None:
    return None if value is None else format_when(value, name=name)


def cursor(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    msg = f"cursor must be a page's next_cursor (a non-empty string) or None, got {value!r}"
    raise UsageError(msg)


def idempotency_key(value: str | _Auto | None) -> str | None:
    if value is AUTO:
        return uuid.uuid4().hex
    if value is None or (isinstance(value, str) and value):
        return value
    msg = "idempotency_key must be a non-empty string, AUTO or None"
    raise UsageError(msg)


def encode(body: object) -> bytes:
    """A JSON request body: decimals as strings, records in the API's shape."""
    try:
        return orjson.dumps(body, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        msg = f"cannot send this body as JSON: {exc}"
        raise UsageError(msg) from None


def _default(value: object) -> object:
    # Decimals go out as strings: the API's money and quantities are decimal strings.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Record):
        return unstructure(value)
    msg = f"cannot send a {type(value).__name__} in a JSON body"
    raise TypeError(msg)
