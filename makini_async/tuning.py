"""Opt-in tuning of the interpreter for long pulls (global state: never the default).

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
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import TYPE_CHECKING, Final

from makini_async.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["quiet_gc"]

#: The first generation's threshold while tuned (CPython's default is 700).
DEFAULT_THRESHOLD: Final = 50_000

_lock = threading.Lock()
_depth = 0
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
    global _depth, _saved  # noqa: PLW0603 - the interpreter's state is global
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(threshold, *_saved[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
