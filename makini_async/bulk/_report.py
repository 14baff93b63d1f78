"""What a bulk pull reports and delivers: outcomes, chain and pull reports, pages, records."""

from __future__ import annotations

import collections
import enum
import re
import time
import types
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import attrs

from makini_async.entities import Entity  # noqa: TC001 - attrs and NamedTuple need it at runtime

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from makini_async._invalid import InvalidRecord
    from makini_async.checkpoint import StateUse

__all__ = [
    "ChainReport",
    "FailureGroup",
    "Outcome",
    "PullReport",
    "PulledPage",
    "PulledRecord",
    "failure_groups",
]

R = TypeVar("R")


class Outcome(str, enum.Enum):
    """How a chain ended (or where it stands)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    REAUTHORIZATION_REQUIRED = "reauthorization_required"
    SKIPPED = "skipped"  # refused by the connection's open circuit breaker
    CANCELLED = "cancelled"


_FINAL = frozenset(
    {
        Outcome.COMPLETED,
        Outcome.FAILED,
        Outcome.REAUTHORIZATION_REQUIRED,
        Outcome.SKIPPED,
        Outcome.CANCELLED,
    }
)


@attrs.define(slots=True, kw_only=True, weakref_slot=False)
class ChainReport:
    """Live state and final outcome of one (connection, entity) chain."""

    connection: str
    entity: Entity
    outcome: Outcome = Outcome.PENDING
    records: int = 0
    pages: int = 0
    invalid: int = 0
    #: Records dropped because this run had delivered their id already (``dedupe``).
    duplicates: int = 0
    retries: int = 0
    rate_limited: int = 0
    #: Times the chain waited for its connection's open circuit breaker.
    deferrals: int = 0
    #: The page size the chain ended with (page sizes adapt, see the README).
    page_size: int | None = None
    resumed: bool = False
    #: How the chain started: ``"full"``, ``"resumed"`` (an interrupted run's cursor) or
    #: ``"incremental"`` (a ``modified_after`` filter); ``None`` until it starts.
    start: str | None = None
    #: Where ``modified_after`` came from: ``"data"`` (the newest ``updated_at`` an earlier
    #: run landed, less the overlap), ``"sync-status"``, ``"argument"``, or for a resumed
    #: chain ``"checkpoint"`` (the interrupted run's own filter).
    modified_after_source: str | None = None
    #: Records the interrupted run had delivered, for a resumed chain.
    resumed_from: int | None = None
    #: Times the chain started again from its beginning because the API rejected its cursor.
    restarts: int = 0
    #: Records this run is expected to deliver: the listing's ``total_count``
    #: (less what an interrupted run had delivered), or ``None`` when the source cannot say.
    total: int | None = None
    modified_after: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: BaseException | None = None
    #: The pool's clock, which ``started_at`` and ``finished_at`` are read from.
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False, eq=False)

    @property
    def elapsed(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else self.clock()
        return end - self.started_at

    @property
    def done(self) -> bool:
        return self.outcome in _FINAL


@attrs.define(slots=True, repr=False)
class PullReport:
    """Every chain's report plus totals; live during the pull, final after it."""

    def __repr__(self) -> str:
        # Short whatever the size: a pull over 100,000 chains must not build a 65 MB string.
        return (
            f"<PullReport {len(self.chains)} chains, {self.records} records, "
            f"{len(self.failed_connections)} failed connections, {self.elapsed:.1f}s>"
        )

    chains: list[ChainReport] = attrs.field(factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False, eq=False)
    #: The checkpoint state the pull used and whether it was new, matched, adopted or fresh.
    state: StateUse | None = attrs.field(default=None, eq=False)

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else self.clock()
        return end - self.started_at

    @property
    def records(self) -> int:
        return sum(c.records for c in self.chains)

    @property
    def pages(self) -> int:
        return sum(c.pages for c in self.chains)

    @property
    def invalid(self) -> int:
        """Records that did not fit their model (delivered or skipped, never lost)."""
        return sum(c.invalid for c in self.chains)

    @property
    def retries(self) -> int:
        return sum(c.retries for c in self.chains)

    @property
    def rate_limited(self) -> int:
        return sum(c.rate_limited for c in self.chains)

    @property
    def total(self) -> int | None:
        """Records the whole pull is expected to deliver, when every started chain can say."""
        totals = [c.total for c in self.chains if c.started_at is not None]
        if not totals or None in totals:
            return None
        return sum(t for t in totals if t is not None)

    @property
    def records_per_second(self) -> float:
        elapsed = self.elapsed
        return self.records / elapsed if elapsed > 0 else 0.0

    def _by_connection(self) -> dict[str, list[ChainReport]]:
        out: dict[str, list[ChainReport]] = collections.defaultdict(list)
        for chain in self.chains:
            out[chain.connection].append(chain)
        return out

    @property
    def connections_total(self) -> int:
        return len({c.connection for c in self.chains})

    @property
    def connections_done(self) -> int:
        return sum(all(c.done for c in cs) for cs in self._by_connection().values())

    @property
    def failed_connections(self) -> list[str]:
        """Connections with at least one chain that did not complete (sorted)."""
        return sorted(
            {c.connection for c in self.chains if c.done and c.outcome is not Outcome.COMPLETED}
        )

    @property
    def ok(self) -> bool:
        return all(c.outcome is Outcome.COMPLETED for c in self.chains)

    @property
    def restarts(self) -> int:
        """Times chains started again from their beginning (the API rejected a cursor)."""
        return sum(c.restarts for c in self.chains)

    def starts(self) -> dict[str, Any]:
        """How the chains started: full, resumed (and from how many records), incremental."""
        counts = collections.Counter(c.start for c in self.chains if c.start is not None)
        sources = collections.Counter(
            c.modified_after_source for c in self.chains if c.start == "incremental"
        )
        return {
            "full": counts["full"],
            "resumed": counts["resumed"],
            "resumed_records": sum(c.resumed_from or 0 for c in self.chains),
            "incremental": counts["incremental"],
            "modified_after_from": {k: n for k, n in sorted(sources.items()) if k is not None},
            "restarts": self.restarts,
        }

    def describe_starts(self) -> str:
        """:meth:`starts` for people, in one line."""
        s = self.starts()
        parts = [f"{s['full']:,} full", f"{s['resumed']:,} resumed"]
        if s["resumed"]:
            parts[-1] += f" (after {s['resumed_records']:,} records)"
        parts.append(f"{s['incremental']:,} incremental")
        if s["modified_after_from"]:
            sources = ", ".join(f"{k} {n:,}" for k, n in s["modified_after_from"].items())
            parts[-1] += f" (modified_after from {sources})"
        line = ", ".join(parts)
        if s["restarts"]:
            line += f"; {s['restarts']:,} restarted from the beginning (cursor rejected)"
        return line

    def outcomes(self) -> dict[Outcome, int]:
        """Number of chains per outcome."""
        counts = collections.Counter(c.outcome for c in self.chains)
        return {o: counts[o] for o in Outcome if counts[o]}

    def failure_groups(self) -> list[FailureGroup]:
        """Chains that did not complete, grouped by cause (see :func:`failure_groups`)."""
        return failure_groups(self.chains)

    def summary(self) -> str:
        """A plain-text summary: totals, then every chain that did not complete."""
        lines = [
            (
                f"{self.connections_done}/{self.connections_total} connections done, "
                f"{self.records} records in {self.pages} pages, {self.elapsed:.1f}s "
                f"({self.records_per_second:,.0f} records/s), {self.invalid} invalid records, "
                f"{self.retries} retries, {self.rate_limited} rate-limited answers"
            ),
            "outcomes: " + ", ".join(f"{o.value}={n}" for o, n in self.outcomes().items()),
            "starts: " + self.describe_starts(),
        ]
        if self.state is not None:
            lines.append(f"checkpoint: {self.state.describe()}")
        for chain in self.chains:
            if chain.done and chain.outcome is not Outcome.COMPLETED:
                reason = f": {chain.error}" if chain.error is not None else ""
                lines.append(
                    f"  {chain.connection} {chain.entity.value}: {chain.outcome.value}"
                    f" after {chain.records} records{reason}"
                )
        return "\n".join(lines)


