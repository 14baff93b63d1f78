"""Record stores, per-connection state and statistics of the mock server."""

from __future__ import annotations

import base64
import binascii
import bisect
import collections
import hashlib
import itertools
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson

from makini_async.testing._data import format_datetime, parse_instant

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from makini_async.entities import Entity
    from makini_async.testing._faults import FaultState, RateLimit, SlidingWindowLimiter

__all__ = [
    "EntityStore",
    "ServerStats",
    "decode_cursor",
    "decode_cursor_generation",
    "encode_cursor",
    "token_digest",
]

_PAGE_CACHE_LIMIT: Final[int] = 4096
_store_ids = itertools.count(1)

#: Connection statuses the contract knows.
STATUSES: Final[frozenset[str]] = frozenset(
    {"active", "reauthorization_required", "offline", "disconnected"}
)


def token_digest(token: str) -> str:
    """A short, non-reversible label for a token: the first 12 hex of its sha256."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def encode_cursor(seq: int, generation: int = 0) -> str:
    """The opaque cursor after the record with sequence number ``seq``.

    ``generation`` counts the connection's :meth:`~MockMakini.expire_cursors`
    calls: a cursor of an older generation has expired.
    """
    text = f"mk1:{seq}" if generation == 0 else f"mk1:{seq}:{generation}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The sequence number in ``cursor``; :class:`ValueError` if it is not ours."""
    return decode_cursor_generation(cursor)[0]


