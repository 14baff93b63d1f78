"""The ``makini-async`` command line, end to end.

Commands that talk to a server run the CLI in a subprocess (it runs its own
event loop) against a :class:`MockMakini` served by the test's loop; input
validation runs ``main()`` in-process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pty
import re
import signal
import socket
import sys
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from makini_async import __version__
from makini_async.cli import main
from makini_async.cli._output import Writer as _Writer
from makini_async.entities import Entity
from makini_async.testing import FaultPlan, MockMakini

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

CLI = [sys.executable, "-c", "from makini_async.cli import main; raise SystemExit(main())"]
TOKENS = [f"tok_secret_{i:02d}_{'x' * 20}" for i in range(5)]
NAMES = [f"site-{i}" for i in range(5)]
RECORDS = 50


async def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stderr: int | None = None,
    timeout: float = 20.0,
) -> tuple[int, str, str]:
    """Run the CLI in a subprocess while this loop keeps serving the mock."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr is None else stderr,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), (err or b"").decode()


def write_tokens(path: Path, tokens: list[str] = TOKENS, names: list[str] = NAMES) -> Path:
    lines = ["# test tokens", ""] + [f"{n},{t}" for n, t in zip(names, tokens, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # private, as the command expects
    return path


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def assert_no_tokens(*texts: str) -> None:
    for text in texts:
        for token in TOKENS:
            assert token not in text


@pytest.fixture
async def server() -> AsyncIterator[MockMakini]:
    async with MockMakini(records_per_entity=RECORDS) as srv:
        yield srv


# -- pull ------------------------------------------------------------------------------


async def test_pull_writes_every_record_without_tokens(server: MockMakini, tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    out = tmp_path / "out"
    code, stdout, stderr = await run_cli(
        "pull", "--entity", "work-orders", "--entity", "assets",
        "--tokens-file", str(tokens), "--out", str(out), "--base-url", server.url,
    )  # fmt: skip
    assert code == 0, stderr
    for entity in ("work-orders", "assets"):
        path = out / f"{entity}.jsonl"
        rows = read_jsonl(path)
        assert len(rows) == len(TOKENS) * RECORDS
        assert {r["_connection"] for r in rows} == set(NAMES)
        expected = {
            (n, r["id"])
            for n, t in zip(NAMES, TOKENS, strict=True)
            for r in server.records(t, entity)
        }
        assert {(r["_connection"], r["id"]) for r in rows} == expected
        assert str(path) in stdout
        assert_no_tokens(path.read_text())
    assert "completed" in stdout
    assert "Failed connections: 0" in stdout
    assert_no_tokens(stdout, stderr)
    assert "Traceback" not in stderr


async def test_reauthorization_gives_exit_1_and_is_listed(
    server: MockMakini, tmp_path: Path
) -> None:
    server.configure_connection(TOKENS[3], status="reauthorization_required")
    tokens = write_tokens(tmp_path / "tokens.txt")
    code, stdout, stderr = await run_cli(
        "pull", "--entity", "work-orders", "--tokens-file", str(tokens),
        "--out", str(tmp_path / "out"), "--base-url", server.url,
    )  # fmt: skip
    assert code == 1
    assert "Failed connections: 1" in stdout
    failed_part = stdout.split("Failed connections: 1", 1)[1]
    assert NAMES[3] in failed_part
    assert "REAUTHORIZATION_REQUIRED" in failed_part
    assert "request_id=req_" in failed_part
    rows = read_jsonl(tmp_path / "out" / "work-orders.jsonl")
    assert len(rows) == (len(TOKENS) - 1) * RECORDS
    assert_no_tokens(stdout, stderr)


async def test_typed_pull_and_tokens_from_environment(server: MockMakini, tmp_path: Path) -> None:
    env_value = "\n".join(f"{n},{t}" for n, t in zip(NAMES, TOKENS, strict=True))
    out = tmp_path / "out"
    code, stdout, stderr = await run_cli(
        "pull", "--entity", "purchase-orders", "--typed", "--out", str(out),
        "--base-url", server.url, "--tokens-env", "MY_TOKENS",
        env={"MY_TOKENS": env_value},
    )  # fmt: skip
    assert code == 0, stderr
    rows = read_jsonl(out / "purchase-orders.jsonl")
    assert len(rows) == len(TOKENS) * RECORDS
    first = next(r for r in rows if r["_connection"] == NAMES[0])
    original = next(
        r for r in server.records(TOKENS[0], "purchase-orders") if r["id"] == first["id"]
    )
    assert {k: v for k, v in first.items() if k != "_connection"} == original
    assert_no_tokens(stdout, stderr)


async def test_checkpoint_resume_appends_nothing_new(server: MockMakini, tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    out = tmp_path / "out"
    args = (
        "pull", "--entity", "work-orders", "--tokens-file", str(tokens), "--out", str(out),
        "--base-url", server.url, "--checkpoint", str(tmp_path / "pull.sqlite"),
    )  # fmt: skip
    code, _, stderr = await run_cli(*args)
    assert code == 0, stderr
    path = out / "work-orders.jsonl"
    first = path.read_bytes()
    assert len(first.splitlines()) == len(TOKENS) * RECORDS
    code, stdout, stderr = await run_cli(*args)
    assert code == 0, stderr
    # Incremental from the high-water mark: the newest record each chain landed, less the
    # overlap (300 s), so only the records within the overlap of that newest come again.
    again = read_jsonl(path)[len(first.splitlines()) :]
    newest = {
        n: max(r["updated_at"] for r in server.records(t, "work-orders"))
        for n, t in zip(NAMES, TOKENS, strict=True)
    }
    assert 0 < len(again) < len(TOKENS) * 5
    for row in again:
        top = dt.datetime.fromisoformat(newest[str(row["_connection"])])
        assert dt.datetime.fromisoformat(str(row["updated_at"])) >= top - dt.timedelta(seconds=300)
    assert "incremental" in stdout


async def test_a_server_clock_behind_ours_loses_nothing_between_incremental_pulls(
    tmp_path: Path,
) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    out = tmp_path / "out"
    async with MockMakini(records_per_entity=RECORDS, clock_skew=-600) as server:
        args = (
            "pull", "--entity", "assets", "--tokens-file", str(tokens), "--out", str(out),
            "--base-url", server.url, "--checkpoint", str(tmp_path / "pull.sqlite"),
            "--summary-json", str(tmp_path / "summary.json"),
        )  # fmt: skip
        # A change just before the first pull: the data's newest time is the server's now.
        server.update(TOKENS[0], "assets", server.records(TOKENS[0], "assets")[0]["id"], {})
        code, _, stderr = await run_cli(*args)
        assert code == 0, stderr
        # Changed after the first pull, at the server's time: 10 minutes behind ours.
        changed = server.records(TOKENS[1], "assets")[3]["id"]
        server.update(TOKENS[1], "assets", changed, {"name": "renamed"})
        code, _stdout, stderr = await run_cli(*args)
        assert code == 0, stderr
    rows = read_jsonl(out / "assets.jsonl")
    assert (NAMES[1], changed, "renamed") in {(r["_connection"], r["id"], r["name"]) for r in rows}
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["starts"]["incremental"] == len(TOKENS)
    assert summary["starts"]["modified_after_from"] == {"data": len(TOKENS)}


# -- progress ------------------------------------------------------------------------------


async def test_progress_in_a_pipe_is_plain_lines(tmp_path: Path) -> None:
    async with MockMakini(records_per_entity=RECORDS, faults=FaultPlan(latency=0.06)) as srv:
        tokens = write_tokens(tmp_path / "tokens.txt")
        code, _, stderr = await run_cli(
            "pull", "--entity", "work-orders", "--tokens-file", str(tokens),
            "--out", str(tmp_path / "out"), "--base-url", srv.url,
            "--concurrency", "1", "--progress-interval", "0.05",
        )  # fmt: skip
    assert code == 0, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("progress:")]
    assert len(lines) >= 3
    assert "\r" not in stderr
    assert f"connections={len(TOKENS)}/{len(TOKENS)}" in lines[-1]
    assert f"records={len(TOKENS) * RECORDS}" in lines[-1]
    assert_no_tokens(stderr)


async def test_progress_on_a_terminal_draws_bars_with_totals(tmp_path: Path) -> None:
    async with MockMakini(records_per_entity=RECORDS, faults=FaultPlan(latency=0.15)) as srv:
        tokens = write_tokens(tmp_path / "tokens.txt")
        master, slave = pty.openpty()
        chunks: list[bytes] = []

        def drain() -> None:
            while True:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    return
                if not data:
                    return
                chunks.append(data)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            code, stdout, _ = await run_cli(
                "pull", "--entity", "work-orders", "--tokens-file", str(tokens),
                "--out", str(tmp_path / "out"), "--base-url", srv.url, "--concurrency", "1",
                stderr=slave,
            )  # fmt: skip
        finally:
            os.close(slave)
        await asyncio.to_thread(reader.join, 5)
        os.close(master)
    assert code == 0
    text = b"".join(chunks).decode()
    assert text.count("\r") >= 3  # bars redrawn in place
    # An overall bar and one per entity, with the percentage from total_count.
    chains = f"chains {len(TOKENS)}/{len(TOKENS)}"
    assert re.search(
        rf"all +100%\|.*\| {len(TOKENS) * RECORDS}/{len(TOKENS) * RECORDS} .*{chains}", text
    )
    assert re.search(r"work-orders +\d+%\|", text)
    assert "rec/s" in text
    assert_no_tokens(text, stdout)


# -- demo, interrupt, version ------------------------------------------------------------------


async def test_demo_exits_0_and_explains_failures(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    code, stdout, stderr = await run_cli(
        "demo", "--connections", "20", "--records", "30", "--out", str(out)
    )
    assert code == 0, stdout + stderr
    assert "Summary" in stdout
    assert "Failed connections: 3" in stdout
    for name in ("plant-002", "plant-003", "plant-020"):
        assert name in stdout
    assert "Demo OK" in stdout
    rows = read_jsonl(out / "work-orders.jsonl")
    assert len(rows) == 17 * 30
    assert (out / "demo-tokens.txt").stat().st_mode & 0o777 == 0o600  # private
    tokens = [line.split(",", 1)[1] for line in (out / "demo-tokens.txt").read_text().splitlines()
              if line and not line.startswith("#")]  # fmt: skip
    for token in tokens:
        assert token not in stdout
        assert token not in stderr


async def test_interrupt_exits_130(tmp_path: Path) -> None:
    async with MockMakini(records_per_entity=RECORDS, faults=FaultPlan(stall=1.0)) as srv:
        tokens = write_tokens(tmp_path / "tokens.txt")
        proc = await asyncio.create_subprocess_exec(
            *CLI, "pull", "--entity", "work-orders", "--tokens-file", str(tokens),
            "--out", str(tmp_path / "out"), "--base-url", srv.url, "--progress-interval", "0.05",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 10)
        assert line.startswith(b"progress:")
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 130
    assert b"interrupted" in err
    assert b"Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_mock_server_delegates_to_the_testing_main(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mock-server", "--help"]) == 0
    assert "--rate-limit" in capsys.readouterr().out


async def test_preflight_accepts_an_error_answer(server: MockMakini, tmp_path: Path) -> None:
    server.configure_connection(TOKENS[0], faults=FaultPlan(error_503=1.0))
    tokens = write_tokens(tmp_path / "tokens.txt")
    code, stdout, stderr = await run_cli(
        "pull", "--entity", "assets", "--tokens-file", str(tokens), "--attempts", "2",
        "--out", str(tmp_path / "out"), "--base-url", server.url,
    )  # fmt: skip
    assert code == 1  # not 2: the API answered, only that connection failed
    assert "SERVICE_UNAVAILABLE" in stdout
    assert "cannot reach" not in stderr


async def test_preflight_accepts_an_answer_whose_body_is_cut_short(
    server: MockMakini, tmp_path: Path
) -> None:
    # The demo's random faults cut a body now and then: the API answered all the same.
    server.configure_connection(TOKENS[0], faults=FaultPlan(drop=1.0))
    tokens = write_tokens(tmp_path / "tokens.txt")
    code, stdout, stderr = await run_cli(
        "pull", "--entity", "assets", "--tokens-file", str(tokens), "--attempts", "2",
        "--out", str(tmp_path / "out"), "--base-url", server.url,
    )  # fmt: skip
    assert code == 1, stderr  # not 2: only that connection failed
    assert "cannot reach" not in stderr
    assert NAMES[0] in stdout
    assert_no_tokens(stdout, stderr)


# -- bad input: exit 2 and one error line ------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bad_input_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = write_tokens(tmp_path / "good.txt")
    (tmp_path / "empty.txt").write_text("# nothing here\n\n")
    (tmp_path / "malformed.txt").write_text(f"a,{TOKENS[0]}\nb,{TOKENS[1]} extra\n")
    (tmp_path / "dupes.txt").write_text(f"a,{TOKENS[0]}\na,{TOKENS[1]}\n")
    (tmp_path / "a-file").write_text("")
    base = ["pull", "--entity", "work-orders", "--out", str(tmp_path / "out")]
    url = ["--base-url", "http://127.0.0.1:9"]
    return {
        "missing tokens file": (
            ["pull", "--entity", "assets", "--tokens-file", str(tmp_path / "nope.txt"),
             "--out", str(tmp_path / "out")],
            "tokens file not found",
        ),
        "empty tokens file": (
            [*base, "--tokens-file", str(tmp_path / "empty.txt")], "no tokens"
        ),
        "no tokens in environment": ([*base, "--tokens-env", "MAKINI_TEST_UNSET"], "no tokens"),
        "malformed line": (
            [*base, "--tokens-file", str(tmp_path / "malformed.txt")], "line 2 is malformed"
        ),
        "duplicate names": (
            [*base, "--tokens-file", str(tmp_path / "dupes.txt")], "duplicate connection name"
        ),
        "bad date": (
            [*base, "--tokens-file", str(good), "--modified-after", "yesterday"],
            "bad --modified-after",
        ),
        "unknown entity": (
            ["pull", "--entity", "widgets", "--tokens-file", str(good),
             "--out", str(tmp_path / "out")],
            "expected one of: purchase-orders, work-orders",
        ),
        "unwritable output": (
            ["pull", "--entity", "assets", "--tokens-file", str(good),
             "--out", str(tmp_path / "a-file" / "out"), *url],
            "cannot write to output directory",
        ),
        "bad base url": ([*base, "--tokens-file", str(good), "--base-url", "ftp://x"], "http://"),
        "malformed base url": (
            [*base, "--tokens-file", str(good), "--base-url", "http://[::1"], "bad --base-url"
        ),
        "base url port out of range": (
            [*base, "--tokens-file", str(good), "--base-url", "http://localhost:99999"],
            "bad --base-url",
        ),
        "plain http to a remote host": (
            [*base, "--tokens-file", str(good), "--base-url", "http://api.example.com"],
            "--allow-insecure-http",
        ),
        "credentials in base url": (
            [*base, "--tokens-file", str(good), "--base-url", "https://u:hunter2@api.example.com"],
            "user name or password",
        ),
        "mock-server port out of range": (["mock-server", "--port", "99999"], "invalid port"),
        "unreachable base url": (
            [*base, "--tokens-file", str(good), "--base-url", f"http://127.0.0.1:{_closed_port()}"],
            "cannot reach http://127.0.0.1:",
        ),
    }  # fmt: skip


BAD_INPUTS = [
    "missing tokens file",
    "empty tokens file",
    "no tokens in environment",
    "malformed line",
    "duplicate names",
    "bad date",
    "unknown entity",
    "unwritable output",
    "bad base url",
    "malformed base url",
    "base url port out of range",
    "plain http to a remote host",
    "credentials in base url",
    "mock-server port out of range",
    "unreachable base url",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_error_line(
    case: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MAKINI_TEST_UNSET", raising=False)
    argv, expected = _bad_input_cases(tmp_path)[case]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("makini-async: error: ")
    assert expected in lines[0]
    assert "Traceback" not in captured.err
    assert "hunter2" not in captured.err
    assert_no_tokens(captured.err, captured.out)


def test_argparse_errors_end_with_the_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", "--entity", "assets"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("makini-async: error: ")
    assert "Traceback" not in err


async def test_one_named_token_in_the_environment(server: MockMakini, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _stdout, stderr = await run_cli(
        "pull", "--entity", "vendors", "--out", str(out), "--base-url", server.url,
        env={"MAKINI_TOKENS": f"{NAMES[0]},{TOKENS[0]}"},
    )  # fmt: skip
    assert code == 0, stderr
    rows = read_jsonl(out / "vendors.jsonl")
    assert {r["_connection"] for r in rows} == {NAMES[0]}
    assert len(rows) == RECORDS
    assert server.stats(NAMES[0]).requests == 0  # the name was never sent as a token


async def test_cli_killed_with_sigkill_resumes_without_loss(tmp_path: Path) -> None:
    tokens = [f"tok_kill_{i:03d}_{'y' * 16}" for i in range(20)]
    names = [f"plant-{i:03d}" for i in range(20)]
    tokens_file = write_tokens(tmp_path / "tokens.txt", tokens, names)
    out = tmp_path / "out"
    checkpoint = tmp_path / "pull.sqlite"
    plan = FaultPlan(seed=4, latency=0.005)
    async with MockMakini(records_per_entity=400, faults=plan) as srv:
        args = [
            *CLI, "pull", "--entity", "work-orders", "--entity", "assets",
            "--tokens-file", str(tokens_file), "--out", str(out), "--checkpoint", str(checkpoint),
            "--base-url", srv.url, "--concurrency", "4",
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        target = out / "work-orders.jsonl"
        for _ in range(1500):
            await asyncio.sleep(0.01)
            if target.exists() and target.stat().st_size > 150_000:
                break
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        for entity in ("work-orders", "assets"):
            rows = read_jsonl(out / f"{entity}.jsonl")
            got = {(r["_connection"], r["id"]) for r in rows}
            want = {
                (n, r["id"])
                for n, t in zip(names, tokens, strict=True)
                for r in srv.records(t, entity)
            }
            assert got == want


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"", b""),
        (b'{"id":"a"}\n', b'{"id":"a"}\n'),
        (b'{"id":"a"}\n{"id":"b', b'{"id":"a"}\n'),
        (b'{"id":"b', b""),
        (b'{"id":"a"}\n' + b"x" * 200_000, b'{"id":"a"}\n'),  # the fragment spans chunks
    ],
)
def test_a_resumed_pull_cuts_a_half_written_line(
    tmp_path: Path, before: bytes, after: bytes
) -> None:
    # SIGKILL can land in the middle of a page's write; that page is delivered again.
    path = tmp_path / "assets.jsonl"
    path.write_bytes(before)
    with _Writer(tmp_path, [Entity.ASSETS], append=True):
        pass
    assert path.read_bytes() == after


# -- records that do not fit ---------------------------------------------------------------


@pytest.mark.parametrize("typed", [True, False])
async def test_invalid_records_go_to_their_own_file_and_strict_fails(
    server: MockMakini, tmp_path: Path, typed: bool
) -> None:
    # One record no rule can read (typed pulls), one that is not an object (both).
    server.insert(TOKENS[1], "work-orders", {"id": "wo_bad", "due_date": "31/12/2024"})
    server.insert(TOKENS[2], "work-orders", {"id": "wo_ok", "total": 12.5})
    tokens = write_tokens(tmp_path / "tokens.txt")
    out = tmp_path / "out"
    args = ["pull", "--entity", "work-orders", "--tokens-file", str(tokens), "--out", str(out),
            "--base-url", server.url]  # fmt: skip
    if typed:
        args.append("--typed")
    code, stdout, stderr = await run_cli(*args)
    assert code == 0, stderr
    records = read_jsonl(out / "work-orders.jsonl")
    invalid_path = out / "work-orders.invalid.jsonl"
    if typed:
        (line,) = read_jsonl(invalid_path)
        assert line["_connection"] == NAMES[1]
        assert line["field"] == "due_date"
        assert "31/12/2024" in str(line["reason"])
        assert line["record"] == server.record(TOKENS[1], "work-orders", "wo_bad")
        assert str(line["request_id"]).startswith("req_")
        assert len(records) == 5 * RECORDS + 1
        assert "Invalid records" in stdout
        assert str(invalid_path) in stdout
        assert "1 invalid records" in stdout
    else:
        assert not invalid_path.exists()
        assert len(records) == 5 * RECORDS + 2
    assert_no_tokens(stdout, stderr)
    code, stdout, stderr = await run_cli(*args, "--strict", "--out", str(tmp_path / "out2"))
    assert code == (1 if typed else 0), stderr
    if typed:
        assert "--strict" in stderr


# -- a careless operator ---------------------------------------------------------------------


async def test_a_new_unnamed_token_at_the_top_never_inherits_a_checkpoint(
    server: MockMakini, tmp_path: Path
) -> None:
    # Named by position, the new customer would take the old one's name and
    # checkpoint, run incrementally and get none of its records.
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"{TOKENS[0]}\n{TOKENS[1]}\n")
    checkpoint = str(tmp_path / "pull.sqlite")
    args = ["pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url", server.url,
            "--checkpoint", checkpoint]  # fmt: skip
    code, _, stderr = await run_cli(*args, "--out", str(tmp_path / "a"))
    assert code == 0, stderr
    tokens.write_text(f"{TOKENS[2]}\n{TOKENS[0]}\n{TOKENS[1]}\n")
    code, stdout, stderr = await run_cli(*args, "--out", str(tmp_path / "a"))
    assert code == 0, stderr
    rows = read_jsonl(tmp_path / "a" / "assets.jsonl")
    per_name = Counter(row["_connection"] for row in rows)
    # Only the new customer had anything to pull: every customer's records once, but for what
    # the two others' incremental runs bring again (records within 300 s of their newest).
    times = [
        dt.datetime.fromisoformat(r["updated_at"]) for r in server.records(TOKENS[0], "assets")
    ]
    again = sum(t >= max(times) - dt.timedelta(seconds=300) for t in times)
    assert sorted(per_name.values()) == [RECORDS, RECORDS + again, RECORDS + again]
    assert_no_tokens(stdout, stderr)


async def test_a_checkpoint_is_never_applied_to_another_token(
    server: MockMakini, tmp_path: Path
) -> None:
    checkpoint = str(tmp_path / "pull.sqlite")
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"plant,{TOKENS[0]}\n")
    args = ["pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url", server.url,
            "--checkpoint", checkpoint, "--out", str(tmp_path / "out")]  # fmt: skip
    code, _, stderr = await run_cli(*args)
    assert code == 0, stderr
    tokens.write_text(f"plant,{TOKENS[3]}\n")  # the name now stands for another customer
    code, stdout, stderr = await run_cli(*args)
    assert code == 1
    assert "another token" in stdout
    assert_no_tokens(stdout, stderr)


async def test_a_second_run_on_one_checkpoint_fails_fast(
    server: MockMakini, tmp_path: Path
) -> None:
    from makini_async.checkpoint import open_checkpoint

    checkpoint = tmp_path / "pull.sqlite"
    tokens = write_tokens(tmp_path / "tokens.txt")
    held = open_checkpoint(checkpoint)  # another run holds it
    try:
        code, _, stderr = await run_cli(
            "pull", "--entity", "assets", "--tokens-file", str(tokens),
            "--base-url", server.url, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
        )  # fmt: skip
    finally:
        held.close()
    assert code == 2
    assert "in use by another run" in stderr
    assert str(os.getpid()) in stderr
    assert server.total_requests == 0


async def test_output_files_never_follow_a_planted_symlink(
    server: MockMakini, tmp_path: Path
) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "assets.jsonl").symlink_to(victim)
    tokens = write_tokens(tmp_path / "tokens.txt")
    code, _, stderr = await run_cli(
        "pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url", server.url,
        "--out", str(out),
    )  # fmt: skip
    assert code == 2
    assert "symbolic link" in stderr
    assert victim.read_text() == "keep me"


