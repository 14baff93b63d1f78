"""Paths that moved keep working for one release, with a DeprecationWarning; reprs stay honest."""

from __future__ import annotations

import importlib
import sys

import pytest

from makini_async import checkpoint
from makini_async.bulk import ChainReport
from makini_async.bulk._chain import Chain
from makini_async.entities import Entity


def test_checkpoint_postgres_still_imports_with_a_deprecation_warning() -> None:
    sys.modules.pop("makini_async.checkpoint_postgres", None)
    with pytest.warns(DeprecationWarning, match="import PostgresCheckpoint and safe_dsn from"):
        old = importlib.import_module("makini_async.checkpoint_postgres")
    assert old.PostgresCheckpoint is checkpoint.PostgresCheckpoint
    assert old.safe_dsn is checkpoint.safe_dsn
    assert checkpoint.safe_dsn("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_a_pulls_chain_prints_as_the_report_users_see_and_nothing_more() -> None:
    chain = Chain(connection="acme", entity=Entity.ASSETS, conn="internal-handle", records=3)
    report = ChainReport(connection="acme", entity=Entity.ASSETS, records=3)
    assert repr(chain) == repr(report)
    assert repr(chain).startswith("ChainReport(connection='acme'")
    assert "internal-handle" not in repr(chain)
    assert Chain.__qualname__ == "Chain"  # the class keeps its own name
