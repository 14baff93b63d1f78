"""De-duplication within a chain: the ids of its last few pages, in bounded memory.

Keyset cursors neither skip nor repeat records (the API's contract). What a
misbehaving source does is repeat a page (served twice after a retry) or
overlap two pages at their boundary (an offset-paged source that saw an
insert). The guard therefore remembers the ids of a chain's last pages only,
in two generations of at most :data:`PAGES_PER_GENERATION` pages each: a
page is checked against both, and a full generation replaces the older one.
Memory per chain is bounded (at most ``2 * PAGES_PER_GENERATION`` pages of
ids) and a page costs the same on page 2 and on page 10,000.
"""

from __future__ import annotations

import logging
import operator
from typing import TYPE_CHECKING, Any, Final, Protocol

from makini_async._invalid import InvalidRecord
from makini_async.models import unstructure

if TYPE_CHECKING:
    from makini_async.entities import Entity

__all__ = ["PAGES_PER_GENERATION", "RecentIds", "fresh"]

logger = logging.getLogger("makini_async")

#: Pages per generation of remembered ids: a chain remembers its last 2 to 4 pages.
PAGES_PER_GENERATION: Final = 2

_ITEM_ID: Final = operator.itemgetter("id")
_ATTR_ID: Final = operator.attrgetter("id")
# The ids a dict record may carry; ``bool`` is an int but never an id.
_ID_TYPES: Final = frozenset({str, int})
_NONE: Final[frozenset[Any]] = frozenset()


class RecentIds:
    """The ids of a chain's last pages, in two generations (see the module docs)."""

    __slots__ = ("newer", "older", "pages")

    def __init__(self) -> None:
        self.newer: set[Any] | frozenset[Any] = _NONE
        self.older: set[Any] | frozenset[Any] = _NONE
        self.pages = 0

    def __contains__(self, rid: object) -> bool:
        return rid in self.newer or rid in self.older

    def __len__(self) -> int:
        return len(self.newer) + len(self.older)

    def isdisjoint(self, ids: set[Any]) -> bool:
        return self.newer.isdisjoint(ids) and self.older.isdisjoint(ids)

    def add(self, ids: set[Any]) -> None:
        """Remember one page's ids (the set becomes this object's: never reuse it)."""
        pages = self.pages
        if pages == 0:
            self.newer = ids
            self.pages = 1
        elif pages < PAGES_PER_GENERATION:
            self.newer |= ids  # a set once a page is in
            self.pages = pages + 1
        else:
            self.older = self.newer
            self.newer = ids
            self.pages = 1


class Chain(Protocol):
    """What de-duplication reads and counts of a chain (a ``bulk._chain.Chain`` is one)."""

    seen: RecentIds | None
    duplicates: int

    @property
    def connection(self) -> str: ...
    @property
    def entity(self) -> Entity: ...


def _usable(ids: set[Any]) -> bool:
    """Whether every id is text or an integer (``bool`` is an int, never an id)."""
    try:
        "".join(ids)  # all text, the usual case: one pass in C, half a type check's cost
    except TypeError:
        return {*map(type, ids)} <= _ID_TYPES
    return True


def fresh(
    chain: Chain,
    records: list[Any],
    invalid: tuple[InvalidRecord, ...],
    *,
    as_dicts: bool,
    request_id: str | None,
) -> tuple[list[Any], tuple[InvalidRecord, ...]]:
    """``records`` and ``invalid`` less any id this chain delivered in its last pages.

    A record without a usable id (non-empty text or an integer) cannot be
    de-duplicated: it joins ``invalid``, whole. Typed records' ids are text
    (``5`` and ``"5"`` are one id); dict records' ids are compared as sent.
    Dropped records are counted in ``chain.duplicates`` and logged.
    """
    get_id = _ITEM_ID if as_dicts else _ATTR_ID
    try:
        ids = set(map(get_id, records))
    except (KeyError, TypeError, AttributeError):
        ids = None
    if ids is not None and ("" in ids or (as_dicts and not _usable(ids))):
        ids = None
    if ids is None:
        records, no_id = _without_id(chain, records, request_id)
        invalid = (*invalid, *no_id)
        ids = set(map(get_id, records))
    recent = chain.seen
    if recent is None:
        recent = chain.seen = RecentIds()
    if len(ids) == len(records) and not invalid and recent.isdisjoint(ids):
        recent.add(ids)  # the common case, all in C
        return records, invalid
    kept_ids: set[Any] = set()
    keep: list[Any] = []
    for rid, record in zip(map(get_id, records), records, strict=True):
        if rid not in kept_ids and rid not in recent:
            kept_ids.add(rid)
            keep.append(record)
    dropped = len(records) - len(keep)
    if invalid:
        # An invalid record that has an id is de-duplicated like the others.
        kept: list[InvalidRecord] = []
        for item in invalid:
            rid = item.id
            if not rid or (rid not in kept_ids and rid not in recent):
                if rid:
                    kept_ids.add(rid)
                kept.append(item)
        dropped += len(invalid) - len(kept)
        invalid = tuple(kept)
    recent.add(kept_ids)
    if dropped:
        chain.duplicates += dropped
        logger.info(
            "%s %s: %d records with ids delivered in the chain's last pages dropped "
            "(request_id=%s)",
            chain.connection,
            chain.entity.value,
            dropped,
            request_id,
        )
    return keep, invalid


def _without_id(
    chain: Chain, records: list[Any], request_id: str | None
) -> tuple[list[Any], list[InvalidRecord]]:
    """Split dict records into those with a usable id and invalid ones (the slow path)."""
    keep: list[Any] = []
    invalid: list[InvalidRecord] = []
    for record in records:
        rid = record.get("id") if isinstance(record, dict) else getattr(record, "id", None)
        if type(rid) in _ID_TYPES and rid != "":
            keep.append(record)
        else:
            reason = "required field is missing" if rid is None else "not a usable id"
            invalid.append(
                InvalidRecord(
                    entity=chain.entity,
                    data=record if isinstance(record, dict) else unstructure(record),
                    field="id",
                    reason=f"{reason}; a record needs one to be de-duplicated",
                    request_id=request_id,
                    connection=chain.connection,
                )
            )
    return keep, invalid
