"""No token in any str/repr the library produces, and the session token scan works."""

from __future__ import annotations

import logging
import pickle
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from makini_async import RetryPolicy, errors
from makini_async._wire.responses import error_from_response
from tests.conftest import find_leaks
from tests.fakes import error, page, respond
from tests.unit.conftest import TOKEN


class Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def on_request(self, event: object) -> None:
        self.events.append(event)

    def on_retry(self, event: object) -> None:
        self.events.append(event)

    def on_page(self, event: object) -> None:
        self.events.append(event)

    def on_connection_state(self, event: object) -> None:
        self.events.append(event)


def _texts(*objects: object) -> str:
    return "\n".join(f"{o!s} {o!r}" for o in objects)


async def test_no_token_in_reprs_of_pools_connections_events_and_errors(
    make_pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"Authorization: Bearer {TOKEN}; raw {TOKEN}"
    answers = iter(
        [
            error(500, "INTERNAL_ERROR", echo, request_id=f"req {TOKEN}"),
            page([{"id": "a"}], None),
            error(429, "RATE_LIMIT_EXCEEDED", echo, retry_after="0"),
            respond(200, {"data": {"id": "a"}}),
            error(401, "REAUTHORIZATION_REQUIRED", echo, details={"token": TOKEN}),
        ]
    )
    recorder = Recorder()
    async with make_pool(
        lambda call: next(answers), hooks=[recorder], retry=RetryPolicy(wait_initial=0)
    ) as (pool, _):
        conn = pool.connection(TOKEN, name=None)
        async for _ in conn.list("assets", as_dicts=True):
            pass
        await conn.get("assets", "a", as_dicts=True)
        with pytest.raises(errors.ReauthorizationRequired) as info:
            await conn.get("assets", "b")
        with pytest.raises(errors.ReauthorizationRequired) as again:
            await conn.get("assets", "c")
        shown = _texts(pool, conn, conn.stats, *recorder.events, info.value, again.value)
    assert len(recorder.events) >= 5
    assert TOKEN not in shown
    assert TOKEN not in repr(info.value.details)
    assert TOKEN not in repr(pickle.loads(pickle.dumps(info.value)).__dict__)  # noqa: S301
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 422, 429, 500, 502, 503, 599])
def test_every_error_class_scrubs(status: int) -> None:
    body = orjson.dumps({"error": {"message": f"bearer {TOKEN}", "details": {"x": [TOKEN]}}})
    exc = error_from_response(status, {"X-Request-Id": TOKEN}, body, token=TOKEN)
    assert TOKEN not in _texts(exc) + repr(exc.details) + repr(exc.request_id)


def test_the_session_scan_finds_leaks_without_printing_them() -> None:
    secret = "tok_live_SCANSELFTEST_0123456789"
    records = [("t::a", "makini_async", f"retrying with {secret}"), ("t::b", "x", "fine")]
    with tempfile.TemporaryDirectory() as tmp:  # outside pytest's tmp dirs: not scanned
        base = Path(tmp)
        (base / "test_x0").mkdir()
        (base / "test_x0" / "out.jsonl").write_text(orjson.dumps({"token": secret}).decode())
        (base / "test_x0" / "tokens.txt").write_text(f"# input\nacme,{secret}\n{secret}\n")
        (base / "test_x0" / "db.sqlite").write_bytes(b"\0\1" + b"custom-secret-value-12" + b"\0")
        leaks = find_leaks(records, base, {"custom-secret-value-12"})
    assert len(leaks) == 3, leaks
    assert all(secret not in line for line in leaks)
    assert any("t::a" in line and "makini_async" in line for line in leaks)
    assert any("out.jsonl" in line and "test_x0" in line for line in leaks)
    assert any("db.sqlite" in line for line in leaks)
    assert not any("tokens.txt" in line for line in leaks)
    assert find_leaks([("t::b", "x", "nothing here: tok_b, SECRET")], None, set()) == []
