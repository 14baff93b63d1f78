"""The installation's key for default connection names and checkpoint fingerprints.

A default name (``conn-`` and 16 hex digits) and a checkpoint's token
fingerprint (the key's id and 32 hex digits) are HMAC-SHA256 of the token under a secret key,
so neither can be matched against candidate tokens without the key, and they
differ between installations. Names key checkpoints and output folders, so
the key must stay the same across runs and across the worker processes of
one pull. It comes from, first found:

1. ``MAKINI_ASYNC_KEY``: the key itself (32 characters or more), for pulls
   spread over several machines (set it on each one, e.g. in Ray's
   ``runtime_env``);
2. the key file named by ``MAKINI_ASYNC_KEY_FILE``, else the installation's
   ``$XDG_CONFIG_HOME/makini-async/key`` (``~/.config/makini-async/key``):
   made on first use with 32 random bytes, mode 0600, created with
   ``O_EXCL`` so concurrent processes agree on one key. Worker processes on
   the machine read the same file.

If neither can be had (no home, a read-only one), the process uses a random
key of its own and logs why: default names then hold for this process only,
and fingerprints, which only checkpoints use, raise :class:`CheckpointError`
saying how to give a key, instead of failing later as "another token".

Checkpoints written before keys (``conn-`` and 10 hex digits of an unkeyed
SHA-256, a 16-hex fingerprint) are recognised once and rewritten
(:func:`recover_legacy`); the unkeyed values are computed only to compare,
never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from makini_async.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from makini_async.checkpoint import ChainState

__all__ = [
    "ENV_KEY",
    "ENV_KEY_FILE",
    "Key",
    "check_key",
    "current_key",
    "default_key_file",
    "fingerprint_of",
    "key_id",
    "name_of",
    "recover_legacy",
    "reset",
]

logger = logging.getLogger("makini_async")

#: The key itself, for several machines.
ENV_KEY: Final = "MAKINI_ASYNC_KEY"
#: Where the key file is, if not the installation's default.
ENV_KEY_FILE: Final = "MAKINI_ASYNC_KEY_FILE"
_MIN_KEY: Final = 32
_NAME_HEX: Final = 16
_FINGERPRINT_HEX: Final = 32


@attrs.frozen(repr=False)
class Key:
    """A key and where it came from (``source`` is shown, never ``secret``)."""

    secret: bytes
    source: str
    stable: bool

    def __repr__(self) -> str:
        return f"<Key from {self.source} secret=<redacted>>"


_lock = threading.Lock()
_cached: tuple[tuple[str | None, str | None], Key] | None = None


def default_key_file() -> Path:
    """``$MAKINI_ASYNC_KEY_FILE``, else ``$XDG_CONFIG_HOME/makini-async/key``."""
    given = os.environ.get(ENV_KEY_FILE)
    if given:
        return Path(given).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(config) / "makini-async" / "key"


def current_key() -> Key:
    """The key of this installation (see the module docs), resolved once per setting."""
    global _cached  # noqa: PLW0603 - one key per process, like the environment it comes from
    setting = (os.environ.get(ENV_KEY), os.environ.get(ENV_KEY_FILE))
    with _lock:
        if _cached is not None and _cached[0] == setting:
            return _cached[1]
        key = _resolve(setting[0])
        _cached = (setting, key)
        return key


def reset() -> None:
    """Forget the resolved key (the next use resolves it again)."""
    global _cached  # noqa: PLW0603
    with _lock:
        _cached = None


def _resolve(env_key: str | None) -> Key:
    if env_key is not None:
        if len(env_key.strip()) < _MIN_KEY:
            msg = (
                f"{ENV_KEY} must be at least {_MIN_KEY} characters, e.g. from "
                "python -c 'import secrets; print(secrets.token_hex(32))'"
            )
            raise UsageError(msg)
        return Key(env_key.strip().encode(), ENV_KEY, stable=True)
    try:
        path = default_key_file()
        return Key(_load_or_create(path), str(path), stable=True)
    except (OSError, RuntimeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        logger.warning(
            "no key file for default connection names (%s): they hold for this process "
            "only, and checkpoints need %s or %s",
            reason,
            ENV_KEY,
            ENV_KEY_FILE,
        )
        return Key(secrets.token_bytes(32), "this process", stable=False)


def _load_or_create(path: Path) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        # Appears whole or not at all; a process that lost the race reads the winner's.
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        except OSError:
            # A file system without hard links: create it in place, with
            # O_EXCL so it never replaces a key another process made.
            _create_exclusive(path, temp.read_bytes())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return _read(path)


def _create_exclusive(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as source:
        mode = os.fstat(source.fileno()).st_mode
        data = source.read(4096).strip()
    if not stat.S_ISREG(mode):
        msg = f"the key file {path} is not a regular file"
        raise ValueError(msg)
    if mode & 0o077:
        logger.warning(
            "the key file %s is readable by group or others (mode %o): chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    if len(data) < _MIN_KEY:
        msg = f"the key file {path} holds fewer than {_MIN_KEY} characters"
        raise ValueError(msg)
    return data


def _mac(key: bytes, purpose: bytes, token: str) -> str:
    return hmac.new(key, purpose + b"\0" + token.encode(), hashlib.sha256).hexdigest()


def name_of(token: str) -> str:
    """``conn-`` and 16 hex digits of the keyed hash of ``token``."""
    return "conn-" + _mac(current_key().secret, b"makini-async name", token)[:_NAME_HEX]


def key_id(key: Key) -> str:
    """8 hex digits that tell keys apart and reveal nothing of them."""
    return _mac(key.secret, b"makini-async key id", "")[:8]


def fingerprint_of(token: str) -> str:
    """The key's id, a dot, and 32 hex digits of the keyed hash of ``token``.

    The id lets a checkpoint written under another key be told from one
    written for another token. Raises :class:`CheckpointError` when the
    process has no stable key: a fingerprint made with it would not match at
    the next run.
    """
    key = current_key()
    if not key.stable:
        msg = (
            "checkpoints need a key that outlives the process, to recognise tokens: "
            f"set {ENV_KEY} (32+ characters) or {ENV_KEY_FILE} (a writable path)"
        )
        raise CheckpointError(msg)
    mac = _mac(key.secret, b"makini-async fingerprint", token)[:_FINGERPRINT_HEX]
    return f"{key_id(key)}.{mac}"


def check_key(name: str, fingerprint: str | None) -> None:
    """:class:`CheckpointError` if ``fingerprint`` was made under another key than ours."""
    if fingerprint is None or "." not in fingerprint:
        return
    theirs = fingerprint.partition(".")[0]
    ours = key_id(current_key())
    if not hmac.compare_digest(theirs, ours):
        msg = (
            f"the checkpoint of {name} was written under another installation key "
            f"(key {theirs}; this process has key {ours} from {current_key().source}): "
            f"give every process and machine of a pull the same {ENV_KEY}, or the key "
            "file the checkpoint was written with"
        )
        raise CheckpointError(msg, connection=name)


# -- checkpoints written before keys ------------------------------------------------


def _legacy_name(token: str) -> str:
    return "conn-" + hashlib.sha256(token.encode()).hexdigest()[:10]


def _legacy_fingerprint(token: str) -> str:
    return hashlib.sha256(b"makini-checkpoint\0" + token.encode()).hexdigest()[:16]


async def recover_legacy(
    name: str,
    token: str,
    state: ChainState | None,
    load: Callable[[str], Awaitable[ChainState | None]],
) -> ChainState | None:
    """``state`` (loaded for ``name``), or the state a checkpoint kept before keys.

    A state whose fingerprint is the old unkeyed one of ``token`` comes back
    with the keyed fingerprint. With no state under ``name``, a default name
    looks under the token's old default name; what it finds is returned with
    the keyed fingerprint, and the caller saves it under ``name`` from then
    on. Anything else comes back as it was.
    """
    if state is not None:
        check_key(name, state.fingerprint)
        if state.fingerprint is not None and hmac.compare_digest(
            state.fingerprint, _legacy_fingerprint(token)
        ):
            logger.info("%s: checkpoint fingerprint rewritten with the installation key", name)
            return attrs.evolve(state, fingerprint=fingerprint_of(token))
        return state
    if name != name_of(token):
        return None
    old = await load(_legacy_name(token))
    if old is None or old.fingerprint not in (None, _legacy_fingerprint(token)):
        return None
    logger.warning(
        "%s: resumed from the checkpoint kept under this connection's former default "
        "name (an unkeyed hash of its token); checkpoint and output use %s from now on",
        name,
        name,
    )
    return attrs.evolve(old, fingerprint=fingerprint_of(token))
