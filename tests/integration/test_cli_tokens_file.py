"""``pull --tokens-file``: a file others can read is warned about, one others can write refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from makini_async.testing import MockMakini

from .test_cli import NAMES, RECORDS, assert_no_tokens, run_cli, write_tokens

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
async def server() -> AsyncIterator[MockMakini]:
    async with MockMakini(records_per_entity=RECORDS) as srv:
        yield srv


async def _pull(server: MockMakini, tmp_path: Path, mode: int, *extra: str) -> tuple[int, str]:
    tokens = write_tokens(tmp_path / "tokens.txt")
    tokens.chmod(mode)
    code, stdout, stderr = await run_cli(
        "pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url", server.url,
        "--out", str(tmp_path / "out"), *extra,
    )  # fmt: skip
    assert_no_tokens(stdout, stderr)
    assert "Traceback" not in stderr
    return code, stderr


async def test_a_private_tokens_file_passes_silently(server: MockMakini, tmp_path: Path) -> None:
    code, stderr = await _pull(server, tmp_path, 0o600)
    assert code == 0, stderr
    assert "warning" not in stderr
    assert (
        len((tmp_path / "out" / "assets.jsonl").read_bytes().splitlines()) == len(NAMES) * RECORDS
    )


@pytest.mark.parametrize(("mode", "who"), [(0o640, "its group"), (0o644, "others")])
async def test_a_tokens_file_others_can_read_is_warned_about(
    server: MockMakini, tmp_path: Path, mode: int, who: str
) -> None:
    code, stderr = await _pull(server, tmp_path, mode)
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if "warning: tokens file" in line]
    assert len(warnings) == 1
    assert f"open to {who} (mode {mode:04o})" in warnings[0]
    assert "chmod 600" in warnings[0]


@pytest.mark.parametrize("mode", [0o666, 0o602])
async def test_a_tokens_file_others_can_write_is_refused(
    server: MockMakini, tmp_path: Path, mode: int
) -> None:
    code, stderr = await _pull(server, tmp_path, mode)
    assert code == 2
    path = tmp_path / "tokens.txt"
    expected = (
        f"makini-async: error: tokens file {path} is writable by others (mode {mode:04o}): "
        f"anyone on this machine could replace a token; run `chmod 600 {path}`, or pass "
        "--allow-open-tokens-file"
    )
    assert stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "out" / "assets.jsonl").exists()
    assert server.request_log == []  # refused before any request


async def test_allow_open_tokens_file_is_the_way_past(server: MockMakini, tmp_path: Path) -> None:
    code, stderr = await _pull(server, tmp_path, 0o666, "--allow-open-tokens-file")
    assert code == 0, stderr
    assert "tokens file" not in stderr
    rows = (tmp_path / "out" / "assets.jsonl").read_bytes().splitlines()
    assert len(rows) == len(NAMES) * RECORDS