def decode_cursor_generation(cursor: str) -> tuple[int, int]:
    """The sequence number and generation in ``cursor``; :class:`ValueError` if not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        msg = "malformed cursor"
        raise ValueError(msg) from None
    prefix, _, rest = raw.partition(":")
    number, _, generation = rest.partition(":")
    if prefix != "mk1" or not number.isdigit() or not (generation or "0").isdigit():
        msg = "malformed cursor"
        raise ValueError(msg)
    return int(number), int(generation or 0)


@attrs.define
class ServerStats:
    """What the server saw from one token (or from all, for the totals)."""

    requests: int = 0
    max_concurrent: int = 0
    in_flight: int = 0
    during_cooldown: int = 0
    statuses: collections.Counter[int] = attrs.field(factory=collections.Counter)


class EntityStore:
    """The records of one entity in cursor (creation sequence) order.

    A store may be shared by many connections (same seed and count); the
    server copies it before the first mutation by a connection
    (copy-on-write). Serialized pages are cached on the store, keyed by the
    request's cursor, page size and filters, and dropped on mutation.
    ``variations`` maps record ids to the variations applied at generation.
    """

    __slots__ = (
        "_cache",
        "by_id",
        "entity",
        "next_index",
        "records",
        "seqs",
        "store_id",
        "variations",
    )

    def __init__(
        self,
        entity: Entity,
        records: list[dict[str, Any]],
        next_index: int,
        variations: dict[str, list[str]] | None = None,
    ) -> None:
        self.entity = entity
        self.variations = variations or {}
        self.store_id = next(_store_ids)
        self.records = records
        self.seqs: list[int] = list(range(len(records)))
        self.by_id: dict[str, int] = {r["id"]: i for i, r in enumerate(records)}
        self.next_index = next_index
        self._cache: dict[tuple[Any, ...], bytes] = {}

    def copy(self) -> EntityStore:
        """A private copy (records are replaced, never mutated, so a shallow copy)."""
        new = EntityStore.__new__(EntityStore)
        new.entity = self.entity
        new.variations = self.variations
        new.store_id = next(_store_ids)
        new.records = list(self.records)
        new.seqs = list(self.seqs)
        new.by_id = dict(self.by_id)
        new.next_index = self.next_index
        new._cache = {}
        return new

    # -- reads ------------------------------------------------------------------

    def get(self, record_id: str) -> dict[str, Any] | None:
        """The record with ``record_id``, or ``None``."""
        seq = self.by_id.get(record_id)
        if seq is None:
            return None
        return self.records[bisect.bisect_left(self.seqs, seq)]

    def page_bytes(
        self,
        after_seq: int | None,
        page_size: int,
        modified_after: str | None,
        created_after: str | None,
        *,
        report_total: bool,
        generation: int = 0,
    ) -> bytes:
        """The serialized listing page, from the cache when possible."""
        key = (after_seq, page_size, modified_after, created_after, report_total, generation)
        body = self._cache.get(key)
        if body is None:
            body = self._build_page(
                after_seq,
                page_size,
                modified_after,
                created_after,
                report_total=report_total,
                generation=generation,
            )
            if len(self._cache) >= _PAGE_CACHE_LIMIT:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = body
        return body

    def _build_page(
        self,
        after_seq: int | None,
        page_size: int,
        modified_after: str | None,
        created_after: str | None,
        *,
        report_total: bool,
        generation: int = 0,
    ) -> bytes:
        start = 0 if after_seq is None else bisect.bisect_right(self.seqs, after_seq)
        records = self.records
        n = len(records)
        if modified_after is None and created_after is None:
            end = min(n, start + page_size)
            data = records[start:end]
            last = end - 1
            more = end < n
            total: int | None = n
        else:
            match = _matcher(modified_after, created_after)
            data = []
            last = start - 1
            more = False
            i = start
            while i < n:
                if match(records[i]):
                    if len(data) == page_size:
                        more = True
                        break
                    data.append(records[i])
                    last = i
                i += 1
            total = sum(1 for r in records if match(r)) if report_total else None
        next_cursor = encode_cursor(self.seqs[last], generation) if more and data else None
        return orjson.dumps(
            {
                "data": data,
                "next_cursor": next_cursor,
                "total_count": total if report_total else None,
            }
        )

    # -- writes -----------------------------------------------------------------

    def _touched(self) -> None:
        self._cache.clear()

    def append(self, record: dict[str, Any]) -> None:
        """Add ``record`` at the end of the cursor order (sequence ``next_index``)."""
        seq = self.next_index
        self.next_index += 1
        self.records.append(record)
        self.seqs.append(seq)
        self.by_id[record["id"]] = seq
        self._touched()

    def replace(self, record: dict[str, Any]) -> None:
        """Swap in a new version of an existing record (same id, same position)."""
        seq = self.by_id[record["id"]]
        self.records[bisect.bisect_left(self.seqs, seq)] = record
        self._touched()

    def remove(self, record_id: str) -> None:
        """Delete a record; later cursors are unaffected."""
        seq = self.by_id.pop(record_id)
        pos = bisect.bisect_left(self.seqs, seq)
        del self.records[pos]
        del self.seqs[pos]
        self._touched()


def _instant(value: Any) -> str:
    """``value`` comparable with a filter: canonical UTC text when it is a date-time.

    Varied records may carry offsets, fractions or no zone; the filter must
    compare their instants, not their spelling. Unreadable values compare as
    written.
    """
    if type(value) is str and len(value) == 20 and value[10] == "T" and value[19] == "Z":
        return value
    epoch = parse_instant(value)
    return str(value) if epoch is None else format_datetime(epoch)


def _matcher(
    modified_after: str | None, created_after: str | None
) -> Callable[[Mapping[str, Any]], bool]:
    def match(record: Mapping[str, Any]) -> bool:
        if modified_after is not None and _instant(record.get("updated_at", "")) < modified_after:
            return False
        return not (
            created_after is not None and _instant(record.get("created_at", "")) < created_after
        )

    return match


@attrs.define(eq=False)
class MockConnection:
    """Everything the server knows about one token. Its repr never shows the token."""

    token: str = attrs.field(repr=False)
    label: str
    connection_id: str
    system: str = "SAP"
    status: str = "active"
    records_per_entity: int | dict[Entity, int] | None = None
    variations: float | None = None
    unreadable: float | None = None
    faults: FaultState | None = None
    fault_plan_set: bool = False
    rate_limit: RateLimit | None = None
    limiter: SlidingWindowLimiter | None = None
    report_total_count: bool = True
    denied_entities: frozenset[Entity] = frozenset()
    data_seed: int = 0
    stores: dict[Entity, EntityStore] = attrs.field(factory=dict)
    private: set[Entity] = attrs.field(factory=set)
    idempotency: dict[str, tuple[str, str, int, bytes | None]] = attrs.field(factory=dict)
    cooldown_until: float = float("-inf")
    stats: ServerStats = attrs.field(factory=ServerStats)
    fault_log_all: list[str] = attrs.field(factory=list)
    syncs: dict[Entity, tuple[str, float, str]] = attrs.field(factory=dict)
    last_sync_at: str | None = None
    #: Bumped by ``expire_cursors``: cursors of an older generation are refused.
    cursor_generation: int = 0
