"""A dict page's Parquet columns, built one column at a time.

A typed pull's records are read column by column
(:func:`makini_async.sinks._parquet_schema.table_of`). A dict pull used to be
structured into records first, one generated call per record, only for the
records to be taken apart again: most of what the Parquet sink cost. Here the
same field rules (:mod:`makini_async.models._fields`) are applied to a whole
column of values at once:

* a column whose values all have the contract's type (text, or ``null``) is
  taken as it is, after one check of the set of its value types, in C;
* date-times and dates are read with ``fromisoformat`` mapped over the
  column, the tolerant converter only when that refuses one;
* anything else goes through the field's converter, value by value.

Nested objects and lists of objects are structured with their model's
function, then written as JSON text exactly as a typed record's are. If any
value of any record does not fit its field, :func:`dict_columns` gives up and
the page is structured record by record, which sets the misfits apart as
invalid records: the columns written are the same either way (a test pins
it on data that varies as source systems do).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING, Any, Final

import orjson

from makini_async.models import _fields as rules
from makini_async.models import record_type
from makini_async.models._converter import field_kinds, structure_fn

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from makini_async.entities import Entity

__all__ = ["dict_columns", "json_column", "json_default"]

_NONE: Final = type(None)
_TEXT: Final = frozenset({str, _NONE})
_INTS: Final = frozenset({int, _NONE})
_EMPTY_OBJECT: Final = b"{}"

Column = list[Any]
#: A field's name and the function that builds its column.
Step = tuple[str, "Callable[[Column], Column]"]


def json_default(value: Any) -> Any:
    """What orjson cannot write by itself: decimals as text, records as their API dicts."""
    import decimal  # noqa: PLC0415 - only ever needed for a typed value

    import attrs  # noqa: PLC0415

    if isinstance(value, decimal.Decimal):
        return str(value)
    if attrs.has(type(value)):
        from makini_async.models import unstructure  # noqa: PLC0415

        return unstructure(value)
    raise TypeError(type(value).__name__)


def json_column(values: Iterable[Any]) -> Column:
    """Each value as JSON text (UTF-8 bytes: Arrow takes them for a string column as they are)."""
    dumps = orjson.dumps
    return [None if v is None else dumps(v, default=json_default) for v in values]


def _ids(values: Column) -> Column:
    if {*map(type, values)} == {str}:
        return values
    return [rules.to_str(v) for v in values]  # a missing or null id raises: the record way


def _texts(values: Column) -> Column:
    if {*map(type, values)} <= _TEXT:
        return values
    to_str = rules.to_str
    return [None if v is None else to_str(v) for v in values]


def _ints(values: Column) -> Column:
    if {*map(type, values)} <= _INTS:  # bool is its own type: it is refused below
        return values
    to_int = rules.to_int
    return [None if v is None else to_int(v) for v in values]


def _parsed(fast: Callable[[str], Any], tolerant: Callable[[Any], Any], values: Column) -> Column:
    if {*map(type, values)} <= _TEXT:
        try:
            # A naive result is UTC to Arrow, as the typed rule makes it.
            return [None if v is None else fast(v) for v in values]
        except ValueError:
            pass
    return [None if v is None else tolerant(v) for v in values]


def _datetimes(values: Column) -> Column:
    # Read through the module: Python 3.10 replaces its ``_fromisoformat``.
    return _parsed(rules._fromisoformat, rules.to_datetime, values)


def _dates(values: Column) -> Column:
    return _parsed(dt.date.fromisoformat, rules.to_date, values)


def _decimals(values: Column) -> Column:
    to_decimal = rules.to_decimal
    return [None if v is None else str(to_decimal(v)) for v in values]


def _objects(values: Column) -> Column:
    to_dict = rules.to_dict
    objects = [{} if v is None else v if v.__class__ is dict else to_dict(v) for v in values]
    return json_column(objects)


def _raws(values: Column) -> Column:
    to_dict = rules.to_dict
    return json_column([v if v is None or v.__class__ is dict else to_dict(v) for v in values])


def _strings_lists(values: Column) -> Column:
    to_tuple = rules.to_str_tuple
    return [() if v is None else to_tuple(v) for v in values]


def _nested(sub: type) -> Callable[[Column], Column]:
    structure = structure_fn(sub)

    def column(values: Column) -> Column:
        return json_column([None if v is None else structure(v) for v in values])

    return column


def _sequences(sub: type) -> Callable[[Column], Column]:
    structure = structure_fn(sub)

    def column(values: Column) -> Column:
        to_seq = rules.to_seq
        return json_column(
            [
                ()
                if v is None
                else tuple(map(structure, v))
                if v.__class__ is list
                else to_seq(v, structure)
                for v in values
            ]
        )

    return column


_BY_KIND: Final[dict[str, Callable[[Column], Column]]] = {
    "id": _ids,
    "str": _texts,
    "int": _ints,
    "datetime": _datetimes,
    "date": _dates,
    "decimal": _decimals,
    "dict": _objects,
    "raw": _raws,
    "strs": _strings_lists,
}


@functools.cache
def _plan(entity: Entity) -> tuple[tuple[Step, ...], frozenset[str]]:
    """Each field's name and column builder, and the names a record's ``extra`` leaves out."""
    steps = []
    for name, kind, sub in field_kinds(record_type(entity)):
        if kind == "nested" and sub is not None:
            build = _nested(sub)
        elif kind == "seq" and sub is not None:
            build = _sequences(sub)
        else:
            build = _BY_KIND[kind]
        steps.append((name, build))
    return tuple(steps), frozenset(name for name, _ in steps)


def dict_columns(entity: Entity, records: list[Any]) -> dict[str, Column] | None:
    """Each model field's column (and ``extra``'s) for a page of API dicts.

    Values are as :func:`~makini_async.sinks._parquet_schema.table_of` writes
    a typed record's. ``None`` when a record does not fit its model: the page
    is then structured record by record.
    """
    steps, known = _plan(entity)
    try:
        columns = {name: build([r.get(name) for r in records]) for name, build in steps}
        dumps = orjson.dumps
        columns["extra"] = [
            _EMPTY_OBJECT
            if r.keys() <= known
            else dumps({k: v for k, v in r.items() if k not in known}, default=json_default)
            for r in records
        ]
    # Whatever a source sent that a rule refuses (or a page item that is not an
    # object): the record way finds the record and sets it apart.
    except Exception:  # noqa: BLE001
        return None
    return columns
