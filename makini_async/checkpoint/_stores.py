"""The chain state, the store protocols, the run lock, and the JSON store."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import orjson

from makini_async._files import write_atomic
from makini_async.checkpoint._identity import SEPARATOR
from makini_async.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "AsyncCheckpointStore",
    "ChainState",
    "CheckpointStore",
    "JSONCheckpoint",
]


@attrs.frozen(kw_only=True)
class ChainState:
    """Where one (connection, entity) chain stands.

    ``in_progress`` with ``cursor=None`` means a run began but no page was
    handed over yet. ``run_modified_after`` is the filter of that run.
    ``high_water`` is the ``modified_after`` for the next incremental run,
    set when a run completes. ``fingerprint`` identifies the token the state
    was written for (a one-way hash, never the token), so a checkpoint is
    never applied to another customer's connection that took the same name.
    ``page_size`` is the page size the chain had learnt (see the page-size
    rules in the README), so a resumed run starts from it. ``run_newest`` is
    the newest ``updated_at`` the run in progress has landed: the next
    ``high_water`` (less the overlap) once it completes.
    """

    in_progress: bool = False
    cursor: str | None = None
    run_modified_after: str | None = None
    run_started_at: str | None = None
    high_water: str | None = None
    records: int = 0
    fingerprint: str | None = None
    page_size: int | None = None
    run_newest: str | None = None


@runtime_checkable
class CheckpointStore(Protocol):
    """What a bulk pull needs from a checkpoint store (all calls are quick)."""

    def load(self, connection: str, entity: str) -> ChainState | None:
        """The saved state of a chain, or ``None``."""
        ...

    def save(self, connection: str, entity: str, state: ChainState) -> None:
        """Record a chain's state (durably, or at the next flush)."""
        ...

    def flush(self) -> None:
        """Make every saved state durable."""
        ...

    def close(self) -> None:
        """Flush and release the store."""
        ...


@runtime_checkable
class AsyncCheckpointStore(Protocol):
    """A checkpoint store whose calls are coroutines (a database over a network).

    ``open`` is awaited before the pull's first ``load``; the pull tells the
    two kinds apart by whether ``save`` is a coroutine function.
    """

    async def open(self) -> None:
        """Connect (idempotent)."""
        ...

    async def load(self, connection: str, entity: str) -> ChainState | None:
        """The saved state of a chain, or ``None``."""
        ...

    async def save(self, connection: str, entity: str, state: ChainState) -> None:
        """Record a chain's state durably."""
        ...

    async def flush(self) -> None:
        """Make every saved state durable."""
        ...

    async def close(self) -> None:
        """Flush and release the store."""
        ...


def state_to_json(state: ChainState) -> dict[str, Any]:
    """A state as the JSON object every store writes."""
    return attrs.asdict(state)


def state_from_json(data: Any) -> ChainState | None:
    """The state a store wrote, or ``None`` for anything unreadable."""
    return _state_from_json(data)


def _state_to_json(state: ChainState) -> dict[str, Any]:
    return attrs.asdict(state)


def _state_from_json(data: Any) -> ChainState | None:
    if not isinstance(data, dict):
        return None
    fields = {f.name for f in attrs.fields(ChainState)}
    try:
        return ChainState(**{k: v for k, v in data.items() if k in fields})
    except TypeError:
        return None


