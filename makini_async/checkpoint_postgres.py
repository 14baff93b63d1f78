"""Deprecated: import from :mod:`makini_async.checkpoint` instead.

``from makini_async.checkpoint import PostgresCheckpoint, safe_dsn`` is the
path; this module keeps the old one working, with a ``DeprecationWarning``,
for one release.
"""

from __future__ import annotations

import warnings

from makini_async.checkpoint._postgres import (
    DEFAULT_TABLE,
    PostgresCheckpoint,
    check_identifier,
    connect_pool,
    create_table_once,
    postgres_error,
    safe_dsn,
)

__all__ = [
    "DEFAULT_TABLE",
    "PostgresCheckpoint",
    "check_identifier",
    "connect_pool",
    "create_table_once",
    "postgres_error",
    "safe_dsn",
]

warnings.warn(
    "makini_async.checkpoint_postgres is deprecated and will be removed in the next release: "
    "import PostgresCheckpoint and safe_dsn from makini_async.checkpoint",
    DeprecationWarning,
    stacklevel=2,
)
