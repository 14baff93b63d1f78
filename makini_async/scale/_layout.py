"""A directory sink's folders: one per bucket, the bucket count recorded, no link followed.

``DIR/bucket-NNNNN/`` holds the files of the connections that hash into
bucket ``NNNNN``; ``DIR/_layout.json`` records how many buckets there are,
so that a later pull into ``DIR`` places every connection where its history
already is (a pull asking for another count is refused). The folders are the
library's own: one that is a link is refused, never written or swept through.
"""

from __future__ import annotations

import os
import re
import stat
from typing import TYPE_CHECKING, Final

import orjson

from makini_async._files import LinkRefused, remove_files, write_atomic
from makini_async.errors import UsageError
from makini_async.scale._units import DEFAULT_BUCKETS, MAX_BUCKETS

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["LAYOUT", "layout_name", "prepare", "resolve_buckets"]

LAYOUT: Final = "_layout.json"
_BUCKET: Final = re.compile(r"^bucket-(\d{5})$")
#: Folders of the layout before buckets: connections placed by their position in the list.
_LEGACY: Final = re.compile(r"^unit-\d{5}$")
_HASH: Final = "blake2b"


def layout_name(buckets: int) -> str:
    """The layout as one string: how connections are placed, for a checkpoint's identity."""
    return f"{_HASH}-buckets:{buckets}"


def check_buckets(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BUCKETS:
        msg = f"buckets must be an integer from 1 to {MAX_BUCKETS}, got {value!r}"
        raise UsageError(msg)
    return value


def _recorded(root: Path) -> int | None:
    path = root / LAYOUT
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path} is not a regular file (a link?); remove it")
    try:
        data = orjson.loads(path.read_bytes())
        buckets = data["buckets"]
        ok = data.get("hash") == _HASH and check_buckets(buckets) == buckets
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError, UsageError):
        ok = False
    if not ok:
        msg = f"{path} is not a layout this version writes; remove it or use a new folder"
        raise UsageError(msg)
    return int(buckets)


def resolve_buckets(root: Path | None, requested: int | None) -> int:
    """The bucket count: the one ``root`` records, else ``requested``, else the default.

    A ``requested`` count that differs from the recorded one is refused: the
    connections would move to other folders and their history would be pulled
    again beside the old copy.
    """
    if requested is not None:
        check_buckets(requested)
    recorded = None if root is None else _recorded(root)
    if recorded is None:
        return DEFAULT_BUCKETS if requested is None else requested
    if requested is not None and requested != recorded:
        msg = (
            f"{root} was written with buckets={recorded}, not {requested}: connections would "
            f"move to other folders and be pulled again; leave buckets= out (or pass "
            f"{recorded}), or pull into a new folder"
        )
        raise UsageError(msg)
    return recorded


def prepare(root: Path, buckets: int, *, keep: frozenset[int] | None) -> None:
    """Before a run: refuse links and an older layout, record the layout, sweep stale buckets.

    With ``keep`` (a JSON Lines pull without a checkpoint: every bucket starts
    afresh), the ``*.jsonl`` of every bucket folder not in ``keep`` are
    deleted: they hold connections no longer pulled, whose records a reader
    of ``DIR/bucket-*/`` would otherwise still count.
    """
    root.mkdir(parents=True, exist_ok=True)
    recorded = _recorded(root)
    resolve_buckets(root, buckets)
    root_fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        stale = []
        with os.scandir(root_fd) as entries:
            for entry in entries:
                if recorded is None and _LEGACY.match(entry.name):
                    msg = (
                        f"{root} holds {entry.name}/ of an earlier layout (connections placed "
                        "by position): a pull into it would land their history twice; move "
                        "the unit-* folders away or pull into a new folder"
                    )
                    raise UsageError(msg)
                match = _BUCKET.match(entry.name)
                if match is None:
                    continue
                if entry.is_symlink():
                    raise UsageError(_linked(root / entry.name))
                if recorded is None:
                    msg = (
                        f"{root} holds bucket folders but no {LAYOUT}: the bucket count that "
                        "placed them is unknown; restore the file or pull into a new folder"
                    )
                    raise UsageError(msg)
                if keep is not None and int(match[1]) not in keep:
                    stale.append(entry.name)
        _sweep(root, stale)
    finally:
        os.close(root_fd)
    if recorded is None:
        payload = {"hash": _HASH, "buckets": buckets, "layout": layout_name(buckets)}
        write_atomic(root / LAYOUT, orjson.dumps(payload) + b"\n")


def _linked(path: Path) -> str:
    return (
        f"{path} is a link or not a folder: a sharded pull writes only into bucket folders "
        "it made itself; remove it"
    )


def _sweep(root: Path, buckets: list[str]) -> None:
    """Delete the ``*.jsonl`` of these bucket folders; a folder that is a link is refused."""
    name = ""
    try:
        for name in buckets:
            remove_files(root, name, _is_jsonl)
    except LinkRefused as exc:
        raise UsageError(f"{_linked(root / name)} ({exc})") from None


def _is_jsonl(name: str) -> bool:
    return name.endswith(".jsonl")