if TYPE_CHECKING:

    class PulledRecord(NamedTuple, Generic[R]):
        """One record and where it came from (the connection's name, never its token)."""

        connection: str
        entity: Entity
        record: R

else:

    class PulledRecord(NamedTuple):
        """One record and where it came from (the connection's name, never its token).

        A named tuple: the cheapest immutable object Python builds, since a
        pull makes one per record. ``record`` is a typed record, a ``dict``
        (``as_dicts=True``) or an :class:`~makini_async.InvalidRecord`. Type
        checkers see it generic in ``record`` (``PulledRecord[WorkOrder]``);
        at run time Python 3.10 cannot make a generic named tuple, so the
        subscription is accepted and ignored.
        """

        connection: str
        entity: Entity
        record: Any

        __class_getitem__ = classmethod(types.GenericAlias)


@attrs.frozen(slots=True)
class PulledPage(Generic[R]):
    """One page and where it came from.

    ``invalid`` holds the page's records that do not fit their model, as the
    API sent them; whatever the ``on_invalid`` policy, a page carries them.
    ``total_count`` is the listing's total as the API reported it (``None``
    when the source system cannot count).

    ``texts``, in a page a dict pull hands to a sink that stores JSON (one
    whose ``reads_texts`` is true), is each record's JSON text as the API
    sent it, in the order of ``records`` (buffers, such as ``msgspec.Raw``, of
    the page's body); ``None`` when the page has none to give (see
    :mod:`makini_async._wire.texts`), in every other pull, and in the pages
    the pull yields once the sink has them.
    """

    connection: str
    entity: Entity
    records: list[R]
    cursor: str | None
    next_cursor: str | None
    request_id: str | None
    invalid: tuple[InvalidRecord, ...] = ()
    total_count: int | None = None
    texts: Sequence[Any] | None = attrs.field(default=None, repr=False, eq=False)

    def __len__(self) -> int:
        return len(self.records)


