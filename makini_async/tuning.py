"""Opt-in tuning of the process for long pulls (global state: never the default).

A bulk pull allocates many small objects per page (the parsed JSON) that die
young, while the process holds many long-lived ones (imported modules, the
pool, every chain's state, the de-duplication sets). CPython's cyclic garbage
collector runs every 700 net allocations of container objects and, now and
then, walks every long-lived object again: that walk is charged to whatever
allocates, mostly ``orjson.loads``. :func:`quiet_gc` keeps it out of the way::

    with quiet_gc():
        async with pool.pull(...) as pull:
            async for item in pull:
                ...

It freezes what exists now (:func:`gc.freeze`: moved out of the collector's
sight, not freed) and raises the first generation's threshold, then restores
both on exit, nested or not (exit unfreezes everything, also what the
application froze itself). Reference counting still frees the pages as soon
as they are consumed; only cycles wait longer to be collected, and a pull
makes few.

Each page is also a sawtooth of heap memory: the body and the parsed records
are allocated, consumed and freed, and glibc's allocator hands the freed top
of the heap back to the kernel (and big bodies to ``munmap``) only to fault
the same memory in again for the next page, tens of thousands of page faults
a second. :func:`steady_heap` lets the heap keep what a page freed, for the
next page (glibc only; elsewhere it does nothing).

A sink's own thread (DuckDB's commit runs in one) needs the interpreter's
lock back after every step of its work, and beside a busy event loop it
waits up to the switch interval for it each time (5 ms by default): a DuckDB
upsert beside a busy thread ran at 24,700 rows/s, and at 39,400 with 1 ms.
:func:`quick_switch` shortens the interval. :func:`tuned` is all three.

The library never enters them on its own in a process it does not own.
Processes it does own, the ``makini-async`` command and the workers of a
sharded pull, run tuned by default (:func:`owned`; ``--no-tune`` and
``ShardedPull(tune=False)`` turn it off).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import os
import platform
import sys
import threading
from typing import TYPE_CHECKING, Any, Final, TypeVar

from makini_async.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

T = TypeVar("T")

__all__ = ["active", "owned", "quick_switch", "quiet_gc", "run_tuned", "steady_heap", "tuned"]

#: The first generation's threshold while tuned (CPython's default is 700).
DEFAULT_THRESHOLD: Final = 50_000

_lock = threading.Lock()


class _Outermost:
    """Process-wide state that the outermost of nested blocks changes, and restores on exit."""

    def __init__(self) -> None:
        self.depth = 0
        self._restore: Callable[[], None] = lambda: None

    @contextlib.contextmanager
    def block(self, change: Callable[[], Callable[[], None] | None]) -> Iterator[bool]:
        """``change()`` (which returns its undoing) unless an outer block did it already.

        Yields whether the change holds: ``change()`` returning ``None`` refused
        it, and then the block holds nothing and undoes nothing.
        """
        with _lock:
            applied = True
            if self.depth == 0:
                restore = change()
                applied = restore is not None
                if restore is not None:
                    self._restore = restore
            if applied:
                self.depth += 1
        if not applied:
            yield False
            return
        try:
            yield True
        finally:
            with _lock:
                self.depth -= 1
                if self.depth == 0:
                    self._restore()


_collector = _Outermost()
_saved: tuple[int, ...] = ()


@contextlib.contextmanager
def quiet_gc(threshold: int = DEFAULT_THRESHOLD) -> Iterator[None]:
    """Keep the cyclic garbage collector out of a long pull's way, within the block.

    Changes process-wide state (the collector's thresholds and frozen set),
    restored when the outermost block exits; nested blocks change nothing more.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        msg = f"threshold must be a positive int, got {threshold!r}"
        raise UsageError(msg)

    def change() -> Callable[[], None]:
        global _saved  # noqa: PLW0603 - the interpreter's state is global
        _saved = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(threshold, *_saved[1:])

        def restore() -> None:
            gc.set_threshold(*_saved)
            gc.unfreeze()

        return restore

    with _collector.block(change):
        yield


# -- the allocator --------------------------------------------------------------------

#: Freed heap kept for reuse, at most, while tuned (glibc's default: 128 KiB).
DEFAULT_TRIM_THRESHOLD: Final = 64 * 1024 * 1024
#: Blocks below this size come from the heap, not ``mmap`` (glibc's default: 128 KiB).
DEFAULT_MMAP_THRESHOLD: Final = 4 * 1024 * 1024

# mallopt(3) parameters (malloc.h); glibc's documented default for both thresholds.
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_GLIBC_DEFAULT: Final = 128 * 1024
#: mallopt takes a C int.
_MAX_SIZE: Final = 2**31 - 1

_heap = _Outermost()


@functools.cache
def _glibc() -> Any | None:
    """The C library with ``mallopt`` and ``malloc_trim`` typed, when it is glibc (once)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # pragma: no cover - a static or unusual interpreter
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def _configured() -> tuple[int, int]:
    """The thresholds the process was started with: ``(mmap, trim)`` (glibc reads no others).

    From ``GLIBC_TUNABLES`` (``glibc.malloc.mmap_threshold``, ``...trim_threshold``)
    or the older ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``, else
    glibc's default. What the application set with its own ``mallopt`` calls
    cannot be read back.
    """
    found: dict[str, int] = {}
    for item in os.environ.get("GLIBC_TUNABLES", "").split(":"):
        name, _, value = item.partition("=")
        if name in ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold"):
            found.setdefault(name.rsplit(".", 1)[1], _size(value))
    for key in ("mmap_threshold", "trim_threshold"):
        found.setdefault(key, _size(os.environ.get(f"MALLOC_{key.upper()}_", "")))
    return found["mmap_threshold"], found["trim_threshold"]


def _size(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        return _GLIBC_DEFAULT
    return value if 0 < value <= _MAX_SIZE else _GLIBC_DEFAULT


def _size_arg(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_SIZE:
        msg = f"{name} must be a positive int of at most {_MAX_SIZE} bytes, got {value!r}"
        raise UsageError(msg)
    return value


def _set(libc: Any, mmap: int, trim: int, saved: tuple[int, int]) -> bool:
    # mallopt answers 0 when it refuses a value; then nothing of this call stays changed.
    if not libc.mallopt(_M_MMAP_THRESHOLD, mmap):
        return False
    if not libc.mallopt(_M_TRIM_THRESHOLD, trim):
        libc.mallopt(_M_MMAP_THRESHOLD, saved[0])
        return False
    return True


@contextlib.contextmanager
def steady_heap(
    trim_threshold: int = DEFAULT_TRIM_THRESHOLD,
    mmap_threshold: int = DEFAULT_MMAP_THRESHOLD,
) -> Iterator[bool]:
    """Let glibc's heap keep freed memory for the next page, within the block.

    Yields whether it applied: ``True`` on glibc (Linux), ``False`` elsewhere
    (or if glibc refused a value), where it changes nothing. While it applies,
    blocks under ``mmap_threshold`` bytes come from the heap and up to
    ``trim_threshold`` bytes of freed heap stay with the process instead of
    going back to the kernel, so the RSS can stay that much above what is in
    use. Both are at most 2**31 - 1 bytes (``mallopt`` takes a C int).

    On exit of the outermost block the two thresholds return to what the
    process was started with (``GLIBC_TUNABLES`` or ``MALLOC_*_THRESHOLD_``,
    else glibc's 128 KiB) and the kept memory goes back to the kernel
    (``malloc_trim``). Values the application set with its own ``mallopt``
    cannot be read back, and are replaced. glibc's own adjustment of the
    thresholds (it raises them as large blocks are freed) stays off for the
    rest of the process: glibc has no way to turn it back on.
    """
    trim = _size_arg("trim_threshold", trim_threshold)
    mmap = _size_arg("mmap_threshold", mmap_threshold)
    libc = _glibc()
    if libc is None:
        yield False
        return

    def change() -> Callable[[], None] | None:
        saved = _configured()
        if not _set(libc, mmap, trim, saved):
            return None

        def restore() -> None:
            libc.mallopt(_M_MMAP_THRESHOLD, saved[0])
            libc.mallopt(_M_TRIM_THRESHOLD, saved[1])
            libc.malloc_trim(0)

        return restore

    with _heap.block(change) as applied:
        yield applied


#: The interpreter's switch interval while tuned, in seconds (CPython's default is 0.005).
DEFAULT_SWITCH_INTERVAL: Final = 0.001

_switch = _Outermost()


@contextlib.contextmanager
def quick_switch(interval: float = DEFAULT_SWITCH_INTERVAL) -> Iterator[None]:
    """A shorter switch interval (:func:`sys.setswitchinterval`) within the block.

    Process-wide, restored when the outermost block exits; nested blocks
    change nothing more.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        msg = f"interval must be a positive number of seconds, got {interval!r}"
        raise UsageError(msg)

    def change() -> Callable[[], None]:
        saved = sys.getswitchinterval()
        sys.setswitchinterval(interval)
        return lambda: sys.setswitchinterval(saved)

    with _switch.block(change):
        yield


@contextlib.contextmanager
def tuned() -> Iterator[None]:
    """:func:`quiet_gc`, :func:`steady_heap` and :func:`quick_switch` with their defaults."""
    with quiet_gc(), steady_heap(), quick_switch():
        yield


@contextlib.contextmanager
def owned(*, enabled: bool = True) -> Iterator[bool]:
    """:func:`tuned` when ``enabled``, else nothing: for a process the library owns.

    The ``makini-async`` command and a sharded pull's workers run their pull
    inside it. Yields whether tuning is on.
    """
    if not enabled:
        yield False
        return
    with tuned():
        yield True


def active() -> bool:
    """Whether this process runs tuned now, as observed: the collector's threshold raised, its
    long-lived objects frozen (and, on glibc, the heap's thresholds set)."""
    if _collector.depth == 0:  # also: ``_saved`` holds nothing before the first block
        return False
    raised = gc.get_threshold()[0] > _saved[0]
    collector = raised and gc.get_freeze_count() > 0
    return collector and (_heap.depth > 0 or _glibc() is None)


def run_tuned(main: Coroutine[Any, Any, T], *, enabled: bool = True) -> tuple[T, bool]:
    """``asyncio.run(main)`` inside :func:`owned`: for the main of a process the library owns.

    Returns ``main``'s result and whether the process ran tuned, as observed
    at its end (:func:`active`).
    """
    with owned(enabled=enabled):
        result = asyncio.run(main)
        return result, active()
