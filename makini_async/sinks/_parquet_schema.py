"""The Parquet schema of each entity, derived from its record class, and rows for it.

Columns, in order:

* ``_connection`` (the connection's name) and ``_request_id`` (the page's);
* every field of the record class, typed: text as ``string``, date-times as
  ``timestamp[us, UTC]``, dates as ``date32``, integers as ``int64``, a list
  of text (``assignees``) as ``list<string>``; money and quantities as their
  exact **decimal text** (``"1250.00"``: a fixed-scale decimal column would
  round or reject what sources send), nested objects and lists of objects
  (``vendor``, ``ship_to``, ``lines``) as **JSON text**;
* ``custom_fields``, ``raw`` and ``extra`` (the fields the model does not
  know) as JSON text, so nothing the API sent is lost;
* ``_invalid_field``, ``_invalid_reason`` and ``_invalid_record`` (the record
  as sent, JSON text): set only on a row for a record that does not fit its
  model, whose typed columns are then empty except ``id``.

A dict pull is structured here with the same rules as a typed pull, so both
write the same columns.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import operator
import types
import typing
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson

from makini_async.models import record_type, structure_page
from makini_async.sinks._arrow import arrow_pool
from makini_async.sinks._nul import NUL, REPLACEMENT, has_nul_escape, without_nul
from makini_async.sinks._parquet_dicts import dict_columns, json_column, json_default

if TYPE_CHECKING:
    from collections.abc import Callable

    from makini_async.bulk import PulledPage
    from makini_async.entities import Entity

__all__ = ["Columns", "columns_of", "page_table", "table_of", "table_without_nul"]

_JSON: Final = "json"
_DECIMAL: Final = "decimal"
_PLAIN: Final = "plain"
_PREFIX: Final = ("_connection", "_request_id")
_SUFFIX: Final = ("_invalid_field", "_invalid_reason", "_invalid_record")


@attrs.frozen(slots=False)  # cached_property needs a __dict__
class Columns:
    """An entity's columns: names, how each value is written, and the Arrow schema."""

    fields: tuple[tuple[str, str], ...]  # (name, kind) of the record's own fields
    schema: Any

    @functools.cached_property
    def values_of(self) -> Callable[[Any], tuple[Any, ...]]:
        """A record's field values in column order, read in C (``operator.attrgetter``)."""
        return operator.attrgetter(*(name for name, _ in self.fields))


def _kind(tp: Any) -> tuple[str, str]:
    """(kind, arrow type name) of one record field's annotation."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]
    origin = typing.get_origin(tp)
    if tp is str:
        return _PLAIN, "string"
    if tp is int:
        return _PLAIN, "int64"
    if tp is dt.datetime:
        return _PLAIN, "timestamp"
    if tp is dt.date:
        return _PLAIN, "date"
    if tp is decimal.Decimal:
        return _DECIMAL, "string"
    if origin is tuple and typing.get_args(tp)[:1] == (str,):
        return _PLAIN, "list<string>"
    return _JSON, "string"  # dicts, nested objects, lists of objects


@functools.cache
def columns_of(entity: Entity) -> Columns:
    import pyarrow as pa  # noqa: PLC0415 - the optional extra

    arrow = {
        "string": pa.string(),
        "int64": pa.int64(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
        "list<string>": pa.list_(pa.string()),
    }
    cls = record_type(entity)
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, str]] = []
    schema: list[Any] = [(name, pa.string()) for name in _PREFIX]
    for field in attrs.fields(cls):
        kind, type_name = _kind(hints[field.name])
        fields.append((field.name, kind))
        schema.append(pa.field(field.name, arrow[type_name], nullable=field.name != "id"))
    schema.extend((name, pa.string()) for name in _SUFFIX)
    return Columns(tuple(fields), pa.schema(schema))


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, default=json_default).decode()


def table_of(page: PulledPage[Any]) -> Any:
    """The page as an Arrow table (records, then records that do not fit).

    Built column by column (a list per column, then one Arrow array each):
    about twice as fast as a dict per row. A dict page's columns are read
    straight from its dicts (:mod:`makini_async.sinks._parquet_dicts`); only a
    page with a record that does not fit is structured record by record.
    """
    return page_table(
        page.entity, page.records, list(page.invalid), page.connection, page.request_id
    )


def page_table(
    entity: Entity,
    records: list[Any],
    invalid: list[Any],
    connection: str,
    request_id: str | None,
) -> Any:
    """:func:`table_of` a page's parts (what the helper process is sent, for a dict page)."""
    import pyarrow as pa  # noqa: PLC0415 - the optional extra

    cols = columns_of(entity)
    columns: dict[str, list[Any]] | None = None
    if records and isinstance(records[0], dict):
        columns = dict_columns(entity, records)
        if columns is None:
            # The same structuring rules as a typed pull, on copies, record by record.
            records, more = structure_page(
                entity, list(records), request_id=request_id, connection=connection
            )
            invalid.extend(more)
    if columns is None:
        columns = _record_columns(cols, records)
    n_good, n_bad = len(records), len(invalid)
    rows = n_good + n_bad
    data: dict[str, list[Any]] = {
        "_connection": [connection] * rows,
        "_request_id": [request_id] * rows,
    }
    for name, _ in cols.fields:
        values = columns[name]
        if n_bad:
            values.extend([item.id or "" for item in invalid] if name == "id" else [None] * n_bad)
        data[name] = values
    none = [None] * n_good
    data["_invalid_field"] = none + [item.field for item in invalid]
    data["_invalid_reason"] = none + [item.reason for item in invalid]
    data["_invalid_record"] = none + [_json(item.data) for item in invalid]
    pool = arrow_pool()
    arrays = [pa.array(data[f.name], type=f.type, memory_pool=pool) for f in cols.schema]
    return pa.Table.from_arrays(arrays, schema=cols.schema)


