"""Default names and checkpoint fingerprints are keyed hashes; old checkpoints still resume."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from makini_async import CheckpointError, UsageError
from makini_async._client import keys as _keys
from makini_async.checkpoint import ChainState, SQLiteCheckpoint
from makini_async.connection import default_name, token_fingerprint
from makini_async.sinks import JsonLinesSink
from tests.fakes import Call, page

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN = "tok_live_SECRET_keys_0123456789abcdef"
OTHER_TOKEN = "tok_live_SECRET_keys_other_98765432"
KEY_A = "a" * 40
KEY_B = "b" * 40


def unkeyed(token: str) -> list[str]:
    """Every unkeyed hash of ``token`` the library used to write (and their full digests)."""
    name = hashlib.sha256(token.encode()).hexdigest()
    fingerprint = hashlib.sha256(b"makini-checkpoint\0" + token.encode()).hexdigest()
    return [name[:10], fingerprint[:16]]


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean key setting; the resolved key is forgotten before and after."""
    monkeypatch.delenv(_keys.ENV_KEY, raising=False)
    _keys.reset()
    yield monkeypatch
    _keys.reset()


def test_names_and_fingerprints_depend_on_the_key(key_env: pytest.MonkeyPatch) -> None:
    key_env.setenv(_keys.ENV_KEY, KEY_A)
    name_a, fp_a = default_name(TOKEN), token_fingerprint(TOKEN)
    assert default_name(TOKEN) == name_a  # stable for one key
    key_env.setenv(_keys.ENV_KEY, KEY_B)
    name_b, fp_b = default_name(TOKEN), token_fingerprint(TOKEN)
    assert name_a != name_b
    assert fp_a != fp_b
    assert len(name_a) == len("conn-") + 16
    assert len(fp_a) == 8 + 1 + 32
    for value in (name_a, name_b, fp_a, fp_b):
        assert not any(old in value for old in unkeyed(TOKEN))
    assert default_name(OTHER_TOKEN) != name_b


def test_a_short_key_in_the_environment_is_refused(key_env: pytest.MonkeyPatch) -> None:
    key_env.setenv(_keys.ENV_KEY, "short")
    with pytest.raises(UsageError, match="at least 32"):
        default_name(TOKEN)


