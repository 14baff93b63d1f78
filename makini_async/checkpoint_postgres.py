"""The PostgreSQL checkpoint store (the ``postgresql`` extra).

See :mod:`makini_async.checkpoint`; the store lives there.
"""

from __future__ import annotations

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