def _record_columns(cols: Columns, records: list[Any]) -> dict[str, list[Any]]:
    """Each field's column of typed records, as :func:`table_of` writes it."""
    # One tuple per record, then turned into columns: both in C.
    columns = (
        zip(*map(cols.values_of, records), strict=True) if records else (() for _ in cols.fields)
    )
    out: dict[str, list[Any]] = {}
    for (name, kind), column in zip(cols.fields, columns, strict=True):
        if kind is _DECIMAL:
            out[name] = [None if v is None else str(v) for v in column]
        elif kind is _JSON:
            out[name] = json_column(column)
        else:
            out[name] = list(column)
    return out


def table_without_nul(table: Any) -> Any:
    """U+0000 as U+FFFD, as every sink lands it (:mod:`makini_async.sinks._nul`).

    Looked for once per file rather than per page, first in each string
    column's bytes at once (a byte search, where Arrow's per-value kernels
    cost a quarter of the sink's time); only a column that holds one is
    looked at value by value and rewritten. JSON text columns hold the
    escape ``\\u0000``, so their rows with it are decoded, cleaned and
    encoded again.
    """
    import pyarrow as pa  # noqa: PLC0415 - the optional extra
    import pyarrow.compute as pc  # noqa: PLC0415

    pool = arrow_pool()
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type) and pa.types.is_string(field.type.value_type):
            # Lists of text (a work order's assignees): their values, the same way.
            column = table.column(i)
            if _holds(column, (_NUL_BYTES,), values=True):
                column = pa.chunked_array(
                    [_list_without_nul(chunk, pool) for chunk in column.chunks], type=field.type
                )
                table = table.set_column(i, field, column)
            continue
        if not pa.types.is_string(field.type) and not pa.types.is_large_string(field.type):
            continue
        column = table.column(i)
        if not _holds(column, (_NUL_BYTES, _ESCAPE_BYTES)):
            continue  # the usual column: nothing to look at value by value
        if pc.any(pc.match_substring(column, NUL)).as_py():
            column = pc.replace_substring(column, NUL, REPLACEMENT, memory_pool=pool)
        elif pc.any(pc.match_substring(column, "\\u0000")).as_py():
            column = pa.array(
                [
                    v if v is None or not has_nul_escape(v) else _reencoded(v)
                    for v in column.to_pylist()
                ],
                type=field.type,
                memory_pool=pool,
            )
        else:
            continue
        table = table.set_column(i, field, column)
    return table


_NUL_BYTES: Final = NUL.encode()
_ESCAPE_BYTES: Final = b"\\u0000"


def _holds(column: Any, needles: tuple[bytes, ...], *, values: bool = False) -> bool:
    """Whether a string column's bytes (a list column's values', with ``values``) hold a needle.

    Each chunk's data buffer is searched whole. It may hold bytes outside its
    array's slice: a match there only sends the column to the exact,
    per-value search.
    """
    for chunk in column.chunks:
        data = (chunk.values if values else chunk).buffers()[2]
        if data is not None:
            raw = data.to_pybytes()
            # The needle's first byte first: ``memchr`` is many times faster than
            # a search for the six bytes of the escape, and most columns have no
            # backslash at all.
            if any(needle[:1] in raw and needle in raw for needle in needles):
                return True
    return False


def _list_without_nul(chunk: Any, pool: Any) -> Any:
    import pyarrow as pa  # noqa: PLC0415 - the optional extra
    import pyarrow.compute as pc  # noqa: PLC0415

    cleaned = pc.replace_substring(chunk.values, NUL, REPLACEMENT, memory_pool=pool)
    return pa.ListArray.from_arrays(chunk.offsets, cleaned, mask=chunk.is_null(), pool=pool)


def _reencoded(text: str) -> str:
    try:
        return orjson.dumps(without_nul(orjson.loads(text))).decode()
    except orjson.JSONDecodeError:  # text that merely looks like JSON: kept as it is
        return text
