"""A pull's checkpoint state: its identity, binding the store to it, and a fresh start.

See :mod:`makini_async.checkpoint._identity` for what a state is and when a
checkpoint refuses one.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from typing import TYPE_CHECKING, Any

from makini_async._client import keys as _keys
from makini_async.bulk._sink import Sink, forget
from makini_async.checkpoint import AsyncCheckpointStore, ChainState, CheckpointStore
from makini_async.checkpoint._identity import (
    StateIdentity,
    StateUse,
    bind_state,
    check_state_name,
    default_state_name,
    sink_kind,
    sink_location,
    state_view,
    store_location,
    supports_states,
)
from makini_async.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from makini_async.bulk._chain import Chain, Checkpoints
    from makini_async.entities import Entity

__all__ = ["bind", "checkpoint_of", "identity_of", "start_over", "warn_unclosed"]


def checkpoint_of(sink: Sink | None, checkpoint: Any) -> tuple[Any, bool]:
    """The pull's checkpoint, and whether its sink commits it (then it is the sink's own)."""
    if sink is not None and not isinstance(sink, Sink):
        msg = f"sink must be a Sink (makini_async.sinks), got {type(sink).__name__}"
        raise UsageError(msg)
    sink_store = None if sink is None else sink.checkpoint_store
    if sink is None or sink_store is None:
        return checkpoint, False
    # The sink commits each page with its chain's state: one store, the sink's.
    if checkpoint is not None and checkpoint is not sink_store:
        msg = (
            f"the sink {sink.location} keeps its own checkpoint (committed with "
            "each page); leave checkpoint= out"
        )
        raise UsageError(msg)
    return sink_store, True


def warn_unclosed(source: object, chains: int, store: Any, *, started: bool) -> None:
    """A pull collected unclosed: warn if it held anything, and release what it can."""
    if not (started or store is not None):
        return
    warnings.warn(
        f"unclosed pull of {chains} chains: use 'async with pool.pull(...)', run(), "
        "or await aclose()",
        ResourceWarning,
        stacklevel=3,
        source=source,
    )
    if store is not None and not inspect.iscoroutinefunction(store.close):
        with contextlib.suppress(Exception):  # a collector must not raise
            store.close()  # a store opened from a path: its lock


def identity_of(
    sink: Sink | None,
    checkpoint: object,
    entities: Sequence[Entity],
    *,
    name: str | None,
    since: str | None,
    since_sync_status: bool,
    layout: str | None,
) -> StateIdentity:
    """What a pull's checkpoint state records: its destination, entities, filters, layout."""
    if name is not None:
        check_state_name(name)
        if checkpoint is None:
            msg = "state_name names a state in a checkpoint: give checkpoint= as well"
            raise UsageError(msg)
        opened = isinstance(checkpoint, (CheckpointStore, AsyncCheckpointStore))
        if opened and not supports_states(checkpoint):
            where = sink.location if sink is not None else type(checkpoint).__name__
            msg = (
                f"the checkpoint of {where} keeps no named states (it is kept in the "
                "destination itself); leave state_name out"
            )
            raise UsageError(msg)
    kind = sink_kind(sink)
    location = sink_location(sink, kind)
    return StateIdentity(
        name=name if name is not None else default_state_name(kind, location),
        sink=kind,
        location=location,
        entities=tuple(e.value for e in entities),
        modified_after=since,
        since_sync_status=since_sync_status,
        layout=None if layout is None else str(layout),
    )


async def bind(
    checkpoints: Checkpoints, identity: StateIdentity, chains: Sequence[Chain], *, fresh: bool
) -> StateUse:
    """Bind the pull's store to its state; raises on a state of another destination."""
    store: Any = checkpoints.store
    if supports_states(store):
        use = await bind_state(store, identity, fresh=fresh, chains=_adoptable(chains))
        if checkpoints.sink_commits:
            store.use_state(use.name)  # the sink's own store: it saves with each page
        else:
            checkpoints.store = state_view(store, use.name)
        return use
    return StateUse(
        identity=identity,
        status="destination" if checkpoints.sink_commits else "unnamed",
        checkpoint=store_location(store),
    )


def _adoptable(chains: Sequence[Chain]) -> list[tuple[str, str]]:
    """The keys this pull's chains may have had before states: their names, and the
    former default name of a connection named by default (see ``_keys.recover_legacy``)."""
    pairs = [(c.connection, c.entity.value) for c in chains]
    for chain in chains:
        token = chain.conn.token
        if chain.connection == _keys.name_of(token):
            pairs.append((_keys._legacy_name(token), chain.entity.value))
    return pairs


async def start_over(checkpoints: Checkpoints, sink: Sink | None, chains: Sequence[Chain]) -> None:
    """A fresh start: every chain from its beginning, what it landed dropped where a sink can."""
    store: Any = checkpoints.store
    for chain in chains:
        if sink is not None:
            await forget(sink, chain.connection, chain.entity)
        saved = store.save(chain.connection, chain.entity.value, ChainState())
        if inspect.isawaitable(saved):
            await saved
