"""Checkpoint states bound to their destination: state names, identities, and the binding.

A checkpoint store may hold several *states*, each under a name, each with the
*identity* of the pull that writes it: where its records land (the sink's
kind and location, never a password), its entities, its filters and its unit
layout. A chain's cursor only means something for the destination it was
recorded for: "complete" in state A says nothing about directory B. So a pull
binds to one state before it plans any chain (:func:`bind_state`):

* no state of that name yet: a **new** state, recorded with this pull's identity
  (chains an older version of the library wrote with no state at all are
  **adopted** by the first pull that has them, once, with a log line);
* a state recorded for the same destination and layout: **matched**;
* a state recorded for another destination or layout: :class:`CheckpointMismatch`,
  naming both, unless the pull asked for a ``fresh`` start (a full pull that
  replaces the state).

The name defaults to the destination itself (``jsonl:/data/out``), so two
destinations can share one checkpoint file or database without mixing.
Chains are stored under ``NAME + SEPARATOR + connection``; a key with no
separator is a chain of the format before states.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import TYPE_CHECKING, Any, Final

import attrs

from makini_async.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "DEFAULT_STATE",
    "SEPARATOR",
    "CheckpointMismatch",
    "StateIdentity",
    "StateUse",
    "bind_state",
    "check_state_name",
    "default_state_name",
    "state_view",
    "supports_states",
]

logger = logging.getLogger("makini_async")

#: Between a state's name and a connection's in a chain's stored key.
SEPARATOR: Final = "\x1f"
#: The state of a pull without a sink (its consumer is the destination).
DEFAULT_STATE: Final = "default"
_MAX_NAME: Final = 300

_KINDS: Final = {"JsonLinesSink": "jsonl", "ParquetSink": "parquet", "PostgresSink": "postgresql"}
_DIRECTORIES: Final = frozenset({"jsonl", "parquet"})


class CheckpointMismatch(CheckpointError):
    """The checkpoint's state was recorded for another destination or unit layout."""


def check_state_name(name: object) -> str:
    """``name`` if it can name a state: printable text, no control characters."""
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        msg = f"a state name must be non-empty text of at most {_MAX_NAME} characters"
        raise UsageError(msg)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        msg = "a state name cannot hold control characters"
        raise UsageError(msg)
    return name


def sink_kind(sink: object | None) -> str:
    """``jsonl``, ``parquet``, ``postgresql``, ``consumer`` (no sink) or the sink's class name."""
    if sink is None:
        return "consumer"
    # A sink that stands for another (a sync's view of its one sink) says whose kind it has.
    name = getattr(sink, "stands_for", None) or type(sink).__name__
    return _KINDS.get(name, name)


def sink_location(sink: Any, kind: str) -> str:
    """Where ``sink`` lands records, for an identity: absolute for a directory, no password."""
    if sink is None:
        return "-"
    where = getattr(sink, "destination", None) or sink.location
    where = str(where)
    if kind in _DIRECTORIES:
        return os.path.abspath(os.path.expanduser(where))
    return where


def destination_of(kind: str, location: str) -> str:
    """``kind:location`` (``jsonl:/data/out``), or a location that names its kind already."""
    return location if location.startswith(f"{kind}://") else f"{kind}:{location}"


def default_state_name(kind: str, location: str) -> str:
    """The state a pull uses unless named: its destination (``jsonl:/data/out``)."""
    return DEFAULT_STATE if kind == "consumer" else destination_of(kind, location)


@attrs.frozen(kw_only=True)
class StateIdentity:
    """What a checkpoint state was recorded for (nothing in it is a secret)."""

    name: str
    sink: str
    location: str
    entities: tuple[str, ...] = ()
    modified_after: str | None = None
    since_sync_status: bool = False
    #: How connections map to the destination's parts (a sharded pull's units), if at all.
    layout: str | None = None

    @property
    def destination(self) -> str:
        return destination_of(self.sink, self.location)

    def describe(self) -> str:
        layout = "" if self.layout is None else f" (layout {self.layout})"
        return f"{self.destination}{layout}"

    def conflicts(self, other: StateIdentity) -> bool:
        """Whether ``other`` lands elsewhere: another sink, location or layout."""
        return (self.sink, self.location, self.layout) != (other.sink, other.location, other.layout)

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["entities"] = list(self.entities)
        del data["name"]
        return data

    @classmethod
    def from_json(cls, name: str, data: Any) -> StateIdentity | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                name=name,
                sink=str(data["sink"]),
                location=str(data["location"]),
                entities=tuple(str(e) for e in data.get("entities") or ()),
                modified_after=data.get("modified_after"),
                since_sync_status=bool(data.get("since_sync_status", False)),
                layout=data.get("layout"),
            )
        except (KeyError, TypeError):
            return None


@attrs.frozen(kw_only=True)
class StateUse:
    """Which checkpoint state a pull used and how it found it (``PullReport.state``).

    ``status``: ``new`` (no state of that name yet), ``matched`` (recorded for
    this destination), ``adopted`` (chains of the format before states, now
    this state's), ``fresh`` (started over on request), ``destination``
    (the sink keeps its checkpoint in the destination itself) or ``unnamed``
    (a store of your own that keeps no named states).
    """

    identity: StateIdentity
    status: str
    checkpoint: str
    adopted: int = 0
    #: What a fresh start replaced, when the state had been recorded for elsewhere.
    replaced: StateIdentity | None = None

    @property
    def name(self) -> str:
        return self.identity.name

    def describe(self) -> str:
        if self.status == "destination":
            return f"kept in the destination, {self.identity.describe()}"
        if self.status == "unnamed":
            return f"{self.checkpoint} (a store without named states)"
        text = f"state {self.name!r} ({self.status}) in {self.checkpoint}"
        if self.adopted:
            text += f", {self.adopted} chains adopted"
        if self.replaced is not None:
            text += f", replacing one for {self.replaced.describe()}"
        if self.name != self.identity.destination:
            text += f", for {self.identity.describe()}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "checkpoint": self.checkpoint,
            "destination": self.identity.destination,
            "layout": self.identity.layout,
            "adopted": self.adopted,
            "replaced": None if self.replaced is None else self.replaced.destination,
        }


