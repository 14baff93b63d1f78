"""Webhook signatures, events and the idempotency helper (pure, no sockets)."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from makini_async.errors import WebhookVerificationError
from makini_async.webhooks import (
    EVENT_TYPES,
    SeenEvents,
    WebhookEvent,
    parse_event,
    sign,
    verify,
)

NOW = 1_700_000_000
BODY = (
    b'{"id":"evt_1","type":"sync.completed","created_at":"2024-01-01T00:00:00Z",'
    b'"connection_id":"conn_1","data":{"entity":"work-orders"}}'
)


def test_sign_format_and_value() -> None:
    header = sign("whsec", BODY, NOW)
    expected = hmac.new(b"whsec", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert sign(b"whsec", BODY, NOW) == header


def test_verify_good() -> None:
    verify("whsec", BODY, sign("whsec", BODY, NOW), now=NOW)
    verify("whsec", BODY, sign("whsec", BODY, NOW), now=NOW + 299)


def test_verify_tampered_body_and_signature() -> None:
    header = sign("whsec", BODY, NOW)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify("whsec", BODY + b" ", header, now=NOW)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify("other", BODY, header, now=NOW)
    forged = header[:-1] + ("0" if header[-1] != "0" else "1")
    with pytest.raises(WebhookVerificationError):
        verify("whsec", BODY, forged, now=NOW)
    # Changing the timestamp invalidates the signature.
    with pytest.raises(WebhookVerificationError):
        verify("whsec", BODY, header.replace(f"t={NOW}", f"t={NOW + 1}"), now=NOW)


def test_verify_stale_and_future() -> None:
    header = sign("whsec", BODY, NOW)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify("whsec", BODY, header, now=NOW + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify("whsec", BODY, header, now=NOW - 301)
    verify("whsec", BODY, header, now=NOW + 1000, tolerance=2000)


def test_verify_rotation() -> None:
    old = sign("old", BODY, NOW)
    new = sign("new", BODY, NOW)
    both = f"{new},v1={old.split('v1=')[1]}"
    verify("old", BODY, both, now=NOW)
    verify("new", BODY, both, now=NOW)
    verify(["new", "old"], BODY, old, now=NOW)
    verify([b"unused", "new"], BODY, new, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify(["x", "y"], BODY, both, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify([], BODY, both, now=NOW)


@pytest.mark.parametrize("header", [None, "", "v1=abc", f"t={NOW}", "t=soon,v1=abc", "garbage"])
def test_verify_malformed_headers(header: str | None) -> None:
    with pytest.raises(WebhookVerificationError):
        verify("whsec", BODY, header, now=NOW)


@given(secret=st.binary(min_size=1, max_size=40), body=st.binary(max_size=200),
       ts=st.integers(0, 2**33))  # fmt: skip
def test_sign_verify_roundtrip(secret: bytes, body: bytes, ts: int) -> None:
    verify(secret, body, sign(secret, body, ts), now=ts)


def test_parse_event() -> None:
    event = parse_event(BODY)
    assert event == WebhookEvent(
        id="evt_1",
        type="sync.completed",
        created_at="2024-01-01T00:00:00Z",
        connection_id="conn_1",
        data={"entity": "work-orders"},
    )
    assert event.known_type
    unknown = orjson.loads(BODY) | {"type": "future.event"}
    assert not parse_event(orjson.dumps(unknown)).known_type
    assert "connection.reauthorization_required" in EVENT_TYPES
    assert len(EVENT_TYPES) == 5


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"id": 1}', b'{"id":"e","type":"t","created_at":"c"}',
     b'{"id":"e","type":"t","created_at":"c","connection_id":"x","data":[]}'],
)  # fmt: skip
def test_parse_event_rejects(body: bytes) -> None:
    with pytest.raises(WebhookVerificationError):
        parse_event(body)


def test_seen_events_lru() -> None:
    seen = SeenEvents(maxsize=3)
    assert seen.check_and_add("a")
    assert not seen.check_and_add("a")
    assert seen.check_and_add("b")
    assert seen.check_and_add("c")
    assert not seen.check_and_add("a")  # refreshes "a"
    assert seen.check_and_add("d")  # evicts "b"
    assert "b" not in seen
    assert "a" in seen
    assert len(seen) == 3
    assert seen.check_and_add("b")
    with pytest.raises(ValueError):
        SeenEvents(0)