async def test_the_summary_json_never_follows_a_planted_symlink(
    server: MockMakini, tmp_path: Path
) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    summary = tmp_path / "report" / "summary.json"
    summary.parent.mkdir()
    (summary.parent / ".summary.json.tmp").symlink_to(victim)
    tokens = write_tokens(tmp_path / "tokens.txt")
    code, _, stderr = await run_cli(
        "pull", "--entity", "assets", "--tokens-file", str(tokens), "--base-url", server.url,
        "--out", str(tmp_path / "out"), "--summary-json", str(summary),
    )  # fmt: skip
    assert code == 0, stderr
    assert victim.read_text() == "keep me"
    assert orjson.loads(summary.read_bytes())["records"] == len(NAMES) * RECORDS
    # The planted link is left alone, and no temporary file stays behind.
    assert sorted(p.name for p in summary.parent.iterdir()) == [".summary.json.tmp", "summary.json"]


@pytest.mark.parametrize("typed", [True, False])
async def test_an_unwritable_record_fails_only_its_own_chain(
    server: MockMakini, tmp_path: Path, typed: bool
) -> None:
    # orjson reads 1,024 levels but writes 254: one customer's record is too deep
    # (a server not written with orjson sends it; the mock's list_page is patched).
    # A typed record is encoded again, and cannot be; a dict pull writes the
    # record's text as sent, so that one lands whole.
    from makini_async.testing._answers import _Answer

    deep = b'{"id":"ast_deep","custom_fields":' + b'{"n":' * 400 + b"1" + b"}" * 401
    original = server.list_page

    def list_page(conn: Any, entity: Entity, query: Any, request_id: str) -> Any:
        answer = original(conn, entity, query, request_id)
        if conn.token == TOKENS[2] and entity is Entity.ASSETS and "cursor" not in query:
            body = orjson.loads(answer.body)
            rows = b",".join(orjson.dumps(r) for r in body["data"])
            cursor = orjson.dumps(body["next_cursor"])
            answer = _Answer(
                200, b'{"data":[' + rows + b"," + deep + b'],"next_cursor":' + cursor + b"}"
            )
        return answer

    server.list_page = list_page  # type: ignore[method-assign]
    tokens = write_tokens(tmp_path / "tokens.txt")
    out = tmp_path / "out"
    args = ["pull", "--entity", "assets", "--entity", "vendors", "--tokens-file", str(tokens),
            "--out", str(out), "--base-url", server.url]  # fmt: skip
    code, stdout, stderr = await run_cli(*args, *(["--typed"] if typed else []))
    if not typed:
        assert code == 0, stderr
        rows = read_jsonl(out / "assets.jsonl")
        (deepest,) = [r for r in rows if r["id"] == "ast_deep"]
        assert deepest["_connection"] == NAMES[2]
        level, depth = deepest["custom_fields"], 1
        while isinstance(level, dict):
            level, depth = level["n"], depth + 1
        assert (level, depth) == (1, 401)  # every level, as sent
        assert len(rows) == len(NAMES) * RECORDS + 1
        assert_no_tokens(stdout, stderr)
        return
    assert code == 1, stderr
    assert "unexpected" not in stderr
    assert "SinkError" in stdout or "cannot write assets record 'ast_deep'" in stdout
    assert NAMES[2] in stdout
    rows = read_jsonl(out / "assets.jsonl")
    by_conn = {name: sum(1 for r in rows if r["_connection"] == name) for name in NAMES}
    # Every other customer complete; the failed page was not written at all.
    assert all(by_conn[n] == RECORDS for n in NAMES if n != NAMES[2])
    assert by_conn[NAMES[2]] < RECORDS + 1
    assert len(read_jsonl(out / "vendors.jsonl")) == 5 * RECORDS
    assert_no_tokens(stdout, stderr)
