"""A page as database rows, and a batch of pages merged: shared by the PostgreSQL and DuckDB sinks.

A row is ``(connection, id, updated_at, created_at, record, request_id)``:
the record as JSON text (U+0000 as U+FFFD, :mod:`makini_async.sinks._nul`)
and its two times as aware datetimes (``None`` when unreadable: the row still
lands, and ordering treats its age as unknown).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Final

import orjson

from makini_async.errors import MakiniError
from makini_async.models._fields import to_datetime
from makini_async.sinks._encode import as_json_dict, record_id, unwritable
from makini_async.sinks._nul import has_nul_escape, without_nul

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.bulk import PulledPage
    from makini_async.checkpoint import ChainState
    from makini_async.entities import Entity
    from makini_async.sinks._group import Pending

__all__ = ["INVALID_COLUMNS", "ROW_COLUMNS", "Merged", "merge_batch", "page_rows"]

#: The columns of a row, in order (what :func:`page_rows` builds).
ROW_COLUMNS: Final = ("connection", "id", "updated_at", "created_at", "record", "request_id")
#: The columns of an invalid record's row, in order.
INVALID_COLUMNS: Final = ("connection", "entity", "id", "field", "reason", "request_id", "record")

Row = tuple[Any, ...]
#: Per entity, one row per ``(connection, id)``; the invalid rows; each chain's last state.
Merged = tuple[
    dict["Entity", dict[tuple[str, str], Row]], list[Row], dict[tuple[str, str], "ChainState"]
]


def _when(value: Any) -> dt.datetime | None:
    """A record's ``updated_at``/``created_at`` as an aware datetime, or ``None``."""
    if value is None or isinstance(value, dt.datetime):
        return value
    try:
        return to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: the row still lands; ordering treats it as unknown


def page_rows(page: PulledPage[Any]) -> tuple[list[Row], list[Row], int]:
    """The page's rows, its invalid records' rows, and the bytes of its JSON."""
    connection = without_nul(page.connection)
    request_id = without_nul(page.request_id)
    rows: list[Row] = []
    size = 0
    record: Any = None
    dumps = orjson.dumps
    texts = page.texts
    if texts is not None and len(texts) == len(page.records):
        return _sent_rows(page, texts, connection, request_id)
    try:
        for record in page.records:
            doc = record if record.__class__ is dict else as_json_dict(record)
            text = dumps(doc).decode()
            key = doc.get("id")
            if key.__class__ is not str:
                key = str(record_id(record))
            if has_nul_escape(text):
                doc, key = without_nul(doc), without_nul(key)
                text = dumps(doc).decode()
            size += len(text)
            updated = _when(doc.get("updated_at"))
            rows.append((connection, key, updated, _when(doc.get("created_at")), text, request_id))
    except (TypeError, RecursionError, MakiniError) as exc:
        raise unwritable(page, record, exc, what="JSON") from None
    return rows, _invalid_rows(page) if page.invalid else [], size


def _sent_rows(
    page: PulledPage[Any], texts: Sequence[Any], connection: str, request_id: str | None
) -> tuple[list[Row], list[Row], int]:
    """:func:`page_rows` from each record's JSON text as sent (dict records, no U+0000)."""
    rows: list[Row] = []
    size = 0
    record: Any = None
    try:
        for record, sent in zip(page.records, texts, strict=True):
            key = record.get("id")
            if key.__class__ is not str:
                key = str(record_id(record))
            text = str(sent, "utf-8")
            size += len(text)
            updated, created = _when(record.get("updated_at")), _when(record.get("created_at"))
            rows.append((connection, key, updated, created, text, request_id))
    except (TypeError, MakiniError) as exc:
        raise unwritable(page, record, exc, what="JSON") from None
    return rows, _invalid_rows(page) if page.invalid else [], size


def _older(new: dt.datetime | None, old: dt.datetime | None) -> bool:
    return new is None or (old is not None and new < old)


def _invalid_rows(page: PulledPage[Any]) -> list[Row]:
    """``(connection, entity, id, field, reason, request_id, record)`` per invalid record."""
    rows = []
    for item in page.invalid:
        try:
            doc = orjson.dumps(without_nul(item.data)).decode()
        except (TypeError, RecursionError) as exc:
            raise unwritable(page, item.data, exc, what="JSON") from None
        rid = item.id
        row = (
            page.connection,
            page.entity.value,
            None if rid is None else str(rid),
            item.field,
            item.reason,
            item.request_id,
        )
        rows.append((*without_nul(row), doc))
    return rows


def merge_batch(batch: list[Pending]) -> Merged:
    """A batch's pages as one set of rows: per ``(connection, id)`` the newest copy.

    An upsert cannot touch a row twice in one statement; of two copies the one
    with the later ``updated_at`` wins, and of equals the later page's.
    """
    merged: dict[Entity, dict[tuple[str, str], Row]] = {}
    invalid: list[Row] = []
    states: dict[tuple[str, str], ChainState] = {}
    for item in batch:
        rows, bad, state = item.payload
        latest = merged.setdefault(item.entity, {})
        for row in rows:
            key = (row[0], row[1])
            previous = latest.get(key)
            if previous is None or not _older(row[2], previous[2]):
                latest[key] = row
        invalid.extend(bad)
        if state is not None:
            states[(item.connection, item.entity.value)] = state
    return merged, invalid, states
