"""The SQLite checkpoint commits its saves in groups: fewer transactions, nothing lost on flush."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from makini_async.checkpoint import ChainState, SQLiteCheckpoint


def committed(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM chains").fetchone()[0])
    finally:
        db.close()


def test_saves_commit_in_groups_of_pages_and_on_flush(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    store = SQLiteCheckpoint(path, group_pages=5, group_seconds=3600)
    try:
        for i in range(4):
            store.save(f"plant-{i}", "assets", ChainState(in_progress=True, cursor=f"c{i}"))
        assert committed(path) == 0  # pending: not yet a transaction
        # A pending save is what the store reads back.
        loaded = store.load("plant-3", "assets")
        assert loaded is not None
        assert loaded.cursor == "c3"
        store.save("plant-4", "assets", ChainState(in_progress=True, cursor="c4"))
        assert committed(path) == 5  # the fifth save committed the group
        store.save("plant-5", "assets", ChainState(cursor="c5"))
        store.flush()
        assert committed(path) == 6
    finally:
        store.close()


def test_a_group_commits_after_its_time_and_on_close(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    store = SQLiteCheckpoint(path, group_pages=1000, group_seconds=0.0)
    store.save("a", "assets", ChainState(cursor="x"))
    assert committed(path) == 1  # no wait configured: every save commits
    store.close()
    store = SQLiteCheckpoint(path, group_pages=1000, group_seconds=3600)
    store.save("b", "assets", ChainState(cursor="y"))
    store.save("a", "assets", ChainState(cursor="z"))
    assert committed(path) == 1
    store.close()
    reopened = SQLiteCheckpoint(path)
    try:
        assert {(c, s.cursor) for c, _, s in reopened.items()} == {("a", "z"), ("b", "y")}
    finally:
        reopened.close()
