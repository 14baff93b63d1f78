"""Property tests: every shape a source may send for a value reads back as that value.

Each test draws a value the model holds (a date-time, a date, an amount, a
text, a line number), writes it the way the contract documents and, field by
field, the ways real source systems write it, and checks that the typed
record holds the same value either way.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from makini_async.entities import Entity
from makini_async.models import _fields, structure, structure_page

UTC = dt.timezone.utc

_instants = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2199, 12, 31)
).map(lambda d: d.replace(tzinfo=UTC))
_offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m))
)


def _zone(offset: dt.timedelta, style: str) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    if style == "compact":
        return f"{sign}{hours:02d}{mins:02d}"
    return f"{sign}{hours:02d}:{mins:02d}"


@st.composite
def datetime_shapes(draw: st.DrawFn) -> tuple[dt.datetime, str]:
    """An instant and one way a source writes it."""
    instant = draw(_instants)
    style = draw(st.sampled_from(["z", "offset", "compact", "naive", "space", "long-fraction"]))
    if style in ("offset", "compact"):
        local = instant.astimezone(draw(_offsets))
        offset = local.utcoffset()
        assert offset is not None
        text = local.replace(tzinfo=None).isoformat() + _zone(offset, style)
    elif style == "naive":
        text = instant.replace(tzinfo=None).isoformat()
    elif style == "space":
        text = instant.replace(tzinfo=None).isoformat(sep=" ") + "Z"
    elif style == "long-fraction":
        # Digits past the microsecond are cut, so the instant is unchanged.
        extra = draw(st.text("0123456789", min_size=1, max_size=3))
        base = instant.replace(tzinfo=None).isoformat(timespec="microseconds")
        text = base + extra + "Z"
    else:
        text = instant.replace(tzinfo=None).isoformat() + "Z"
    return instant, text


@st.composite
def date_shapes(draw: st.DrawFn) -> tuple[dt.date, str]:
    """A date and one way a source writes it: the date, or a date-time on that date."""
    day = draw(st.dates(min_value=dt.date(1971, 1, 1), max_value=dt.date(2199, 12, 31)))
    if draw(st.booleans()):
        return day, day.isoformat()
    wall = draw(st.times()).replace(tzinfo=None)
    zone = draw(st.sampled_from(["Z", "", "+05:30", "-08:00", "+0200"]))
    sep = draw(st.sampled_from(["T", " "]))
    return day, f"{day.isoformat()}{sep}{wall.isoformat()}{zone}"


@st.composite
def decimal_shapes(draw: st.DrawFn) -> tuple[Decimal, Any]:
    """An amount and one way a source writes it: text, an integer or a float."""
    kind = draw(st.sampled_from(["text", "int", "float"]))
    if kind == "int":
        number = draw(st.integers(min_value=-(10**15), max_value=10**15))
        return Decimal(number), number
    if kind == "float":
        number = draw(st.floats(allow_nan=False, allow_infinity=False, width=64))
        return Decimal(repr(number)), number
    value = draw(st.decimals(allow_nan=False, allow_infinity=False, places=3))
    return value, str(value)


@st.composite
def text_shapes(draw: st.DrawFn) -> tuple[str, Any]:
    """A text and one way a source writes it: the text, or the number it spells."""
    if draw(st.booleans()):
        number = draw(st.integers(min_value=-(10**12), max_value=10**12))
        return str(number), number
    text = draw(st.text(max_size=20))
    return text, text


@st.composite
def int_shapes(draw: st.DrawFn) -> tuple[int, Any]:
    number = draw(st.integers(min_value=0, max_value=10**6))
    return number, draw(st.sampled_from([number, str(number), float(number)]))


@settings(max_examples=300, deadline=None)
@given(
    created=datetime_shapes(),
    completed=datetime_shapes(),
    due=date_shapes(),
    number=text_shapes(),
    assignee=text_shapes(),
    status=st.text(max_size=15),
)
def test_work_order_fields_read_as_the_source_meant(
    *,
    created: tuple[dt.datetime, str],
    completed: tuple[dt.datetime, str],
    due: tuple[dt.date, str],
    number: tuple[str, Any],
    assignee: tuple[str, Any],
    status: str,
) -> None:
    data = {
        "id": "wo_1",
        "created_at": created[1],
        "completed_at": completed[1],
        "due_date": due[1],
        "number": number[1],
        "assignees": [assignee[1]],
        "status": status,
    }
    record = structure(Entity.WORK_ORDERS, data)
    assert record.created_at == created[0]
    # The same rule without ``fromisoformat`` (what Python 3.10 runs).
    assert _fields.parse_datetime(created[1]) == created[0]
    assert record.completed_at == completed[0]
    assert record.due_date == due[0]
    assert record.number == number[0]
    assert record.assignees == (assignee[0],)
    assert record.status == status


@settings(max_examples=300, deadline=None)
@given(
    total=decimal_shapes(),
    quantity=decimal_shapes(),
    price=decimal_shapes(),
    line_number=int_shapes(),
    order_date=date_shapes(),
    postal_code=text_shapes(),
    null_lines=st.booleans(),
)
def test_purchase_order_fields_read_as_the_source_meant(
    *,
    total: tuple[Decimal, Any],
    quantity: tuple[Decimal, Any],
    price: tuple[Decimal, Any],
    line_number: tuple[int, Any],
    order_date: tuple[dt.date, str],
    postal_code: tuple[str, Any],
    null_lines: bool,
) -> None:
    line = {"line_number": line_number[1], "quantity": quantity[1], "unit_price": price[1]}
    data = {
        "id": "po_1",
        "total_amount": total[1],
        "order_date": order_date[1],
        "ship_to": {"postal_code": postal_code[1], "x_dock": 4},
        "lines": None if null_lines else [line],
        "custom_fields": None,
    }
    record = structure(Entity.PURCHASE_ORDERS, data)
    assert record.total_amount == total[0]
    assert record.order_date == order_date[0]
    assert record.ship_to is not None
    assert record.ship_to.postal_code == postal_code[0]
    assert record.ship_to.extra == {"x_dock": 4}
    assert record.custom_fields == {}
    if null_lines:
        assert record.lines == ()
    else:
        (got,) = record.lines
        assert got.line_number == line_number[0]
        assert got.quantity == quantity[0]
        assert got.unit_price == price[0]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"id": st.text(min_size=1, max_size=5)}),
            st.dictionaries(st.text(max_size=8), st.none() | st.integers() | st.text(max_size=8)),
            st.integers(),
            st.text(max_size=5),
            st.none(),
            st.lists(st.integers(), max_size=3),
        ),
        max_size=12,
    )
)
def test_a_page_of_anything_loses_no_record(items: list[Any]) -> None:
    # Whatever a source sends, every item comes back: a record or an invalid record.
    page = list(items)
    records, invalid = structure_page(Entity.WORK_ORDERS, page, request_id="r")
    assert len(records) + len(invalid) == len(items)
    assert [i.data for i in invalid] == [
        item for item in items if not (isinstance(item, dict) and _readable(item))
    ]


def _readable(item: dict[Any, Any]) -> bool:
    try:
        structure(Entity.WORK_ORDERS, item)
    except Exception:  # the oracle only asks whether it fits
        return False
    return True
