"""High-water marks from the data: the newest ``updated_at`` a chain has landed.

The mark of the next incremental run is the newest ``updated_at`` among the
records a complete run landed, less the overlap: the server's own clock, never
this machine's. A page costs one ``max`` over its values in C and one string
comparison; a value is parsed only when it raises the chain's newest, or when
it is not the contract's ``YYYY-MM-DDTHH:MM:SSZ`` (sources also send offsets,
fractions, spaces or no zone: ``models/_fields.py`` has the rules).

Whatever a page holds, the value taken is one of its records' own instants
(floored to the second) or nothing, so a mark is never later than the newest
record landed: mixed spellings on one page can only make it earlier, which
re-delivers more and loses nothing. A value more than a day ahead of this
machine's clock (a source's "no date" sentinel such as 9999-12-31) is not a
modification time and is ignored, or it would end every later run's changes.
"""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any, Final

from makini_async.models._fields import to_datetime

__all__ = ["FUTURE", "canonical", "earlier", "newest"]

_ITEM_UPDATED: Final = operator.itemgetter("updated_at")
_ATTR_UPDATED: Final = operator.attrgetter("updated_at")
_UTC: Final = dt.timezone.utc
#: How far ahead of this machine's clock an ``updated_at`` may be and still count.
FUTURE: Final = dt.timedelta(days=1)


def canonical(when: dt.datetime) -> str:
    """``when`` as the contract writes it, in UTC, floored to the second."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=_UTC)
    return when.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_canonical(text: str) -> bool:
    return len(text) == 20 and text[10] == "T" and text[19] == "Z" and text[4] == "-"


def _instant(value: Any) -> str | None:
    """A value's instant as canonical text, or ``None`` when it is no date-time."""
    try:
        if isinstance(value, dt.datetime):
            return canonical(value)
        if isinstance(value, str):
            return canonical(to_datetime(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def newest(records: list[Any], current: str | None, limit: str) -> str | None:
    """The newer of ``current`` and the newest ``updated_at`` of ``records`` (not past ``limit``).

    ``current`` and ``limit`` are canonical text; so is the answer (``None``
    while no record had a usable ``updated_at``).
    """
    if not records:
        return current
    getter = _ITEM_UPDATED if type(records[0]) is dict else _ATTR_UPDATED
    try:
        top = max(map(getter, records))
    except (KeyError, TypeError, AttributeError, ValueError):
        return _newest_slow(records, current, limit)  # a missing or null value: rare
    if type(top) is str and current is not None and top <= current and _is_canonical(top):
        return current  # the common case: one comparison
    # Parsed once, as it may raise the chain's newest (or is spelt another way).
    value = _instant(top)
    if value is not None and value <= limit:
        return value if current is None or value > current else current
    return _newest_slow(records, current, limit)


def _newest_slow(records: list[Any], current: str | None, limit: str) -> str | None:
    """Pages with gaps (a missing or null value), mixed types, or a value past ``limit``."""
    values = [
        record.get("updated_at") if type(record) is dict else getattr(record, "updated_at", None)
        for record in records
    ]
    texts = [v for v in values if type(v) is str]
    times = [v for v in values if isinstance(v, dt.datetime)]
    best = current
    for group in (texts, times):
        if not group:
            continue
        try:
            value = _instant(max(group))
        except TypeError:  # naive and aware datetimes
            value = None
        if value is None or value > limit:
            # Every value parsed: the page's largest is no usable date-time.
            value = None
            for raw in group:
                candidate = _instant(raw)
                if (
                    candidate is not None
                    and candidate <= limit
                    and (value is None or candidate > value)
                ):
                    value = candidate
        if value is not None and (best is None or value > best):
            best = value
    return best


def earlier(mark: str, seconds: dt.timedelta) -> str | None:
    """Canonical ``mark`` less ``seconds`` (``None`` if it cannot be read)."""
    try:
        when = dt.datetime.strptime(mark, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_UTC)
        return canonical(when - seconds)
    except (ValueError, OverflowError):
        return None
