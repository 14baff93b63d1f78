"""Every option of a pull in one value: :class:`PullOptions`.

``MakiniPool.pull``, :class:`~makini_async.Pull`, a sharded pull's workers
and the command line all take one, so an option is declared here, once, with
its default and its check. The keyword form (``pool.pull(..., patience=60)``)
builds the same value; :class:`PullKeywords` types those keywords for mypy
(a test keeps its names and types the same as the fields').

What a pull reads (entities, connections) and where it lands (the sink, the
checkpoint) stay arguments of their own: a local pull takes a sink object, a
sharded one a spec each worker opens. ``as_dicts`` does too: it decides the
type of the records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypedDict

import attrs

from makini_async._wire.arguments import check_on_invalid
from makini_async._wire.requests import format_when
from makini_async.errors import UsageError

if TYPE_CHECKING:
    import datetime as dt
    import os
    from collections.abc import Callable
    from typing import TypeAlias

    from makini_async._invalid import OnInvalid
    from makini_async.checkpoint import AsyncCheckpointStore, CheckpointStore

    #: Where a local pull keeps its checkpoint: a path or DSN it opens, or a store.
    CheckpointSpec: TypeAlias = (
        "str | os.PathLike[str] | CheckpointStore | AsyncCheckpointStore | None"
    )

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_PATIENCE",
    "LOCAL_ONLY",
    "PullKeywords",
    "PullOptions",
    "options_of",
    "sharded_options",
]

#: Seconds an incremental run reaches back before the last run's start.
DEFAULT_OVERLAP: Final = 300.0
#: Seconds a chain may wait, in all, for its connection's open breaker.
DEFAULT_PATIENCE: Final = 300.0


def _since(value: dt.datetime | dt.date | str | None) -> str | None:
    return None if value is None else format_when(value, name="modified_after")


def _check_concurrency(_inst: object, _attr: object, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        msg = f"concurrency must be an integer >= 1, got {value!r}"
        raise UsageError(msg)


def _check_seconds(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        msg = f"{attr.name} must be a number of seconds >= 0, got {value!r}"
        raise UsageError(msg)


def _check_on_invalid(_inst: object, _attr: object, value: object) -> None:
    check_on_invalid(value)


@attrs.frozen(kw_only=True)
class PullOptions:
    """How a pull reads: its filter, its concurrency and its policies. Every field has a default.

    ``modified_after`` is kept as the API's timestamp string (a datetime or
    date is formatted once, here). ``wall_clock`` (tests) is the clock that
    stamps an incremental run's start; it stays in the process that made it.
    """

    #: Only records modified after this (a datetime, a date or an ISO string).
    modified_after: str | None = attrs.field(default=None, converter=_since)
    #: Chains pulled at once (``None``: the pool's requests in flight).
    concurrency: int | None = attrs.field(default=None, validator=_check_concurrency)
    #: Drop a record already delivered in this run (ids seen across a resumed chain).
    dedupe: bool = True
    #: Raise the first chain's failure instead of reporting it.
    raise_on_error: bool = False
    #: What happens to a record that does not fit its model.
    on_invalid: OnInvalid = attrs.field(default="deliver", validator=_check_on_invalid)
    #: Start an incremental run from the connection's last sync (``GET /sync-status``).
    since_sync_status: bool = False
    #: Seconds an incremental run reaches back before the last run's start.
    overlap: float = attrs.field(default=DEFAULT_OVERLAP, validator=_check_seconds)
    #: Seconds a chain may wait, in all, for its connection's open breaker.
    patience: float = attrs.field(default=DEFAULT_PATIENCE, validator=_check_seconds)
    #: The checkpoint state to use (``None``: the destination's own).
    state_name: str | None = None
    #: Start the checkpoint state over instead of resuming it.
    fresh: bool = False
    #: The clock of an incremental run's start (``None``: the system's, in UTC).
    wall_clock: Callable[[], dt.datetime] | None = attrs.field(default=None, eq=False, repr=False)

    def evolve(self, **changes: Any) -> PullOptions:
        """These options with ``changes`` (checked as the constructor checks them)."""
        return options_of(self, changes)


class PullKeywords(TypedDict, total=False):
    """The keyword form of :class:`PullOptions`, for ``**keywords`` signatures."""

    modified_after: dt.datetime | dt.date | str | None
    concurrency: int | None
    dedupe: bool
    raise_on_error: bool
    on_invalid: OnInvalid
    since_sync_status: bool
    overlap: float
    patience: float
    state_name: str | None
    fresh: bool
    wall_clock: Callable[[], dt.datetime] | None


_FIELDS: Final = frozenset(a.name for a in attrs.fields(PullOptions))


def options_of(options: PullOptions | None, keywords: PullKeywords | dict[str, Any]) -> PullOptions:
    """``options`` (or the defaults) with ``keywords`` over them; a wrong name is a UsageError."""
    unknown = sorted(set(keywords) - _FIELDS)
    if unknown:
        msg = f"unknown pull option{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}"
        raise UsageError(msg)
    if options is not None and not isinstance(options, PullOptions):
        msg = f"options must be a PullOptions, not {type(options).__name__}"
        raise UsageError(msg)
    if not keywords:
        return options if options is not None else PullOptions()
    base = {} if options is None else attrs.asdict(options, recurse=False)
    return PullOptions(**{**base, **keywords})


#: Options of a pull in one process only: each unit of a sharded pull keeps the
#: checkpoint state of its own destination, and its clock is its process's.
LOCAL_ONLY: Final = ("raise_on_error", "state_name", "fresh", "wall_clock")


def sharded_options(
    options: PullOptions | None,
    keywords: PullKeywords | dict[str, Any],
    *,
    what: str = "a sharded pull",
) -> PullOptions:
    """As :func:`options_of`, refusing the :data:`LOCAL_ONLY` options ``what`` cannot keep."""
    opts = options_of(options, keywords)
    default = PullOptions()
    given = [name for name in LOCAL_ONLY if getattr(opts, name) != getattr(default, name)]
    if given:
        msg = f"{', '.join(given)}: for a pull in one process, not {what}"
        raise UsageError(msg)
    return opts