# -- failures grouped by cause ---------------------------------------------------------

# What differs between two reports of one cause: request IDs, UUIDs, long hex
# strings (addresses, hashes) and numbers (counts, durations, ports, line numbers).
_REQUEST_ID = re.compile(r"\breq_[\w-]+")
_UUID = re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b", re.IGNORECASE)
_HEX = re.compile(r"\b(?:0x)?(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SPACES = re.compile(r"\s+")


def error_fields(error: BaseException | None) -> tuple[str, str, str | None]:
    """``(code, message, request_id)`` of a chain's error: the code, else the class name."""
    if error is None:
        return "-", "", None
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    return (
        code if isinstance(code, str) and code else type(error).__name__,
        message if isinstance(message, str) else str(error),
        getattr(error, "request_id", None),
    )


def first_sentence(message: str) -> str:
    """The message without the connection and request ID it names again, on one line."""
    text = message.split(" (request_id=", 1)[0].split(" (connection=", 1)[0].split(" [", 1)[0]
    return text.splitlines()[0].strip() if text.strip() else ""


def normalise(message: str, connection: str, entity: str = "") -> str:
    """The cause a message tells, without the parts one chain's report has of its own.

    The connection's and entity's names, request IDs, UUIDs, long hex strings and numbers
    become placeholders, so that 300 connections failing for one reason share
    one cause: ``"connection plant-7: read timeout after 3 attempts"`` and
    ``"connection plant-9: read timeout after 4 attempts"`` are both
    ``"connection <connection>: read timeout after N attempts"``.
    """
    text = first_sentence(message)
    if connection:
        text = text.replace(connection, "<connection>")
    if entity:
        text = text.replace(entity, "<entity>")
    text = _UUID.sub("<id>", text)
    text = _REQUEST_ID.sub("<id>", text)
    text = _HEX.sub("<id>", text)
    text = _NUMBER.sub("N", text)
    return _SPACES.sub(" ", text).strip()


@attrs.frozen(slots=True)
class FailureGroup:
    """Chains that did not complete for one cause: one outcome, error class, code and message.

    ``message`` and ``request_id`` are the first chain's, as an example;
    ``cause`` is the message with what differs per connection taken out (see
    :func:`normalise`). ``connections`` lists every connection of the group,
    in the pull's order.
    """

    outcome: Outcome
    error_type: str
    code: str
    cause: str
    message: str
    request_id: str | None
    connections: tuple[str, ...]
    entities: tuple[Entity, ...]
    chains: int


def failure_groups(chains: Iterable[ChainReport]) -> list[FailureGroup]:
    """Chains that ended without completing, grouped by cause, the largest group first."""
    found: dict[tuple[str, ...], list[ChainReport]] = {}
    for chain in chains:
        if not chain.done or chain.outcome is Outcome.COMPLETED:
            continue
        code, message, _ = error_fields(chain.error)
        key = (
            chain.outcome.value,
            "-" if chain.error is None else type(chain.error).__name__,
            code,
            normalise(message, chain.connection, chain.entity.value),
        )
        found.setdefault(key, []).append(chain)
    groups = []
    for (_, error_type, code, cause), members in found.items():
        first = members[0]
        _, message, request_id = error_fields(first.error)
        example = first_sentence(message)
        if len(members) > 1 and first.connection:  # the message stands for several
            example = example.replace(first.connection, "<connection>")
        groups.append(
            FailureGroup(
                outcome=first.outcome,
                error_type=error_type,
                code=code,
                cause=cause,
                message=example,
                request_id=request_id,
                connections=tuple(dict.fromkeys(c.connection for c in members)),
                entities=tuple(dict.fromkeys(c.entity for c in members)),
                chains=len(members),
            )
        )
    groups.sort(key=lambda g: (-len(g.connections), g.outcome.value, g.code, g.cause))
    return groups