def supports_states(store: object) -> bool:
    """Whether ``store`` keeps named states (the stores of this package do)."""
    return all(
        callable(getattr(store, name, None))
        for name in ("use_state", "read_identity", "write_identity", "adopt_legacy", "drop_state")
    )


async def _call(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


def store_location(store: object) -> str:
    where = getattr(store, "location", None) or getattr(store, "path", None)
    return str(where) if where is not None else type(store).__name__


async def bind_state(
    store: Any,
    wanted: StateIdentity,
    *,
    fresh: bool,
    chains: Iterable[tuple[str, str]],
) -> StateUse:
    """Find (or record) the state ``wanted`` names, or raise :class:`CheckpointMismatch`.

    The caller then reads and writes that state's chains through
    :func:`state_view` (or, for a sink's own store, ``store.use_state``).

    ``chains`` are this pull's ``(connection, entity)`` pairs: the chains it
    may adopt from the format before states. With ``fresh``, a state recorded
    for another destination is dropped and replaced (the caller then starts
    this pull's chains over).
    """
    where = store_location(store)
    name = wanted.name
    raw = await _call(store.read_identity(name))
    recorded = StateIdentity.from_json(name, raw)
    replaced = None
    adopted = 0
    if raw is not None and recorded is None:
        if not fresh:
            msg = (
                f"checkpoint {where}: the identity of state {name!r} is unreadable, so "
                "where its chains landed is unknown; start it over (--fresh, fresh=True)"
            )
            raise CheckpointMismatch(msg)
        await _call(store.drop_state(name))
        status = "fresh"
    elif recorded is None:
        status = "fresh" if fresh else "new"
        adopted = await _call(store.adopt_legacy(name, list(chains)))
        if adopted and not fresh:
            status = "adopted"
            logger.warning(
                "checkpoint %s: %d chains written before checkpoints named their destination "
                "are now state %r, for %s; a pull into another destination starts its own state",
                where,
                adopted,
                name,
                wanted.describe(),
            )
    elif recorded.conflicts(wanted):
        if not fresh:
            msg = (
                f"checkpoint {where}: state {name!r} was recorded for {recorded.describe()}, "
                f"but this pull writes to {wanted.describe()}; its chains say what landed "
                "there, not here. Start this state over with a full pull (--fresh, "
                "fresh=True), or use another state name (--state-name, state_name=)"
            )
            raise CheckpointMismatch(msg)
        await _call(store.drop_state(name))
        status, replaced = "fresh", recorded
    else:
        status = "fresh" if fresh else "matched"
        # Entities accumulate: the state holds chains of each entity ever pulled.
        extra = [e for e in recorded.entities if e not in wanted.entities]
        wanted = attrs.evolve(wanted, entities=(*wanted.entities, *extra))
    await _call(store.write_identity(name, wanted.to_json()))
    if replaced is not None:
        logger.warning(
            "checkpoint %s: state %r started over for %s (it was recorded for %s)",
            where,
            name,
            wanted.describe(),
            replaced.describe(),
        )
    return StateUse(
        identity=wanted, status=status, checkpoint=where, adopted=adopted, replaced=replaced
    )


class _SyncView:
    """One state of a synchronous store: its chains, keyed as that state's."""

    __slots__ = ("_prefix", "_store")

    def __init__(self, store: Any, name: str) -> None:
        self._store = store
        self._prefix = f"{name}{SEPARATOR}"

    @property
    def location(self) -> str:
        return store_location(self._store)

    def load(self, connection: str, entity: str) -> Any:
        return self._store.load(self._prefix + connection, entity)

    def save(self, connection: str, entity: str, state: Any) -> None:
        self._store.save(self._prefix + connection, entity, state)

    def flush(self) -> None:
        self._store.flush()

    def close(self) -> None:
        self._store.close()


class _AsyncView:
    """One state of a coroutine store (PostgreSQL): its chains, keyed as that state's."""

    __slots__ = ("_prefix", "_store")

    def __init__(self, store: Any, name: str) -> None:
        self._store = store
        self._prefix = f"{name}{SEPARATOR}"

    @property
    def location(self) -> str:
        return store_location(self._store)

    async def open(self) -> None:
        await self._store.open()

    async def load(self, connection: str, entity: str) -> Any:
        return await self._store.load(self._prefix + connection, entity)

    async def save(self, connection: str, entity: str, state: Any) -> None:
        await self._store.save(self._prefix + connection, entity, state)

    async def flush(self) -> None:
        await self._store.flush()

    async def close(self) -> None:
        await self._store.close()


def state_view(store: Any, name: str) -> Any:
    """The chains of state ``name`` in ``store``, as a store of their own.

    Several pulls may share one store object (a sharded pull's worker runs a
    pull per bucket over one store), each through its own view. The store
    itself is switched to the raw keys its views write.
    """
    store.use_state("")
    if inspect.iscoroutinefunction(store.save):
        return _AsyncView(store, name)
    return _SyncView(store, name)
