"""Bad input to ``pool.sync`` is a UsageError that says what was expected, before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from makini_async import MakiniPool, UsageError


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"connections": ["token-only"]}, "pairs"),
        ({"connections": [("a", "t1"), ("a", "t2")]}, "unique"),
        ({"connections": [("a", "")]}, "pairs"),
        ({"sink": "jsonl:out"}, "postgresql"),
        ({"sink": 42}, "sink must be"),
        ({"every": 0}, "every"),
        ({"every": True}, "every"),
        ({"lease": -1}, "lease"),
        ({"entities": ["work-order"]}, "work-order"),
        ({"state_name": "x"}, "state_name"),
        ({"patince": 5}, "unknown pull option"),
        ({"webhook_secret": ""}, "secret"),
    ],
)
async def test_bad_input_is_refused_with_a_clear_message(
    kwargs: dict[str, Any], match: str
) -> None:
    settings: dict[str, Any] = {
        "entities": ["work-orders"],
        "connections": [("acme", "token-a")],
        "sink": "postgresql://app@127.0.0.1:9/db",
        **kwargs,
    }
    async with MakiniPool(base_url="http://127.0.0.1:9") as pool:
        with pytest.raises(UsageError, match=match):
            pool.sync(settings.pop("entities"), settings.pop("connections"), **settings)
