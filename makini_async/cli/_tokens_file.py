"""Permissions of a tokens file, checked as ssh checks a private key.

A tokens file holds every customer's credentials. Readable by the group or
by others, it is a warning (one line on stderr); writable by others, anyone
on the machine could swap a token for their own and receive the pull, so the
command refuses it (exit 2) unless ``--allow-open-tokens-file`` is given.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from makini_async.cli._args import PROG, CliError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["check_tokens_file"]

#: Permission bits a tokens file should not have: anything for the group or others.
_OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO


def check_tokens_file(path: Path, *, allow_open: bool) -> str | None:
    """Refuse a tokens file others can write; the warning for one others can read.

    Returns the warning line (``None`` for a private file), to be written once
    the rest of the input is known to be good. Does nothing where files have
    no POSIX permissions, or when the file cannot be found (reading it reports
    that).
    """
    if os.name != "posix" or allow_open:
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & _OPEN_BITS:
        return None
    fix = f"chmod 600 {path}"
    if mode & stat.S_IWOTH:
        msg = (
            f"tokens file {path} is writable by others (mode {mode:04o}): anyone on this "
            f"machine could replace a token; run `{fix}`, or pass --allow-open-tokens-file"
        )
        raise CliError(msg)
    who = "others" if mode & stat.S_IRWXO else "its group"
    return (
        f"{PROG}: warning: tokens file {path} is open to {who} (mode {mode:04o}); "
        f"run `{fix}` to keep the tokens private\n"
    )
