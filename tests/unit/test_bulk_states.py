"""Named states in the file stores: chains of one state never show in another."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from makini_async.checkpoint import (
    ChainState,
    CheckpointMismatch,
    JSONCheckpoint,
    SQLiteCheckpoint,
    open_checkpoint,
)
from makini_async.checkpoint._identity import (
    StateIdentity,
    StateUse,
    bind_state,
    check_state_name,
)
from makini_async.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

DONE = ChainState(high_water="2024-01-01T00:00:00Z")


@pytest.mark.parametrize("suffix", [".sqlite", ".json"])
def test_states_keep_their_own_chains(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cp{suffix}"
    store = open_checkpoint(path)
    assert isinstance(store, (SQLiteCheckpoint, JSONCheckpoint))
    store.save("old", "assets", DONE)  # no state named yet: the format before states
    store.write_identity("a", {"sink": "jsonl", "location": "/a"})
    store.write_identity("b", {"sink": "jsonl", "location": "/b"})
    assert store.adopt_legacy("a", [("old", "assets"), ("missing", "assets")]) == 1
    store.use_state("a")
    store.save("acme", "assets", DONE)
    assert store.load("old", "assets") == DONE
    store.use_state("b")
    assert store.load("acme", "assets") is None
    assert store.load("old", "assets") is None
    store.save("acme", "vendors", DONE)
    assert [(c, e) for c, e, _ in store.items()] == [("acme", "vendors")]
    store.drop_state("a")
    store.use_state("a")
    assert list(store.items()) == []
    assert store.read_identity("b") == {"sink": "jsonl", "location": "/b"}
    store.close()
    # Opened again without naming one: two states, so only the chains from before states.
    again = open_checkpoint(path)
    assert list(again.items()) == []  # type: ignore[union-attr]
    again.close()


@pytest.mark.parametrize("suffix", [".sqlite", ".json"])
def test_a_store_with_one_state_reads_it_unnamed(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cp{suffix}"
    store = open_checkpoint(path)
    store.write_identity("only", {"sink": "jsonl", "location": "/x"})  # type: ignore[union-attr]
    store.use_state("only")  # type: ignore[union-attr]
    store.save("acme", "assets", DONE)
    store.close()
    again = open_checkpoint(path)
    assert again.load("acme", "assets") == DONE
    again.close()


def test_state_names_and_descriptions() -> None:
    for bad in ("", "   ", "a\nb", "x" * 301, 5):
        with pytest.raises(UsageError):
            check_state_name(bad)
    assert check_state_name("nightly backfill") == "nightly backfill"
    a = StateIdentity(name="n", sink="jsonl", location="/a", entities=("assets",))
    b = StateIdentity(name="n", sink="jsonl", location="/b")
    assert a.conflicts(b)
    assert not a.conflicts(StateIdentity(name="n", sink="jsonl", location="/a", modified_after="x"))
    assert a.conflicts(StateIdentity(name="n", sink="jsonl", location="/a", layout="b8"))
    assert StateIdentity.from_json("n", a.to_json()) == a
    assert StateIdentity.from_json("n", {"sink": "jsonl"}) is None
    pg = StateIdentity(name="n", sink="postgresql", location="postgresql://u@h/db tables makini_*")
    assert pg.destination == "postgresql://u@h/db tables makini_*"
    use = StateUse(identity=b, status="fresh", checkpoint="cp.sqlite", replaced=a)
    assert use.describe() == (
        "state 'n' (fresh) in cp.sqlite, replacing one for jsonl:/a, for jsonl:/b"
    )
    assert use.to_json()["replaced"] == "jsonl:/a"


async def test_an_unreadable_identity_is_refused_unless_fresh(tmp_path: Path) -> None:
    store = SQLiteCheckpoint(tmp_path / "cp.sqlite")
    store.write_identity("x", {"no": "sink"})
    store.use_state("x")
    store.save("acme", "assets", DONE)
    wanted = StateIdentity(name="x", sink="jsonl", location="/a")
    with pytest.raises(CheckpointMismatch, match="unreadable"):
        await bind_state(store, wanted, fresh=False, chains=[])
    use = await bind_state(store, wanted, fresh=True, chains=[])
    assert use.status == "fresh"
    assert store.load("acme", "assets") is None
    assert store.read_identity("x") == wanted.to_json()
    store.close()
