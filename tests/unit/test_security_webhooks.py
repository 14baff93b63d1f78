"""webhooks.verify refuses arguments that would weaken it."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from makini_async import errors
from makini_async.webhooks import parse_event, sign, verify

BODY = b'{"id":"evt_1","type":"sync.completed","created_at":"x","connection_id":"c","data":{}}'
NOW = 1_700_000_000


def _forged_with_empty_key(body: bytes, ts: int) -> str:
    digest = hmac.new(b"", f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


@pytest.mark.parametrize("secrets", ["", b"", [""], ["real", ""], [b"", "real"], (b"",)])
def test_empty_secrets_are_refused(secrets: Any) -> None:
    # Anyone can compute an HMAC keyed with nothing.
    with pytest.raises(errors.UsageError, match="empty"):
        verify(secrets, BODY, _forged_with_empty_key(BODY, NOW), now=NOW)


@pytest.mark.parametrize("tolerance", [float("nan"), float("inf"), -1, "300", None, True])
def test_tolerance_must_be_finite_and_non_negative(tolerance: Any) -> None:
    old = sign("whsec", BODY, NOW - 10**6)
    with pytest.raises(errors.UsageError, match="tolerance"):
        verify("whsec", BODY, old, tolerance=tolerance, now=NOW)


@pytest.mark.parametrize("now", [float("nan"), float("inf"), "now"])
def test_now_must_be_a_finite_number(now: Any) -> None:
    with pytest.raises(errors.UsageError, match="now"):
        verify("whsec", BODY, sign("whsec", BODY, NOW), now=now)


@pytest.mark.parametrize(
    ("secrets", "body", "header"),
    [
        ("whsec", "text body", "t=1,v1=00"),
        ("whsec", None, "t=1,v1=00"),
        ("whsec", BODY, b"t=1,v1=00"),
        ("whsec", BODY, 12),
        (12, BODY, "t=1,v1=00"),
        ([12], BODY, "t=1,v1=00"),
        ({"k": "v"}, BODY, "t=1,v1=00"),
        (None, BODY, "t=1,v1=00"),
    ],
)
def test_wrong_argument_types_are_usage_errors(secrets: Any, body: Any, header: Any) -> None:
    with pytest.raises(errors.UsageError):
        verify(secrets, body, header, now=NOW)


@pytest.mark.parametrize(
    "stamp", ["1_700_000_000", "\u0661\u0667\u0660\u0660", "9" * 5000, "-5", "+1700000000"]
)
def test_odd_timestamps_are_verification_errors(stamp: str) -> None:
    with pytest.raises(errors.WebhookVerificationError):
        verify("whsec", BODY, f"t={stamp},v1=00", now=NOW)


def test_non_ascii_signature_is_a_verification_error() -> None:
    with pytest.raises(errors.WebhookVerificationError):
        verify("whsec", BODY, f"t={NOW},v1=\u00e9\u00e9", now=NOW)


def test_valid_signatures_still_verify() -> None:
    verify("whsec", BODY, sign("whsec", BODY, NOW), now=NOW)
    verify(b"whsec", bytearray(BODY), sign("whsec", BODY, NOW), now=NOW, tolerance=0)
    verify(iter(["x", "whsec"]), BODY, sign("whsec", BODY, NOW), now=NOW)


def test_parse_event_wrong_type_is_usage_error() -> None:
    with pytest.raises(errors.UsageError):
        parse_event(123)  # type: ignore[arg-type]
    with pytest.raises(errors.WebhookVerificationError) as info:
        parse_event(b"[" * 5000)
    assert info.value.__context__ is None
