"""What every sink does to a record: its JSON shape, its id, and the error for a bad one."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any, Protocol

from makini_async._files import Folder, LinkRefused, is_plain_name
from makini_async.errors import MakiniError, SinkError, UsageError
from makini_async.models import unstructure

if TYPE_CHECKING:
    from pathlib import Path

    from makini_async.entities import Entity

__all__ = ["as_json_dict", "check_folder", "open_no_follow", "record_id", "unwritable"]


def as_json_dict(record: Any) -> dict[str, Any]:
    """The API's JSON shape of a record: a dict as it is, a typed record unstructured."""
    return record if isinstance(record, dict) else unstructure(record)


class PageParts(Protocol):
    """What an error about a page names: a pulled page, or the parts of one kept."""

    @property
    def entity(self) -> Entity: ...
    @property
    def connection(self) -> str: ...
    @property
    def request_id(self) -> str | None: ...


def record_id(record: Any) -> Any:
    return record.get("id") if isinstance(record, dict) else getattr(record, "id", None)


def unwritable(page: PageParts, record: Any, exc: BaseException, *, what: str) -> SinkError:
    """The typed error for a record the sink cannot hold (orjson stops at 254 levels)."""
    reason = exc.message if isinstance(exc, MakiniError) else f"{type(exc).__name__}: {exc}"
    msg = f"cannot write {page.entity.value} record {record_id(record)!r} as {what} ({reason})"
    return SinkError(msg, request_id=page.request_id, connection=page.connection)


def check_folder(folder: str | None) -> None:
    """A sink's ``folder=``: one folder's name under its directory, or :class:`UsageError`."""
    if folder is not None and not is_plain_name(folder):
        msg = f"folder must be one folder's name (no '/', '.' or '..'), got {folder!r}"
        raise UsageError(msg)


def open_no_follow(path: Path, *, append: bool) -> IO[bytes]:
    """Open an output file for writing without following a symbolic link.

    A link planted where an output file goes would otherwise have the pull
    overwrite whatever it points to: :class:`SinkError` instead (see
    :meth:`makini_async._files.Folder.open_file`).
    """
    try:
        folder = Folder.root(path.parent, create=False)
        try:
            return folder.open_file(path.name, append=append)
        finally:
            folder.close()
    except LinkRefused as exc:
        msg = f"output file {exc.strerror}"
        raise SinkError(msg) from None
    except OSError as exc:
        msg = f"cannot open output file {path}: {exc.strerror or exc}"
        raise SinkError(msg) from None
