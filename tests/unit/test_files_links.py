"""Links planted in an output folder: nothing is written, truncated or deleted through one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from makini_async import SinkError, UsageError
from makini_async._files import Folder, LinkRefused, remove_files, write_atomic
from makini_async._invalid import InvalidRecord
from makini_async.bulk import PulledPage
from makini_async.checkpoint import ChainState, JSONCheckpoint
from makini_async.entities import Entity
from makini_async.scale._worker import unit_sink
from makini_async.sinks import JsonLinesSink, ParquetSink
from makini_async.testing import MockMakini

DATA = MockMakini(records_per_entity=20)


def _page(connection: str = "site-a", n: int = 20, cursor: str | None = "c1") -> PulledPage[Any]:
    records = DATA.records(f"tok-{connection}", "assets")[:n]
    return PulledPage(connection, Entity.ASSETS, records, None, cursor, "req-1")


def _victim(tmp_path: Path, name: str = "precious.txt", text: str = "keep me\n") -> Path:
    victim = tmp_path / "elsewhere" / name
    victim.parent.mkdir(exist_ok=True)
    victim.write_text(text)
    return victim


async def _fill(sink: ParquetSink) -> None:
    await sink.open([Entity.ASSETS])
    await sink.write(_page(), ChainState(in_progress=True, cursor="c1"))
    await sink.close()


async def test_a_link_at_the_parquet_temporary_file_is_never_written_through(
    tmp_path: Path,
) -> None:
    victim = _victim(tmp_path)
    folder = tmp_path / "pq" / "assets"
    folder.mkdir(parents=True)
    # Where the part file and the manifest were first written, under fixed names.
    (folder / ".part-000001.parquet.tmp").symlink_to(victim)
    (folder / "._manifest.json.tmp").symlink_to(victim)
    await _fill(ParquetSink(tmp_path / "pq"))
    assert victim.read_text() == "keep me\n"
    assert pq.read_table(folder).num_rows == 20


async def test_a_linked_entity_folder_is_refused_and_nothing_in_it_deleted(
    tmp_path: Path,
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    for name in ("notes.tmp", "part-000009.parquet"):
        (target / name).write_text("keep me")
    (tmp_path / "pq").mkdir()
    (tmp_path / "pq" / "assets").symlink_to(target, target_is_directory=True)
    sink = ParquetSink(tmp_path / "pq")
    with pytest.raises(SinkError, match=r"assets is a symbolic link; refusing to follow it"):
        await sink.open([Entity.ASSETS])
    await sink.close()
    assert sorted(p.name for p in target.iterdir()) == ["notes.tmp", "part-000009.parquet"]


async def test_a_root_that_is_a_link_is_the_users_choice(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "data").symlink_to(real, target_is_directory=True)
    await _fill(ParquetSink(tmp_path / "data"))
    assert pq.read_table(real / "assets").num_rows == 20
    sink = JsonLinesSink(tmp_path / "data")
    await sink.open([Entity.ASSETS])
    await sink.write(_page(), None)
    await sink.close()
    assert len((real / "assets.jsonl").read_bytes().splitlines()) == 20


@pytest.mark.parametrize("append", [True, False])
async def test_a_linked_unit_folder_is_refused_and_its_target_kept(
    tmp_path: Path, append: bool
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    victim = target / "assets.jsonl"
    victim.write_bytes(b'{"id": 1}\n{"id": 2, "half')  # a "partial" line a repair would cut
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "bucket-00000").symlink_to(target, target_is_directory=True)
    sink = unit_sink(f"jsonl:{tmp_path / 'out'}", 0, append=append)
    with pytest.raises(SinkError, match=r"bucket-00000 is a symbolic link"):
        await sink.open([Entity.ASSETS])
    await sink.close()
    assert victim.read_bytes() == b'{"id": 1}\n{"id": 2, "half'


async def test_a_linked_parquet_unit_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "assets").mkdir()
    (target / "assets" / "part-000001.parquet").write_text("keep me")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "bucket-00003").symlink_to(target, target_is_directory=True)
    sink = unit_sink(f"parquet:{tmp_path / 'out'}", 3, append=True)
    with pytest.raises(SinkError, match=r"bucket-00003 is a symbolic link"):
        await sink.open([Entity.ASSETS])
    assert (target / "assets" / "part-000001.parquet").read_text() == "keep me"


@pytest.mark.parametrize("name", ["assets.jsonl", "assets.invalid.jsonl"])
@pytest.mark.parametrize("append", [True, False])
async def test_a_hard_link_at_a_json_lines_file_is_never_truncated(
    tmp_path: Path, name: str, append: bool
) -> None:
    victim = _victim(tmp_path, text='{"id": 1}\n{"half')
    out = tmp_path / "out"
    out.mkdir()
    os.link(victim, out / name)  # a symbolic link is refused by O_NOFOLLOW; a hard one is not
    sink = JsonLinesSink(out, append=append)
    bad = InvalidRecord(entity=Entity.ASSETS, data={"id": "x"}, field="name", reason="bad")
    with pytest.raises(SinkError, match="hard link"):
        await sink.open([Entity.ASSETS])  # the records' file
        # The invalid records' file, opened with the first one.
        await sink.write(PulledPage("site-a", Entity.ASSETS, [], None, None, "r", (bad,)), None)
    await sink.close()
    assert victim.read_text() == '{"id": 1}\n{"half'


async def test_a_fifo_at_a_json_lines_file_is_refused_not_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "assets.jsonl")
    sink = JsonLinesSink(out, append=True)
    with pytest.raises(SinkError, match="not a regular file"):
        await sink.open([Entity.ASSETS])
    await sink.close()


async def test_a_linked_manifest_is_refused_not_read(tmp_path: Path) -> None:
    victim = _victim(tmp_path, text='{"files": [], "chains": {}}')
    folder = tmp_path / "pq" / "assets"
    folder.mkdir(parents=True)
    (folder / "_manifest.json").symlink_to(victim)
    sink = ParquetSink(tmp_path / "pq")
    with pytest.raises(SinkError, match=r"_manifest\.json is a symbolic link"):
        await sink.open([Entity.ASSETS])
    await sink.close()
    assert victim.read_text() == '{"files": [], "chains": {}}'


def test_the_json_checkpoint_replaces_a_link_never_its_target(tmp_path: Path) -> None:
    victim = _victim(tmp_path, text='{"version": 1, "chains": {}}')
    path = tmp_path / "state.json"
    path.symlink_to(victim)
    store = JSONCheckpoint(path, lock=False)
    store.save("site-a", "assets", ChainState(in_progress=True, cursor="c1"))
    store.close()
    assert victim.read_text() == '{"version": 1, "chains": {}}'
    assert not path.is_symlink()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert JSONCheckpoint(path, lock=False).load("site-a", "assets") == ChainState(
        in_progress=True, cursor="c1"
    )


def test_write_atomic_replaces_a_link_never_its_target(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    (tmp_path / ".summary.json").symlink_to(victim)
    write_atomic(tmp_path / ".summary.json", b"{}")
    assert victim.read_text() == "keep me\n"
    assert (tmp_path / ".summary.json").read_bytes() == b"{}"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_remove_files_never_deletes_through_a_linked_folder(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "assets.jsonl").write_text("keep me")
    out = tmp_path / "out"
    (out / "unit-00001").mkdir(parents=True)
    (out / "unit-00001" / "assets.jsonl").write_text("old")
    (out / "unit-00001" / "keep.txt").write_text("other")
    (out / "unit-00001" / "link.jsonl").symlink_to(target / "assets.jsonl")
    (out / "unit-00007").symlink_to(target, target_is_directory=True)

    def jsonl(name: str) -> bool:
        return name.endswith(".jsonl")

    with pytest.raises(LinkRefused, match="unit-00007 is a symbolic link"):
        remove_files(out, "unit-00007", jsonl)
    assert (target / "assets.jsonl").read_text() == "keep me"
    assert remove_files(out, "unit-00001", jsonl) == ["assets.jsonl"]
    assert sorted(p.name for p in (out / "unit-00001").iterdir()) == ["keep.txt", "link.jsonl"]
    assert (target / "assets.jsonl").read_text() == "keep me"
    assert remove_files(out, "unit-00002", jsonl) == []
    assert remove_files(tmp_path / "missing", "unit-00001", jsonl) == []


def test_a_folder_swapped_for_a_link_after_opening_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    root = Folder.root(tmp_path / "out")
    sub = root.sub("assets")
    (tmp_path / "out" / "assets").rename(tmp_path / "out" / "moved")
    (tmp_path / "out" / "assets").symlink_to(target, target_is_directory=True)
    sub.write_atomic("x.bin", b"data")
    sub.close()
    root.close()
    assert list(target.iterdir()) == []
    assert (tmp_path / "out" / "moved" / "x.bin").read_bytes() == b"data"
    root = Folder.root(tmp_path)
    with pytest.raises(ValueError, match="plain file name"):
        root.sub("../x")
    root.close()


@pytest.mark.parametrize("folder", ["..", ".", "a/b", "", "x\0y"])
def test_a_sink_folder_is_one_name_under_its_directory(tmp_path: Path, folder: str) -> None:
    with pytest.raises(UsageError, match="one folder's name"):
        ParquetSink(tmp_path, folder=folder)
    with pytest.raises(UsageError, match="one folder's name"):
        JsonLinesSink(tmp_path, folder=folder)
