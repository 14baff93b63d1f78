"""The one converter of makini_async: API dicts to records and back.

Structuring is on the hot path (one call per page of up to 500 records), so
each record class gets a structuring function generated once at import time
from its attrs fields. The generated function reads each key once, converts
it with a pre-bound hook and fills the instance's slots through the slot
descriptors (``object.__new__`` + ``member.__set__``): this is the same
result as the frozen class's ``__init__`` (which goes through
``object.__setattr__`` per field) at half its cost. It does no per-field
bookkeeping for error reporting; when a record fails, it is walked again
field by field (:func:`locate_error`) to name the exact field path and the
reason, and it becomes an :class:`~makini_async.models.InvalidRecord`.

The same functions are registered as structure hooks on a private
``cattrs.Converter`` (never cattrs' global one), which also carries the
unstructure hooks, so ``CONVERTER.structure(d, WorkOrder)`` and
``CONVERTER.unstructure(record)`` agree with the module functions.

The field rules are in :mod:`makini_async.models._fields`.
"""

from __future__ import annotations

import datetime as _dt
import types
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from . import _fields
from ._fields import (
    to_date,
    to_datetime,
    to_decimal,
    to_dict,
    to_int,
    to_seq,
    to_str,
    to_str_tuple,
    type_name,
)
from ._records import (
    Address,
    Asset,
    InventoryItem,
    Location,
    PurchaseOrder,
    PurchaseOrderLine,
    Record,
    Vendor,
    VendorRef,
    WorkOrder,
)

__all__ = ["CONVERTER", "field_kinds", "locate_error", "structure_fn"]

# --- field kinds, read from the attrs classes once ---

_NESTED: Final = (Address, VendorRef, PurchaseOrderLine)
_RECORDS: Final = (PurchaseOrder, WorkOrder, Asset, InventoryItem, Vendor, Location)


@attrs.frozen
class _Field:
    name: str
    kind: str  # id, str, int, datetime, date, decimal, dict, raw, nested, seq, strs
    sub: type | None = None


def _strip_none(tp: Any) -> Any:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _fields_of(cls: type) -> tuple[_Field, ...]:
    attrs.resolve_types(cls)
    out = []
    for a in attrs.fields(cls):
        if a.name == "extra":
            continue
        tp = _strip_none(a.type)
        origin = typing.get_origin(tp)
        kind: str
        sub: type | None = None
        if a.name == "id" and cls in _RECORDS:
            kind = "id"
        elif a.name == "raw":
            kind = "raw"
        elif tp is str:
            kind = "str"
        elif tp is int:
            kind = "int"
        elif tp is _dt.datetime:
            kind = "datetime"
        elif tp is _dt.date:
            kind = "date"
        elif tp is Decimal:
            kind = "decimal"
        elif origin is dict:
            kind = "dict"
        elif origin is tuple:
            (sub, _) = typing.get_args(tp)
            kind = "strs" if sub is str else "seq"
        elif attrs.has(tp):
            kind, sub = "nested", tp
        else:  # pragma: no cover - a model field of a type this module does not know
            msg = f"{cls.__name__}.{a.name}: unsupported type {tp!r}"
            raise TypeError(msg)
        out.append(_Field(a.name, kind, sub))
    return tuple(out)


_FIELDS: Final[dict[type, tuple[_Field, ...]]] = {c: _fields_of(c) for c in _NESTED + _RECORDS}


# --- code generation ---

