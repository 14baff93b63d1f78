"""High-water marks from the data: the newest ``updated_at`` of a page, whatever its spelling."""

from __future__ import annotations

import datetime as dt

import pytest

from makini_async.bulk._marks import canonical, earlier, newest
from makini_async.models._fields import to_datetime

LIMIT = "2030-01-01T00:00:00Z"


def rows(*values: object) -> list[dict[str, object]]:
    return [{"id": str(i), "updated_at": v} for i, v in enumerate(values)]


def test_the_contract_spelling_is_compared_as_text() -> None:
    page = rows("2024-03-01T12:00:00Z", "2024-05-01T08:00:00Z", "2024-04-30T23:59:59Z")
    assert newest(page, None, LIMIT) == "2024-05-01T08:00:00Z"
    assert newest(page, "2024-06-01T00:00:00Z", LIMIT) == "2024-06-01T00:00:00Z"
    assert newest(page, "2024-04-01T00:00:00Z", LIMIT) == "2024-05-01T08:00:00Z"
    assert newest([], "2024-04-01T00:00:00Z", LIMIT) == "2024-04-01T00:00:00Z"


@pytest.mark.parametrize(
    "values",
    [
        # Offsets: as text the first is the largest, as an instant the last one is.
        ("2024-03-01T12:00:00+05:00", "2024-03-01T10:00:00Z", "2024-03-01T09:00:00-02:00"),
        ("2024-03-01 12:00:00", "2024-03-01T11:00:00Z", "2024-03-01T11:30:00.123456Z"),
        ("2024-03-01T12:00:00.5Z", "2024-03-01T12:00:00Z", "2024-03-01T11:00:00+0000"),
        ("2024-03-01", "2024-02-28T23:00:00Z", "2024-03-01T00:00:00-01"),
    ],
)
def test_other_spellings_never_give_a_mark_later_than_the_newest_record(
    values: tuple[str, ...],
) -> None:
    got = newest(rows(*values), None, LIMIT)
    instants = {canonical(to_datetime(v)) for v in values}
    assert got in instants  # one of the records' own instants...
    assert got <= max(instants)  # ...never later than the newest (earlier only re-delivers)


def test_gaps_and_unreadable_values_are_skipped() -> None:
    page = [
        {"id": "1", "updated_at": "2024-03-01T12:00:00Z"},
        {"id": "2"},
        {"id": "3", "updated_at": None},
        {"id": "4", "updated_at": "n/a"},
        {"id": "5", "updated_at": 1709294400},
        {"id": "6", "updated_at": "2024-03-02T00:00:00+01:00"},
    ]
    assert newest(page, None, LIMIT) == "2024-03-01T23:00:00Z"
    assert newest(rows(None, "n/a"), "2024-01-01T00:00:00Z", LIMIT) == "2024-01-01T00:00:00Z"
    assert newest(rows(None), None, LIMIT) is None


def test_a_far_future_sentinel_is_no_modification_time() -> None:
    page = rows("9999-12-31T00:00:00Z", "2024-03-01T12:00:00Z", "9999-12-31")
    assert newest(page, None, LIMIT) == "2024-03-01T12:00:00Z"
    assert newest(rows("9999-12-31T00:00:00Z"), None, LIMIT) is None


def test_typed_records_compare_their_instants() -> None:
    class Record:
        def __init__(self, when: dt.datetime | None) -> None:
            self.updated_at = when

    plus2 = dt.timezone(dt.timedelta(hours=2))
    page = [
        Record(dt.datetime(2024, 3, 1, 13, 0, tzinfo=plus2)),
        Record(dt.datetime(2024, 3, 1, 11, 30, 0, 999999, tzinfo=dt.timezone.utc)),
    ]
    assert newest(page, None, LIMIT) == "2024-03-01T11:30:00Z"
    assert newest([*page, Record(None)], None, LIMIT) == "2024-03-01T11:30:00Z"


def test_the_overlap_is_taken_off_the_mark() -> None:
    assert earlier("2024-03-01T00:02:00Z", dt.timedelta(seconds=300)) == "2024-02-29T23:57:00Z"
    assert earlier("not a date", dt.timedelta(seconds=300)) is None
