"""Which PostgreSQL failures pass by waiting, and which connections they leave unusable.

A sink or checkpoint that meets one of these retries the whole transaction
(see :class:`~makini_async.sinks._disk.DiskRetry`); anything else is the
page's own fault and fails its chain at once.

- The server went away or is not there yet: SQLSTATE class ``08``
  (connection exceptions), ``57P01``-``57P03`` (admin or crash shutdown,
  starting up), a refused or reset socket (``OSError``), a command timeout.
- The transaction lost a race: ``40001`` (serialization failure) and
  ``40P01`` (deadlock).
- The server is short of something: class ``53`` (disk full, out of memory,
  too many connections), class ``58`` (I/O error), ``57014`` (a statement
  cancelled by the server's own timeout).
- The client's connection is in a state it cannot leave
  (``InterfaceError``, ``InternalClientError``: "another operation is in
  progress" after a command was cut short).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from makini_async.errors import UsageError

__all__ = ["asyncpg_module", "breaks_connection", "is_transient"]

_RETRY_STATES: Final = frozenset({"40001", "40P01", "57014", "57P01", "57P02", "57P03", "57P04"})
_RETRY_CLASSES: Final = ("08", "53", "58")


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def _client_side(exc: BaseException) -> bool:
    """An asyncpg client error: the connection object itself is unusable now."""
    import asyncpg  # noqa: PLC0415 - the optional extra, present when this runs

    return isinstance(exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError)


def is_transient(exc: BaseException) -> bool:
    """Whether waiting and trying the transaction again may succeed."""
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return True
    state = _sqlstate(exc)
    if state is not None:
        return state in _RETRY_STATES or state.startswith(_RETRY_CLASSES)
    return _client_side(exc)


def breaks_connection(exc: BaseException) -> bool:
    """Whether the connection must be thrown away, not handed back to the pool."""
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return True
    state = _sqlstate(exc)
    if state is not None:
        return state.startswith(("08", "57P"))
    return _client_side(exc)


def asyncpg_module() -> Any:
    """The asyncpg module, or a :class:`UsageError` naming the extra that brings it."""
    try:
        import asyncpg  # noqa: PLC0415 - an optional extra
    except ImportError:
        msg = "PostgreSQL needs the postgresql extra: pip install 'makini-async[postgresql]'"
        raise UsageError(msg) from None
    return asyncpg