_TEMPLATES: Final[dict[str, tuple[str, ...]]] = {
    "id": (
        "v = p('id')",
        "if v.__class__ is not str:",
        "    v = to_str(v)",
    ),
    "str": (
        "v = p({k}, None)",
        "if v is not None and v.__class__ is not str:",
        "    v = to_str(v)",
    ),
    "int": (
        "v = p({k}, None)",
        "if v is not None and v.__class__ is not int:",
        "    v = to_int(v)",
    ),
    # The common case inline (a call less per value); anything else, and every
    # error, goes through the field's converter.
    "datetime": (
        "v = p({k}, None)",
        "if v.__class__ is str:",
        "    try:",
        "        v = _fromiso(v)",
        "    except ValueError:",
        "        v = to_datetime(v)",
        "    if v.tzinfo is None:",
        "        v = v.replace(tzinfo=_UTC)",
        "elif v is not None:",
        "    v = to_datetime(v)",
    ),
    "date": (
        "v = p({k}, None)",
        "if v.__class__ is str:",
        "    try:",
        "        v = _date_fromiso(v)",
        "    except ValueError:",
        "        v = to_date(v)",
        "elif v is not None:",
        "    v = to_date(v)",
    ),
    "decimal": (
        "v = p({k}, None)",
        "if v.__class__ is str:",
        "    try:",
        "        d = _Decimal(v)",
        "    except _InvalidOperation:",
        "        d = None",
        "    v = d if d is not None and d.is_finite() else to_decimal(v)",
        "elif v is not None:",
        "    v = to_decimal(v)",
    ),
    "dict": (
        "v = p({k}, None)",
        "if v is None:",
        "    v = {{}}",
        "elif v.__class__ is not dict:",
        "    v = to_dict(v)",
    ),
    "raw": (
        "v = p({k}, None)",
        "if v is not None and v.__class__ is not dict:",
        "    v = to_dict(v)",
    ),
    "nested": ("v = p({k}, None)", "if v is not None:", "    v = _s_{sub}(v)"),
    "seq": (
        "v = p({k}, None)",
        "if v is None:",
        "    v = ()",
        "elif v.__class__ is list:",
        "    v = tuple(map(_s_{sub}, v))",
        "else:",
        "    v = to_seq(v, _s_{sub})",
    ),
    "strs": ("v = p({k}, None)", "v = () if v is None else to_str_tuple(v)"),
}


def _generate(cls: type, fns: dict[str, Callable[[Any], Any]]) -> Callable[[Any], Any]:
    fields = _FIELDS[cls]
    ns: dict[str, Any] = {
        "_cl": cls,
        "_new": object.__new__,
        "to_str": to_str,
        "to_int": to_int,
        "to_datetime": to_datetime,
        "to_date": to_date,
        "_fromiso": _fields._fromisoformat,
        "_date_fromiso": _fields._date_fromisoformat,
        "_UTC": _dt.timezone.utc,
        "_Decimal": Decimal,
        "_InvalidOperation": InvalidOperation,
        "to_decimal": to_decimal,
        "to_dict": to_dict,
        "to_seq": to_seq,
        "to_str_tuple": to_str_tuple,
    }
    ns.update(fns)
    lines = [
        f"def structure_{cls.__name__}(o):",
        # Pop the known keys from a shallow copy: what is left is ``extra``.
        # (dict.copy + pop is about twice as fast as get + a set difference.)
        "    extra = o.copy() if o.__class__ is dict else to_dict(o)",
        "    p = extra.pop",
        "    self = _new(_cl)",
    ]
    for f in fields:
        ns[f"_set_{f.name}"] = _slot_setter(cls, f.name)
        sub = f.sub.__name__ if f.sub else ""
        lines.extend("    " + t.format(k=repr(f.name), sub=sub) for t in _TEMPLATES[f.kind])
        lines.append(f"    _set_{f.name}(self, v)")
    ns["_set_extra"] = _slot_setter(cls, "extra")
    # Usually nothing is left: a fresh ``{}`` is smaller than the emptied copy
    # (which keeps its full-size table) and is not tracked by the GC.
    lines.append("    _set_extra(self, extra if extra else {})")
    lines.append("    return self")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<makini_async structure {cls.__name__}>", "exec"), ns)  # noqa: S102
    fn: Callable[[Any], Any] = ns[f"structure_{cls.__name__}"]
    fn.__doc__ = f"Structure one API object into a {cls.__name__} (generated)."
    return fn


def _slot_setter(cls: type, name: str) -> Callable[[object, object], None]:
    for klass in cls.__mro__:
        descriptor = klass.__dict__.get(name)
        if descriptor is not None:
            setter: Callable[[object, object], None] = descriptor.__set__
            return setter
    msg = f"{cls.__name__} has no slot {name!r}"  # pragma: no cover
    raise TypeError(msg)  # pragma: no cover


def _check_slots(cls: type) -> None:
    """Refuse a class the generated function would build wrongly (not an assert: -O)."""
    plain = all(a.validator is None and a.converter is None for a in attrs.fields(cls))
    if "__slots__" not in cls.__dict__ or hasattr(cls, "__attrs_post_init__") or not plain:
        msg = f"{cls.__name__}: the generated structuring needs slots and no hooks"
        raise TypeError(msg)


_STRUCTURE: Final[dict[type, Callable[[Any], Any]]] = {}
_fns: dict[str, Callable[[Any], Any]] = {}
for _cls in _NESTED + _RECORDS:  # nested first: records refer to them
    _check_slots(_cls)
    _STRUCTURE[_cls] = _fns[f"_s_{_cls.__name__}"] = _generate(_cls, _fns)


