"""``makini-async pull --sink ...``, ``--checkpoint postgresql://`` and ``--summary-json``."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.parquet as pq

from makini_async.testing import MockMakini

from .pgutil import fetch, states
from .test_cli import NAMES, RECORDS, TOKENS, assert_no_tokens, run_cli, server, write_tokens

__all__ = ["server"]  # the fixture, shared with test_cli

PASSWORD = "pw_SECRET_cli_0123456789"


def _with_password(dsn: str) -> str:
    # pgserver trusts local connections: the password is ignored, yet it must never show.
    return dsn.replace("postgresql://postgres:@", f"postgresql://postgres:{PASSWORD}@", 1)


async def test_pull_into_parquet_with_a_summary_json(server: MockMakini, tmp_path: Path) -> None:
    server.configure_connection(TOKENS[2], status="reauthorization_required")
    tokens = write_tokens(tmp_path / "tokens.txt")
    out = tmp_path / "lake"
    summary = tmp_path / "outcome.json"
    code, stdout, stderr = await run_cli(
        "pull", "--entity", "work-orders", "--entity", "assets", "--tokens-file", str(tokens),
        "--base-url", server.url, "--sink", f"parquet:{out}", "--summary-json", str(summary),
    )  # fmt: skip
    assert code == 1, stderr
    table = pq.read_table(out / "work-orders")
    assert table.num_rows == (len(TOKENS) - 1) * RECORDS
    assert f"Data landed in (parquet): {out}" in stdout
    data = orjson.loads(summary.read_bytes())
    assert data["ok"] is False
    assert data["sink"] == {"kind": "parquet", "location": str(out)}
    assert data["connections"]["failed"] == [NAMES[2]]
    (failure,) = data["failures"]  # one entry for the connection and its one reason
    assert failure["connection"] == NAMES[2]
    assert failure["code"] == "REAUTHORIZATION_REQUIRED"
    assert sorted(failure["entities"]) == ["assets", "work-orders"]
    assert data["records_by_entity"]["assets"] == (len(TOKENS) - 1) * RECORDS
    # The failure is told once for its connection and reason, not once per entity.
    assert stdout.count("REAUTHORIZATION_REQUIRED") == 1
    assert "entities: work-orders, assets" in stdout
    assert_no_tokens(stdout, stderr, summary.read_text())


async def test_pull_into_postgresql_from_an_environment_variable(
    server: MockMakini, tmp_path: Path, pg_dsn: str
) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    summary = tmp_path / "outcome.json"
    args = (
        "pull", "--entity", "vendors", "--tokens-file", str(tokens), "--base-url", server.url,
        "--sink", "env:WAREHOUSE_DSN", "--summary-json", str(summary),
    )  # fmt: skip
    env = {"WAREHOUSE_DSN": _with_password(pg_dsn)}
    code, stdout, stderr = await run_cli(*args, env=env)
    assert code == 0, stderr
    rows = await fetch(pg_dsn, "SELECT connection, id FROM makini_vendors")
    assert len(rows) == len(TOKENS) * RECORDS
    assert "Data landed in (postgresql): postgresql://postgres:***@" in stdout
    assert PASSWORD not in stdout + stderr + summary.read_text()
    # The checkpoint's state is named and described without the password.
    stored = await fetch(pg_dsn, "SELECT name, identity::text FROM makini_checkpoints_states")
    keys = await fetch(pg_dsn, "SELECT connection FROM makini_checkpoints")
    assert len(stored) == 1
    assert stored[0][0].startswith("postgresql://postgres:***@")
    assert PASSWORD not in repr(stored) + repr(keys)
    # Again: every chain resumes from its committed row, incrementally; nothing doubles.
    code, stdout, stderr = await run_cli(*args, env=env)
    assert code == 0, stderr
    assert len(await fetch(pg_dsn, "SELECT 1 FROM makini_vendors")) == len(TOKENS) * RECORDS
    assert_no_tokens(stdout, stderr)


async def test_jsonl_output_with_a_postgresql_checkpoint(
    server: MockMakini, tmp_path: Path, pg_dsn: str
) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    code, stdout, stderr = await run_cli(
        "pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url", server.url,
        "--sink", f"jsonl:{tmp_path / 'out'}", "--checkpoint", _with_password(pg_dsn),
    )  # fmt: skip
    assert code == 0, stderr
    assert len((tmp_path / "out" / "assets.jsonl").read_bytes().splitlines()) == 5 * RECORDS
    chain_states = await states(pg_dsn)
    assert set(chain_states) == {(n, "assets") for n in NAMES}
    assert PASSWORD not in stdout + stderr


async def test_bad_sinks_are_one_line_errors(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    base = ("pull", "--entity", "assets", "--tokens-file", str(tokens))
    for extra, message in [
        (("--sink", "s3://bucket"), "unknown sink"),
        (("--sink", "env:NOT_SET_ANYWHERE"), "NOT_SET_ANYWHERE is not set"),
        (("--out", str(tmp_path), "--sink", f"jsonl:{tmp_path}"), "exactly one of"),
        (
            ("--sink", f"parquet:{tmp_path}", "--checkpoint", str(tmp_path / "c.db")),
            "keep their own",
        ),
    ]:
        code, _, stderr = await run_cli(*base, *extra)
        assert code == 2
        assert message in stderr
        assert len(stderr.strip().splitlines()[-1]) < 200
