"""``makini-async pull --workers N``: sharded over processes, one progress line, one summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pytest

from makini_async.cli import main
from makini_async.testing import MockMakini

from .scaleutil import landed
from .test_cli import NAMES, RECORDS, TOKENS, assert_no_tokens, run_cli, write_tokens

if TYPE_CHECKING:
    from pathlib import Path


async def test_pull_with_two_workers_lands_everything_and_sums_up(tmp_path: Path) -> None:
    tokens_file = write_tokens(tmp_path / "tokens.txt")
    out = tmp_path / "out"
    async with MockMakini(records_per_entity=RECORDS) as server:
        server.configure_connection(TOKENS[2], status="reauthorization_required")
        code, stdout, stderr = await run_cli(
            "pull",
            "--entity",
            "work-orders",
            "--entity",
            "assets",
            "--tokens-file",
            str(tokens_file),
            "--out",
            str(out),
            "--base-url",
            server.url,
            "--workers",
            "2",
            "--checkpoint",
            str(tmp_path / "pull.sqlite"),
            "--progress-interval",
            "0.05",
            "--summary-json",
            str(tmp_path / "summary.json"),
            timeout=60,
        )
    assert code == 1, stderr  # the connection needing reauthorization
    got = landed(out)
    assert max(got.values()) == 1
    assert len(got) == (len(NAMES) - 1) * 2 * RECORDS
    # Five connections fill no pool: one unit a worker.
    assert sorted(p.name for p in out.iterdir()) == ["unit-00000", "unit-00001"]
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["records"] == len(got)
    assert summary["connections"]["failed"] == [NAMES[2]]
    assert summary["records_by_entity"] == {"work-orders": 4 * RECORDS, "assets": 4 * RECORDS}
    assert "Failed connections: 1" in stdout
    assert f"{len(got):,} records" in stdout
    assert "records" in stderr  # the merged progress line
    assert_no_tokens(stdout, stderr)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ray-address", "auto"], "--ray-address needs --engine ray"),
        (["--workers", "2", "--checkpoint", "x.json"], "JSON checkpoint cannot be shared"),
        (
            ["--engine", "ray", "--ray-address", "auto", "--checkpoint", "x.sqlite"],
            "cannot share an SQLite checkpoint",
        ),
        (["--workers", "0"], "must be at least 1"),
    ],
)
def test_sharding_options_are_checked_before_any_request(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    tokens_file = write_tokens(tmp_path / "tokens.txt")
    args = ["pull", "--entity", "assets", "--tokens-file", str(tokens_file), "--out", "out"]
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main([*args, *extra]))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