def _loads(raw: str | bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _unkey(scope: str, key: str) -> str | None:
    """The connection a stored key names in state ``scope`` ("": before states), or ``None``."""
    if not scope:
        return None if SEPARATOR in key else key
    prefix = f"{scope}{SEPARATOR}"
    return key[len(prefix) :] if key.startswith(prefix) else None


class _RunLock:
    """An exclusive ``flock`` on ``PATH.lock`` for as long as a store is open."""

    __slots__ = ("_fd",)

    def __init__(self, path: Path) -> None:
        self._fd: int | None = None
        if sys.platform == "win32":  # pragma: no cover - flock is POSIX
            return
        import fcntl  # noqa: PLC0415 - POSIX only

        lock_path = path.with_name(path.name + ".lock")
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(lock_path, flags, 0o600)
        except OSError as exc:
            msg = f"cannot lock checkpoint {path}: {exc.strerror or exc}"
            raise CheckpointError(msg) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            msg = (
                f"checkpoint {path} is in use by another run (process {holder}); "
                "wait for it to end, or use another checkpoint"
            )
            raise CheckpointError(msg) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def _prepare(path: Path, *, lock: bool) -> _RunLock | None:
    """Make the checkpoint's folder and, for a run that owns it, take its lock."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot open checkpoint {path}: {exc}"
        raise UsageError(msg) from None
    return _RunLock(path) if lock else None


class JSONCheckpoint:
    """A checkpoint in one JSON file, replaced atomically."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flush_interval: float = 1.0,
        lock: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._interval = flush_interval
        self._clock = clock
        self._dirty = False
        self._last_flush = clock()
        self._data: dict[str, dict[str, Any]] = {}
        self._states: dict[str, Any] = {}
        self._state: str | None = None
        self._lock = _prepare(self.path, lock=lock)
        try:
            if self.path.exists():
                raw = orjson.loads(self.path.read_bytes())
                if isinstance(raw, dict) and isinstance(raw.get("chains"), dict):
                    self._data = raw["chains"]
                if isinstance(raw, dict) and isinstance(raw.get("states"), dict):
                    self._states = raw["states"]
        except (OSError, orjson.JSONDecodeError) as exc:
            self._release()
            msg = f"cannot read checkpoint {self.path}: {exc}"
            raise UsageError(msg) from None

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def location(self) -> str:
        return str(self.path)

    # -- named states (see makini_async.checkpoint._identity) ------------------------

    def use_state(self, name: str) -> None:
        """Read and write the chains of state ``name`` from now on."""
        self._state = name

    def _scope(self) -> str:
        # Not told which state: the only one there is, else the chains from before states.
        if self._state is None:
            self._state = next(iter(self._states)) if len(self._states) == 1 else ""
        return self._state

    def read_identity(self, name: str) -> Any:
        return self._states.get(name)

    def write_identity(self, name: str, data: dict[str, Any]) -> None:
        self._states[name] = data
        self._dirty = True
        self.flush()

    def adopt_legacy(self, name: str, chains: list[tuple[str, str]]) -> int:
        """Move these chains, written before states, under ``name``; how many moved."""
        moved = 0
        for connection, entity in chains:
            old = f"{entity}\t{connection}"
            new = f"{entity}\t{name}{SEPARATOR}{connection}"
            if old in self._data and new not in self._data:
                self._data[new] = self._data.pop(old)
                moved += 1
        self._dirty = self._dirty or moved > 0
        return moved

    def drop_state(self, name: str) -> None:
        """Forget every chain of state ``name``."""
        prefix = f"{name}{SEPARATOR}"
        for key in [k for k in self._data if k.partition("\t")[2].startswith(prefix)]:
            del self._data[key]
            self._dirty = True

    def _key(self, connection: str, entity: str) -> str:
        scope = self._scope()
        return f"{entity}\t{scope}{SEPARATOR}{connection}" if scope else f"{entity}\t{connection}"

    def load(self, connection: str, entity: str) -> ChainState | None:
        return _state_from_json(self._data.get(self._key(connection, entity)))

    def save(self, connection: str, entity: str, state: ChainState) -> None:
        self._data[self._key(connection, entity)] = _state_to_json(state)
        self._dirty = True
        if self._clock() - self._last_flush >= self._interval:
            self.flush()

    def items(self) -> Iterator[tuple[str, str, ChainState]]:
        """Every chain of the state in use: ``(connection, entity, state)``."""
        scope = self._scope()
        for key, raw in sorted(self._data.items()):
            entity, stored = key.split("\t", 1)
            connection = _unkey(scope, stored)
            state = None if connection is None else _state_from_json(raw)
            if connection is not None and state is not None:
                yield connection, entity, state

    def flush(self) -> None:
        self._last_flush = self._clock()
        if not self._dirty:
            return
        payload = orjson.dumps({"version": 2, "states": self._states, "chains": self._data})
        try:
            # An exclusive temporary file beside it, fsynced, renamed: never through a link.
            write_atomic(self.path, payload, mode=0o600)
        except OSError as exc:
            msg = f"cannot write checkpoint {self.path}: {exc}"
            raise CheckpointError(msg) from None
        self._dirty = False

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._release()
