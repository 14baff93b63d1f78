"""``makini-async pull --workers N``: sharded over processes, one progress line, one summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import pytest

from makini_async.cli import main
from makini_async.scale._units import DEFAULT_BUCKETS, bucket_of
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
    # A folder per bucket of the connections' names, and the layout that placed them.
    folders = {f"bucket-{bucket_of(name, DEFAULT_BUCKETS):05d}" for name in NAMES}
    assert {p.name for p in out.iterdir()} == {"_layout.json", *folders}
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["tuned"] is True  # the command and its workers run tuned by default
    assert "Tuning: on" in stdout
    assert summary["records"] == len(got)
    assert summary["connections"]["failed"] == [NAMES[2]]
    assert summary["records_by_entity"] == {"work-orders": 4 * RECORDS, "assets": 4 * RECORDS}
    assert "Failed connections: 1" in stdout
    assert f"{len(got):,} records" in stdout
    assert "records" in stderr  # the merged progress line
    assert_no_tokens(stdout, stderr)


async def test_no_tune_leaves_the_command_and_its_workers_as_they_are(tmp_path: Path) -> None:
    tokens_file = write_tokens(tmp_path / "tokens.txt")
    async with MockMakini(records_per_entity=5) as server:
        code, stdout, stderr = await run_cli(
            "pull",
            "--entity",
            "assets",
            "--tokens-file",
            str(tokens_file),
            "--out",
            str(tmp_path / "out"),
            "--base-url",
            server.url,
            "--workers",
            "2",
            "--no-tune",
            "--summary-json",
            str(tmp_path / "summary.json"),
            timeout=60,
        )
    assert code == 0, stderr
    assert orjson.loads((tmp_path / "summary.json").read_bytes())["tuned"] is False
    assert "Tuning: off" in stdout


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


@pytest.mark.parametrize("tune", [True, False])
async def test_the_command_runs_tuned_in_one_process_too(tmp_path: Path, tune: bool) -> None:
    tokens_file = write_tokens(tmp_path / "tokens.txt")
    flags = [] if tune else ["--no-tune"]
    async with MockMakini(records_per_entity=5) as server:
        code, stdout, stderr = await run_cli(
            "pull",
            "--entity",
            "assets",
            "--tokens-file",
            str(tokens_file),
            "--out",
            str(tmp_path / "out"),
            "--base-url",
            server.url,
            "--summary-json",
            str(tmp_path / "summary.json"),
            *flags,
        )
    assert code == 0, stderr
    assert orjson.loads((tmp_path / "summary.json").read_bytes())["tuned"] is tune
    assert f"Tuning: {'on' if tune else 'off'}" in stdout
