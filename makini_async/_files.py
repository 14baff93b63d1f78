"""Every file the library writes goes through here: no link followed, no torn file.

A file is written under a temporary name made with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` in its own folder, flushed to disk, then renamed over its target:
a reader sees the old file or the new one, never half of one, and a link
planted at the temporary name or the target is never written through.

Inside an output folder, work goes through a :class:`Folder`: an open
descriptor of the folder, to which every name is relative. The folder the
user names (the root) is theirs, links included; a folder the library makes
in it (``ENTITY/``, ``unit-NNNNN/``) that turns out to be a link is refused
with :class:`LinkRefused`. Files are opened without following links, only
regular files with one name are appended to or truncated, and removals skip
links. Once a folder is open, swapping it for a link changes nothing: the
descriptor still names the real one.

For other modules: :func:`write_atomic` (a file such as a summary),
:func:`remove_files` (a sweep of a folder the library made), :class:`Folder`
and :class:`FileLock` (an advisory lock held while a writer works).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "FileLock",
    "Folder",
    "LinkRefused",
    "LockHeld",
    "is_plain_name",
    "remove_files",
    "write_atomic",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class LinkRefused(OSError):
    """A folder or file the library makes is a link (symbolic or hard): not followed."""

    def __init__(self, path: Path | str, what: str = "a symbolic link") -> None:
        super().__init__(errno.ELOOP, f"{path} is {what}; refusing to follow it")
        self.path = Path(path)


class LockHeld(OSError):
    """Another writer holds the lock (``holder``: its process id, as it wrote it)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(errno.EWOULDBLOCK, f"{path} is locked by process {holder}")
        self.path = path
        self.holder = holder


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably (``OSError`` on failure).

    ``path``'s folder is the caller's choice (links in it are followed); the
    file itself is never written through a link.
    """
    folder = Folder.root(Path(path).parent, create=False)
    try:
        folder.write_atomic(Path(path).name, data, mode=mode)
    finally:
        folder.close()


def remove_files(root: Path, folder: str, match: Callable[[str], bool]) -> list[str]:
    """Delete the regular files of ``root/folder`` whose names ``match``; their names.

    ``root`` is the user's folder; ``folder`` is one the library made, so a
    link there raises :class:`LinkRefused` and nothing is deleted. Links and
    folders inside are never deleted. A missing folder removes nothing.
    """
    try:
        base = Folder.root(root, create=False)
    except FileNotFoundError:
        return []
    try:
        try:
            sub = base.sub(folder, create=False)
        except FileNotFoundError:
            return []
        try:
            return sub.remove(name for name in sub.names() if match(name))
        finally:
            sub.close()
    finally:
        base.close()


class Folder:
    """An open folder: names inside are created, read, renamed and removed relative to it."""

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def __repr__(self) -> str:
        return f"<Folder {self.path}>"

    @classmethod
    def root(cls, path: Path | str, *, create: bool = True) -> Folder:
        """The user's own folder (links in its path are followed), made if ``create``."""
        path = Path(path)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return cls(os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC), path)

    def sub(self, name: str, *, create: bool = True) -> Folder:
        """A folder the library makes in this one; :class:`LinkRefused` if it is a link."""
        _check_name(name)
        path = self.path / name
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=self.fd)
        try:
            fd = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and self.is_link(name):
                raise LinkRefused(path) from None
            raise
        return Folder(fd, path)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def names(self) -> list[str]:
        return os.listdir(self.fd)

    def is_link(self, name: str) -> bool:
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return stat.S_ISLNK(st.st_mode)

    def read(self, name: str) -> bytes | None:
        """A file's bytes (``None`` if missing); :class:`LinkRefused` for a link."""
        try:
            fd = self._open(name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def open_file(self, name: str, *, append: bool) -> IO[bytes]:
        """Open a file to append to (read-write) or to rewrite (truncated), never a link.

        Only a regular file with one name is opened: a hard link, a FIFO or a
        device planted at ``name`` raises :class:`LinkRefused` before anything
        is truncated.
        """
        fd = self._open(name, os.O_RDWR | os.O_CREAT | (os.O_APPEND if append else 0))
        try:
            if not append:
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "a+b" if append else "wb")

    def write_atomic(self, name: str, data: bytes | memoryview, *, mode: int = 0o644) -> None:
        """Replace ``name`` with ``data``: temporary file (exclusive), fsync, rename, fsync."""
        _check_name(name)
        temp = f".{name}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
        fd = os.open(temp, flags, mode, dir_fd=self.fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=self.fd)
            raise
        self.fsync()

    def remove(self, names: Iterable[str]) -> list[str]:
        """Delete the named regular files (links and folders are left alone); those deleted."""
        removed = []
        for name in names:
            _check_name(name)
            try:
                st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    os.unlink(name, dir_fd=self.fd)
                    removed.append(name)
            except FileNotFoundError:
                continue
        return removed

    def lock(self, name: str) -> FileLock:
        """Take the exclusive advisory lock ``name`` here (:class:`LockHeld` if taken)."""
        return FileLock(self, name)

    def fsync(self) -> None:
        """Make renames and removals in this folder durable (where folders can be synced)."""
        with contextlib.suppress(OSError):
            os.fsync(self.fd)

    def _open(self, name: str, flags: int) -> int:
        _check_name(name)
        path = self.path / name
        try:
            fd = os.open(name, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, 0o644, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK) and self.is_link(name):
                raise LinkRefused(path) from None
            if exc.errno == errno.ENXIO:  # a FIFO without a reader
                raise LinkRefused(path, "not a regular file") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise LinkRefused(path, "not a regular file")
            if st.st_nlink > 1 and flags & (os.O_RDWR | os.O_WRONLY):
                raise LinkRefused(path, f"a hard link ({st.st_nlink} names)")
            if _NONBLOCK:
                os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd


class FileLock:
    """An exclusive ``flock`` on a lock file, held until :meth:`release`.

    Advisory: it keeps out other writers that take it too (another pull, in
    this process or another), and is released by the system when the
    process dies, so a killed writer never leaves a stale lock. The file
    holds the holder's process id, for the error message.
    """

    __slots__ = ("_fd", "path")

    def __init__(self, folder: Folder, name: str) -> None:
        self.path = folder.path / name
        self._fd: int | None = None
        if sys.platform == "win32":  # pragma: no cover - flock is POSIX
            return
        import fcntl  # noqa: PLC0415 - POSIX only

        fd = folder._open(name, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise LockHeld(self.path, holder) from None
        with contextlib.suppress(OSError):  # the holder's id is for messages only
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


def is_plain_name(name: str) -> bool:
    """Whether ``name`` names an entry of a folder (not a path, not ``.`` or ``..``)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def _check_name(name: str) -> None:
    if not is_plain_name(name):
        msg = f"not a plain file name: {name!r}"
        raise ValueError(msg)
