"""PullOptions: every option of a pull declared once, checked once, taken everywhere."""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import attrs
import pytest

from makini_async import MakiniPool, PullOptions, UsageError
from makini_async.bulk import DEFAULT_OVERLAP, DEFAULT_PATIENCE, PullKeywords
from makini_async.bulk._options import LOCAL_ONLY, options_of, sharded_options
from makini_async.cli._args import build_parser
from makini_async.cli._settings import pull_settings
from makini_async.scale import ShardedPull


def test_the_keyword_form_names_every_field_and_nothing_else() -> None:
    fields = [a.name for a in attrs.fields(PullOptions)]
    assert list(PullKeywords.__annotations__) == fields
    assert PullKeywords.__total__ is False


def test_defaults_are_the_documented_ones() -> None:
    opts = PullOptions()
    assert opts.modified_after is None
    assert opts.concurrency is None
    assert (opts.overlap, opts.patience) == (DEFAULT_OVERLAP, DEFAULT_PATIENCE)
    assert (opts.dedupe, opts.raise_on_error, opts.fresh) == (True, False, False)
    assert opts.on_invalid == "deliver"


def test_modified_after_is_formatted_once_whatever_it_was_given_as() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert PullOptions(modified_after=when) == PullOptions(modified_after="2024-01-02T03:04:05Z")
    assert PullOptions(modified_after=dt.date(2024, 1, 2)).modified_after is not None
    again = PullOptions(modified_after=when).evolve(patience=1.0)
    assert again.modified_after == PullOptions(modified_after=when).modified_after


@pytest.mark.parametrize(
    ("keywords", "named"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": "8"}, "concurrency"),
        ({"patience": -1}, "patience"),
        ({"overlap": float("nan")}, "overlap"),
        ({"on_invalid": "ignore"}, "on_invalid"),
        ({"modified_after": "yesterday"}, "modified_after"),
    ],
)
def test_a_bad_value_is_a_usage_error_that_names_it(keywords: dict[str, Any], named: str) -> None:
    with pytest.raises(UsageError, match=named):
        PullOptions(**keywords)


def test_keywords_go_over_the_options_and_unknown_ones_are_refused() -> None:
    base = PullOptions(concurrency=4, patience=60.0)
    assert options_of(base, {"patience": 5.0}) == PullOptions(concurrency=4, patience=5.0)
    assert options_of(base, {}) is base
    assert options_of(None, {}) == PullOptions()
    with pytest.raises(UsageError, match="unknown pull option: patince"):
        options_of(base, {"patince": 5.0})
    with pytest.raises(UsageError, match="must be a PullOptions"):
        options_of({"patience": 5.0}, {})  # type: ignore[arg-type]


def test_options_cross_process_boundaries() -> None:
    opts = PullOptions(modified_after="2024-01-01", concurrency=3, on_invalid="skip")
    assert pickle.loads(pickle.dumps(opts)) == opts  # noqa: S301 - our own bytes


@pytest.mark.parametrize("name", LOCAL_ONLY)
def test_a_sharded_pull_refuses_what_only_one_process_can_keep(name: str) -> None:
    value: object = {
        "raise_on_error": True,
        "state_name": "nightly",
        "fresh": True,
        "wall_clock": lambda: dt.datetime.now(dt.timezone.utc),
    }[name]
    with pytest.raises(UsageError, match=name):
        sharded_options(None, {name: value})
    assert sharded_options(PullOptions(patience=1.0), {}) == PullOptions(patience=1.0)


async def test_pool_pull_takes_the_options_and_keywords_over_them() -> None:
    nightly = PullOptions(modified_after="2024-01-01", concurrency=2, patience=60.0)
    async with MakiniPool(base_url="http://127.0.0.1:9") as pool:
        pull = pool.pull("assets", ["token-a"], options=nightly, patience=5.0)
        try:
            assert pull.options == nightly.evolve(patience=5.0)
        finally:
            await pull.aclose()
        with pytest.raises(UsageError, match="unknown pull option"):
            pool.pull("assets", ["token-a"], patince=5.0)  # type: ignore[call-overload]


def test_sharded_pull_takes_the_same_options(tmp_path: Any) -> None:
    opts = PullOptions(concurrency=3, patience=7.0)
    pull = ShardedPull("assets", ["token-a"], sink=f"jsonl:{tmp_path}", options=opts, dedupe=False)
    assert pull.options == opts.evolve(dedupe=False)
    with pytest.raises(UsageError, match="state_name"):
        ShardedPull("assets", ["token-a"], sink=f"jsonl:{tmp_path}", state_name="x")


def test_the_command_line_builds_one_pull_options(tmp_path: Any) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("acme,token-a\n")
    args = build_parser().parse_args(
        [
            "pull",
            "--entity",
            "assets",
            "--tokens-file",
            str(tokens),
            "--out",
            str(tmp_path / "out"),
            "--modified-after",
            "2024-01-01",
            "--concurrency",
            "3",
            "--patience",
            "5",
        ]
    )
    settings = pull_settings(args)
    assert settings.options == PullOptions(modified_after="2024-01-01", concurrency=3, patience=5.0)