def field_kinds(cls: type[Any]) -> tuple[tuple[str, str, type | None], ...]:
    """``(name, kind, nested class)`` of each field a model class reads (``extra`` aside).

    The kinds are the generated function's: ``id``, ``str``, ``int``,
    ``datetime``, ``date``, ``decimal``, ``dict``, ``raw``, ``nested``,
    ``seq`` and ``strs``.
    """
    return tuple((f.name, f.kind, f.sub) for f in _FIELDS[cls])


def structure_fn(cls: type[Any]) -> Callable[[Any], Any]:
    """The generated structuring function of a model class (no error wrapping)."""
    return _STRUCTURE[cls]


# --- locating a failure (slow path, only after the fast path raised) ---

_CHECKS: Final[dict[str, Callable[[Any], Any]]] = {
    "id": to_str,
    "str": to_str,
    "int": to_int,
    "datetime": to_datetime,
    "date": to_date,
    "decimal": to_decimal,
    "dict": to_dict,
    "raw": to_dict,
    "strs": to_str_tuple,
}


def locate_error(cls: type, obj: object, path: str = "") -> tuple[str | None, str] | None:
    """Find the first field of ``obj`` that does not fit ``cls``.

    Returns ``(field_path, reason)``, or ``None`` when ``obj`` structures.
    ``field_path`` is ``None`` when ``obj`` itself is not an object.
    """
    if not isinstance(obj, Mapping):
        return (path or None), f"expected an object, got {type_name(obj)}"
    for f in _FIELDS[cls]:
        where = f"{path}.{f.name}" if path else f.name
        if f.kind == "id" and f.name not in obj:
            return where, "required field is missing"
        value = obj.get(f.name)
        if value is None and f.kind != "id":
            continue
        if f.kind == "nested":
            assert f.sub is not None  # noqa: S101
            found = locate_error(f.sub, value, where)
        elif f.kind == "seq":
            assert f.sub is not None  # noqa: S101
            if not isinstance(value, (list, tuple)):
                return where, f"expected a list, got {type_name(value)}"
            found = None
            for i, item in enumerate(value):
                found = locate_error(f.sub, item, f"{where}[{i}]")
                if found is not None:
                    break
        else:
            try:
                _CHECKS[f.kind](value)
            except (TypeError, ValueError) as exc:
                return where, str(exc)
            found = None
        if found is not None:
            return found
    return None


# --- unstructuring ---


def _u_datetime(value: _dt.datetime) -> str:
    timespec = "seconds"
    if value.microsecond:
        timespec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    text = value.isoformat(timespec=timespec)
    if text.endswith("+00:00"):
        return text[:-6] + "Z"
    return text


def _u_date(value: _dt.date) -> str:
    return value.isoformat()


def _u_decimal(value: Decimal) -> str:
    return str(value)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(
        detailed_validation=False,
        unstruct_collection_overrides={tuple: list},
    )
    conv.register_unstructure_hook(_dt.datetime, _u_datetime)
    conv.register_unstructure_hook(_dt.date, _u_date)
    conv.register_unstructure_hook(Decimal, _u_decimal)
    conv.register_structure_hook(_dt.datetime, lambda v, _: to_datetime(v))
    conv.register_structure_hook(_dt.date, lambda v, _: to_date(v))
    conv.register_structure_hook(Decimal, lambda v, _: to_decimal(v))
    for cls, fn in _STRUCTURE.items():
        conv.register_structure_hook(cls, _hook(fn))
        conv.register_unstructure_hook(cls, _unstructure_hook(cls, conv))
    return conv


def _hook(fn: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _: Any) -> Any:
        return fn(value)

    return hook


def _unstructure_hook(cls: type, conv: cattrs.Converter) -> Callable[[Any], dict[str, Any]]:
    base: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(
        cls, conv, extra=override(omit=True)
    )
    has_raw = issubclass(cls, Record)

    def unstructure(record: Any) -> dict[str, Any]:
        out = base(record)
        if has_raw and out["raw"] is None:
            del out["raw"]
        extra = record.extra
        if extra:
            for key, value in extra.items():
                out.setdefault(key, value)
        return out

    return unstructure


#: The library's converter (private API): structure and unstructure hooks
#: for every model class, dates, date-times and decimals.
CONVERTER: Final[cattrs.Converter] = _make_converter()
