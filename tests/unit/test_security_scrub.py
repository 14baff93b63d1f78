"""Server text in errors: no credentials, no control characters, bounded length."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from makini_async import errors
from makini_async._wire.responses import decode_json, error_from_response, parse_single
from makini_async._wire.scrub import REDACTED, clean, escape, scrub, scrub_data
from makini_async.status import ConnectionInfo
from tests.fakes import respond
from tests.unit.conftest import TOKEN

ECHO = f"upstream rejected request with Authorization: Bearer {TOKEN}"


def _error_body(**fields: Any) -> bytes:
    return orjson.dumps({"error": fields})


def _shown(exc: errors.MakiniError) -> str:
    return " ".join([str(exc), repr(exc), repr(exc.details), repr(exc.request_id)])


@pytest.mark.parametrize(
    "body",
    [
        _error_body(code="CONNECTED_SYSTEM_ERROR", message=ECHO),
        _error_body(code="INTERNAL_ERROR", message=f"token was {TOKEN}"),
        _error_body(code="INTERNAL_ERROR", request_id=f"req_1 {TOKEN}"),
        _error_body(code="VALIDATION_FAILED", details={"headers": {"Authorization": ECHO}}),
        _error_body(code="VALIDATION_FAILED", details={"fields": [[TOKEN]], TOKEN: 1}),
        f"<html>bad gateway: {ECHO}</html>".encode(),
        f"{TOKEN}".encode(),
    ],
)
def test_error_from_response_never_holds_the_token(body: bytes) -> None:
    exc = error_from_response(502, {"X-Request-Id": f"Bearer {TOKEN}"}, body, token=TOKEN)
    assert TOKEN not in _shown(exc)
    assert "<redacted>" in _shown(exc)


def test_bearer_shaped_text_is_scrubbed_without_knowing_the_token() -> None:
    body = _error_body(code="INTERNAL_ERROR", message="saw authorization: BEARER abc.def-123")
    exc = error_from_response(500, {}, body)
    assert "abc.def-123" not in str(exc)
    assert "BEARER <redacted>" in str(exc)
    exc = error_from_response(500, {}, b"token=abcdef123&x=1 access_token: 'zzz999'")
    assert "abcdef123" not in str(exc)
    assert "zzz999" not in str(exc)


def test_control_characters_and_bidi_are_escaped() -> None:
    nasty = "ok\x1b[2J\r\nFAKE LOG LINE\u202egnp.exe\x85\x00\u200b"
    body = _error_body(code=nasty, type=nasty, message=nasty, request_id=nasty)
    exc = error_from_response(400, {}, body)
    for text in (str(exc), repr(exc), exc.message, exc.request_id or "", exc.code or ""):
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in text), text
        assert "\u202e" not in text
        assert "\u200b" not in text
    assert "\\x1b[2J" in exc.message
    assert "\\u202e" in exc.message
    assert escape("a\ud800b") == "a\\ud800b"  # a lone surrogate cannot be encoded


def test_server_text_is_capped() -> None:
    exc = error_from_response(
        500, {"X-Request-Id": "r" * 10_000}, _error_body(message="m" * 100_000)
    )
    assert len(exc.message) < 300
    assert len(exc.request_id or "") < 200
    exc = error_from_response(502, {}, b"<html>" + b"x" * 100_000)
    assert len(exc.message) < 300


def test_scrubbing_happens_before_cutting() -> None:
    # A token straddling the cut must not leave its first half behind.
    text = "x" * 190 + TOKEN
    assert TOKEN[:10] not in clean(text, (TOKEN,))
    assert TOKEN[:10] not in clean("x" * 190 + "Bearer " + TOKEN)


def test_scrub_helpers() -> None:
    assert scrub(f"a {TOKEN} b", (TOKEN,)) == "a <redacted> b"
    assert scrub("Bearer\t\tabc") == "Bearer\t\t<redacted>"
    assert escape("\x1b\x7f\u2066") == "\\x1b\\x7f\\u2066"
    deep: Any = TOKEN
    for _ in range(200):
        deep = [deep]
    assert TOKEN not in repr(scrub_data({"k": deep}, (TOKEN,)))
    assert scrub_data({"n": 1, "s": "Bearer x"}) == {"n": 1, "s": "Bearer <redacted>"}


def test_decode_json_snippet_is_scrubbed_and_escaped() -> None:
    with pytest.raises(errors.MalformedResponse) as info:
        decode_json(f"\x1b[31mAuthorization: Bearer {TOKEN}".encode(), request_id="r\x1b")
    text = str(info.value) + repr(info.value)
    assert TOKEN not in text
    assert "\x1b" not in text
    assert info.value.__context__ is None


def test_status_dates_are_shown_safely() -> None:
    with pytest.raises(errors.MalformedResponse) as info:
        ConnectionInfo.from_data(
            {"id": "c", "status": "active", "last_sync_at": "\x1b[2J" + "9" * 1000}, None
        )
    assert "\x1b" not in str(info.value)
    assert len(str(info.value)) < 400


async def test_connection_passes_its_token_to_the_scrubber(make_pool: Any) -> None:
    # The token is echoed without any "Bearer" in front: only the connection knows it.
    body = _error_body(code="PERMISSION_DENIED", message=f"no access for {TOKEN}")

    async with make_pool(lambda call: respond(403, body=body)) as (pool, _):
        with pytest.raises(errors.PermissionDenied) as info:
            await pool.connection(TOKEN).get("assets", "a")
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)


def test_parse_single_errors_carry_no_body() -> None:
    with pytest.raises(errors.MalformedResponse) as info:
        parse_single(b"[1, 2]", request_id="req_1")
    assert info.value.request_id == "req_1"


@example(text="token=abc", secret="zz", limit=80)
@example(text="api_key:abc", secret="zz", limit=80)
@example(text="Bearer+abc", secret="zz", limit=80)
@example(text="id-abc-9", secret="abc", limit=80)
@example(text="abcdef", secret="zz", limit=3)
@example(text="Bearer abc", secret="zz", limit=80)
@example(text="x%2By", secret="+", limit=80)
@example(text="Bearer%20abc", secret="zz", limit=80)
@given(
    text=st.text(alphabet="abcXYZ0129FD._-:=+% \x1b\u202etokenBearer", max_size=60),
    secret=st.text(alphabet="abc019._-+/=", min_size=1, max_size=8),
    limit=st.integers(min_value=1, max_value=80),
)
def test_clean_is_the_same_whether_or_not_text_takes_the_plain_path(
    text: str, secret: str, limit: int
) -> None:
    # The short cut for plain text (request IDs) must answer as the full rules do.
    slow = escape(scrub(text, (secret,)))
    if len(slow) > limit:
        slow = f"{slow[:limit]}... ({len(slow) - limit} more characters)"
    assert clean(text, (secret,), limit=limit) == slow
    # Secrets given as a one-shot iterator are still all applied.
    assert clean(text, iter([secret]), limit=limit) == slow


def test_a_plain_request_id_that_holds_the_token_is_still_scrubbed() -> None:
    assert clean("req-tok123-x", iter(["tok123"])) == f"req-{REDACTED}-x"
    assert clean("req-abc_1.2") == "req-abc_1.2"


def test_short_token_is_not_cut_out_of_other_words() -> None:
    from makini_async._wire.scrub import clean, scrub

    text = "ClientConnectionError: token t refused"
    assert scrub(text, ["t"]) == "ClientConnectionError: token <redacted> refused"
    assert clean("t", ["t"]) == "<redacted>"
    assert scrub("abc1234 x abc1234y", ["abc1234"]) == "<redacted> x abc1234y"
    # A secret of 8 characters or more is redacted wherever it appears.
    assert scrub("xxabcdefghxx", ["abcdefgh"]) == "xx<redacted>xx"
