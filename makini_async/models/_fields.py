"""Field converters: the one documented rule per shape a source may send.

Each converter raises TypeError or ValueError with a readable message when a
value fits no rule; the record is then an invalid record, never a crash.

Conversion rules: the contract's shape first, then the shapes real source
systems send, each read one documented way (the README has the table):

* strings: ``str``; a JSON number becomes its text (``17`` -> ``"17"``,
  ``2.5`` -> ``"2.5"``); a boolean, list or object is an error;
* integers (``lines[].line_number``): ``int``; an integral float
  (``10.0``) or a string of digits (``"10"``) becomes the integer;
* money and quantities (``Decimal``): decimal strings and ``int`` exactly; a
  JSON float through its shortest round-trip text (``1234.5`` ->
  ``Decimal("1234.5")``, exact up to 17 significant digits); NaN, infinities
  and booleans are errors;
* date-times: ISO 8601 with ``Z``, a numeric offset (``+02:00``, ``+0200``,
  ``+02``) or none (read as UTC), ``T`` or a space, fractions of any length
  (cut to microseconds); a bare date is midnight UTC; offsets are kept;
* dates: ``YYYY-MM-DD``; a date-time is read as the date it writes (no
  time-zone shift);
* ``custom_fields`` absent or ``null`` becomes ``{}``; ``raw`` absent stays
  ``None``; ``lines``/``assignees`` absent or ``null`` become ``()``; a
  nested object ``null`` is ``None``; statuses and priorities are free text;
* unknown keys, at the top level and in nested objects (addresses, vendor
  references, purchase-order lines), are kept in ``extra``.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import sys
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = [
    "parse_datetime",
    "show",
    "to_date",
    "to_datetime",
    "to_decimal",
    "to_dict",
    "to_int",
    "to_seq",
    "to_str",
    "to_str_tuple",
    "type_name",
]

_UTC: Final = _dt.timezone.utc
_fromisoformat = _dt.datetime.fromisoformat
_date_fromisoformat = _dt.date.fromisoformat
_PY311: Final = sys.version_info >= (3, 11)


# --- field converters (raise TypeError/ValueError with a readable message) ---
#
# Each converter has a fast path for the shape the contract documents and a
# tolerant path for the shapes source systems actually send (the rules are
# listed in the module docstring and the README). Anything else raises, and
# the record is delivered as an invalid record instead of a typed one.

# The extended ISO 8601 / RFC 3339 shapes ``fromisoformat`` may refuse on
# Python 3.10 (or at all): ``T``, ``t`` or a space between date and time,
# minutes-only times, a fraction of any length (``.`` or ``,``), and a zone
# of ``Z``/``z``, ``+HH``, ``+HHMM`` or ``+HH:MM``.
_DATETIME_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?"
)


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def show(value: object) -> str:
    """A value for a message: its repr, cut short (a source may send megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_str(value: object) -> str:
    if isinstance(value, str):
        return value
    # A number where text is documented (SAP document numbers, postal codes,
    # phone numbers): its JSON text is what the source meant.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    msg = f"expected a string, got {type_name(value)} {show(value)}"
    raise TypeError(msg)


def parse_datetime(value: str) -> _dt.datetime:
    """The slow path: the regular expression above, fractions cut to microseconds."""
    match = _DATETIME_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(value)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz: _dt.tzinfo = _UTC
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        offset = _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        tz = _dt.timezone(-offset if zone[0] == "-" else offset)
    return _dt.datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        micro,
        tzinfo=tz,
    )


def to_datetime(value: object) -> _dt.datetime:
    if not isinstance(value, str):
        msg = f"expected an ISO 8601 date-time string, got {type_name(value)} {show(value)}"
        raise TypeError(msg)
    try:
        result = _fromisoformat(value)
    except ValueError:
        result = _to_datetime_slow(value)
    if result.tzinfo is None:
        return result.replace(tzinfo=_UTC)
    return result


def _to_datetime_slow(value: str) -> _dt.datetime:
    try:
        return parse_datetime(value)
    except ValueError:
        msg = f"not an ISO 8601 date-time: {show(value)}"
        raise ValueError(msg) from None


if not _PY311:
    # Python 3.10's fromisoformat reads only what isoformat writes: go straight
    # to the one rule both versions share.
    _fromisoformat = parse_datetime


def to_date(value: object) -> _dt.date:
    if not isinstance(value, str):
        msg = f"expected an ISO 8601 date string (YYYY-MM-DD), got {type_name(value)} {show(value)}"
        raise TypeError(msg)
    try:
        return _date_fromisoformat(value)
    except ValueError:
        pass
    # A date-time where a date is documented: the date as written, with no
    # time-zone shift (2024-03-01T23:30:00-05:00 is 1 March for its source).
    try:
        to_datetime(value)
        return _date_fromisoformat(value.strip()[:10])
    except ValueError:
        msg = f"not an ISO 8601 date (YYYY-MM-DD): {show(value)}"
        raise ValueError(msg) from None


def to_decimal(value: object) -> Decimal:
    if isinstance(value, str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            msg = f"not a decimal number: {show(value)}"
            raise ValueError(msg) from None
        if not result.is_finite():
            msg = f"not a finite decimal number: {show(value)}"
            raise ValueError(msg)
        return result
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float) and math.isfinite(value):
        # The shortest text that reads back as the same float: 1234.5 is
        # Decimal("1234.5"), not 1234.5000000000000000142... (exact only up
        # to 17 significant digits, which the float had already lost).
        return Decimal(repr(value))
    msg = f"expected a decimal string or number, got {type_name(value)} {show(value)}"
    raise TypeError(msg)


def to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and text.isascii():
            return int(text)
    msg = f"expected an integer, got {type_name(value)} {show(value)}"
    raise TypeError(msg)


def to_dict(value: object) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    msg = f"expected an object, got {type_name(value)}"
    raise TypeError(msg)


def to_str_tuple(value: object) -> tuple[str, ...]:
    if value.__class__ is list:
        for item in value:
            if item.__class__ is not str:
                break
        else:
            return tuple(value)
    if not isinstance(value, (list, tuple)):
        msg = f"expected a list of strings, got {type_name(value)}"
        raise TypeError(msg)
    try:
        return tuple([item if item.__class__ is str else to_str(item) for item in value])
    except TypeError as exc:
        msg = f"expected a list of strings: {exc}"
        raise TypeError(msg) from None


def to_seq(value: object, fn: Callable[[Any], Any]) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        msg = f"expected a list, got {type_name(value)}"
        raise TypeError(msg)
    return tuple([fn(item) for item in value])