def test_the_key_file_is_made_once_private_and_reused(
    key_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "conf" / "makini-async" / "key"
    key_env.setenv(_keys.ENV_KEY_FILE, str(path))
    name = default_name(TOKEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(path.read_text().strip()) == 64
    assert [p.name for p in path.parent.iterdir()] == ["key"]  # no temporary left
    _keys.reset()
    assert default_name(TOKEN) == name


def test_a_file_system_without_hard_links_still_gets_one_private_key(
    key_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_links(src: Any, dst: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    path = tmp_path / "key"
    key_env.setenv(_keys.ENV_KEY_FILE, str(path))
    key_env.setattr(os, "link", no_links)
    name = default_name(TOKEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key"]
    token_fingerprint(TOKEN)  # a stable key: checkpoints work
    _keys.reset()
    assert default_name(TOKEN) == name


def test_worker_processes_started_together_derive_the_same_names(
    key_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Several processes find no key file and race to make it: one key wins for all.
    env = {**os.environ, _keys.ENV_KEY_FILE: str(tmp_path / "key")}
    code = (
        "from makini_async.connection import default_name, token_fingerprint;"
        f"print(default_name({TOKEN!r}), token_fingerprint({TOKEN!r}))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outputs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(outputs) == 1
    key_env.setenv(_keys.ENV_KEY_FILE, str(tmp_path / "key"))
    assert outputs == {f"{default_name(TOKEN)} {token_fingerprint(TOKEN)}"}


def test_without_a_place_for_the_key_names_work_and_checkpoints_say_why_not(
    key_env: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("x" * 64)
    link = tmp_path / "key"
    link.symlink_to(target)  # a planted link is never followed
    key_env.setenv(_keys.ENV_KEY_FILE, str(link))
    name = default_name(TOKEN)
    assert name.startswith("conn-")
    assert "hold for this process only" in caplog.text
    with pytest.raises(CheckpointError, match=_keys.ENV_KEY):
        token_fingerprint(TOKEN)
    assert target.read_text() == "x" * 64


# -- checkpoints written before keys ------------------------------------------------


def _legacy_checkpoint(path: Path, name: str, state: ChainState) -> None:
    store = SQLiteCheckpoint(path)
    store.save(name, "assets", state)
    store.close()


def _legacy_state(**fields: Any) -> ChainState:
    fingerprint = hashlib.sha256(b"makini-checkpoint\0" + TOKEN.encode()).hexdigest()[:16]
    return ChainState(fingerprint=fingerprint, **fields)


@pytest.mark.parametrize("named", [False, True])
async def test_a_checkpoint_written_before_keys_still_resumes(
    key_env: pytest.MonkeyPatch, make_pool: Any, tmp_path: Path, named: bool
) -> None:
    key_env.setenv(_keys.ENV_KEY, KEY_A)
    checkpoint = tmp_path / "cp.sqlite"
    old_name = "conn-" + hashlib.sha256(TOKEN.encode()).hexdigest()[:10]
    _legacy_checkpoint(
        checkpoint, "acme" if named else old_name, _legacy_state(in_progress=True, cursor="200")
    )
    asked: list[str | None] = []

    def handler(call: Call) -> Any:
        asked.append(call.params.get("cursor"))
        return page([{"id": "z"}], None)

    spec: Any = ("acme", TOKEN) if named else TOKEN
    async with make_pool(handler, as_dicts=True) as (pool, _):
        async with pool.pull("assets", [spec], checkpoint=checkpoint) as pull:
            _ = [i async for i in pull]
        assert asked == ["200"]  # resumed where the old checkpoint stood
        (chain,) = pull.report.chains
        assert chain.resumed
        # Rewritten: under the keyed name, with the keyed fingerprint.
        store = SQLiteCheckpoint(checkpoint, lock=False)
        new = store.load("acme" if named else default_name(TOKEN), "assets")
        store.close()
        assert new is not None
        assert new.fingerprint == token_fingerprint(TOKEN)
        assert not new.in_progress
        # A second run is incremental from the rewritten state.
        asked.clear()
        async with pool.pull("assets", [spec], checkpoint=checkpoint) as pull:
            _ = [i async for i in pull]
        assert asked == [None]
        assert not pull.report.chains[0].resumed


async def test_an_old_checkpoint_of_another_token_is_still_refused(
    key_env: pytest.MonkeyPatch, make_pool: Any, tmp_path: Path
) -> None:
    key_env.setenv(_keys.ENV_KEY, KEY_A)
    checkpoint = tmp_path / "cp.sqlite"
    fingerprint = hashlib.sha256(b"makini-checkpoint\0" + OTHER_TOKEN.encode()).hexdigest()[:16]
    _legacy_checkpoint(checkpoint, "acme", ChainState(fingerprint=fingerprint, cursor="5"))
    async with make_pool(lambda call: page([], None), as_dicts=True) as (pool, _):
        async with pool.pull("assets", [("acme", TOKEN)], checkpoint=checkpoint) as pull:
            _ = [i async for i in pull]
    (chain,) = pull.report.chains
    assert "another token" in str(chain.error)


async def test_a_checkpoint_written_under_another_key_says_so(
    key_env: pytest.MonkeyPatch, make_pool: Any, tmp_path: Path
) -> None:
    # Say one machine of a pull had its own key file instead of the shared key.
    key_env.setenv(_keys.ENV_KEY, KEY_B)
    checkpoint = tmp_path / "cp.sqlite"
    theirs = token_fingerprint(TOKEN)
    _legacy_checkpoint(checkpoint, "acme", ChainState(fingerprint=theirs, cursor="5"))
    key_env.setenv(_keys.ENV_KEY, KEY_A)
    async with make_pool(lambda call: page([], None), as_dicts=True) as (pool, _):
        async with pool.pull("assets", [("acme", TOKEN)], checkpoint=checkpoint) as pull:
            _ = [i async for i in pull]
    (chain,) = pull.report.chains
    assert "another installation key" in str(chain.error)
    assert _keys.ENV_KEY in str(chain.error)


async def test_no_unkeyed_hash_of_a_token_is_written(
    key_env: pytest.MonkeyPatch, make_pool: Any, tmp_path: Path
) -> None:
    key_env.setenv(_keys.ENV_KEY_FILE, str(tmp_path / "key"))
    out = tmp_path / "out"

    def handler(call: Call) -> Any:
        return page([{"id": "r1"}, {"id": "r2"}], None)

    async with make_pool(handler, as_dicts=True) as (pool, _):
        sink = JsonLinesSink(out)
        async with pool.pull(
            "assets", [TOKEN, OTHER_TOKEN], checkpoint=tmp_path / "cp.sqlite", sink=sink
        ) as pull:
            await pull.run()
    assert pull.report.ok
    names = [default_name(TOKEN), default_name(OTHER_TOKEN)]
    forbidden = unkeyed(TOKEN) + unkeyed(OTHER_TOKEN)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 3
    everything = ""
    for path in written:
        text = path.read_bytes().decode("latin-1") + str(path.relative_to(tmp_path))
        assert not [f for f in forbidden if f in text], path
        everything += text
    assert all(name in everything for name in names)  # the keyed names are what is written
