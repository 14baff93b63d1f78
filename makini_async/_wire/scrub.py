"""Making server-derived text safe to show: no credentials, no control characters.

Everything a server sends back (error messages, details, request IDs, the
start of a body that is not JSON) can echo what the client sent, including its
``Authorization`` header, and can carry terminal escape sequences or bidi
overrides that forge or hide log lines. Text passes through :func:`clean`
before it reaches an exception or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

__all__ = ["PLAIN", "REDACTED", "clean", "escape", "scrub", "scrub_data"]

REDACTED: Final = "<redacted>"

#: Longest server text kept in a message; the rest is summarised.
MAX_TEXT: Final = 200

# ``Bearer <credential>`` in any case, and ``authorization``/``token``
# key-value pairs (headers, query strings, JSON), whatever the credential.
_CREDENTIAL: Final = re.compile(
    r"""(?ix)
    (\bbearer(?:\s|%20|\+)+)[^\s"'\\,;<>]+
    | (\b(?:authorization|access[_-]?token|api[_-]?key|token)\b["']?\s*[:=]\s*["']?)
      (?!bearer\b)[^\s"'\\,;<>]+
    """
)

# C0 and C1 controls, DEL, bidi overrides and isolates, zero-width characters,
# line and paragraph separators, the BOM and lone surrogates: anything that
# can move the cursor, hide text or reorder a line when it is displayed.
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def _credential(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2)) + REDACTED


#: Secrets shorter than this are redacted only where they stand alone: a
#: one-letter test token would otherwise be cut out of every word holding it.
SHORT_SECRET: Final = 8


def _redact(text: str, form: str) -> str:
    if len(form) >= SHORT_SECRET:
        return text.replace(form, REDACTED)
    alone = rf"(?<![A-Za-z0-9_]){re.escape(form)}(?![A-Za-z0-9_])"
    return re.sub(alone, REDACTED, text)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each of ``secrets`` and anything credential-shaped redacted.

    A secret of fewer than :data:`SHORT_SECRET` characters is redacted where it
    is not part of a longer word, so it is never printed on its own.
    """
    for secret in secrets:
        if not secret:
            continue
        # Also as sent in a URL or form, where ``+``, ``/`` and ``=`` are encoded.
        for form in {secret, quote(secret, safe="")}:
            if form in text:
                text = _redact(text, form)
    return _CREDENTIAL.sub(_credential, text)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` with every unsafe character written as a visible escape (``\\x1b``)."""
    return _UNSAFE.sub(_visible, text)


#: Text of only these characters (a request ID, a code) has nothing to escape and
#: cannot hold the credential pattern, which needs a space, ``%``, ``+``, ``:`` or ``=``.
PLAIN: Final = re.compile(r"[A-Za-z0-9._\-]*")


def clean(text: str, secrets: Iterable[str] = (), *, limit: int = MAX_TEXT) -> str:
    """Server text ready for a message: scrubbed, escaped, at most ``limit`` characters.

    Scrubbing runs on the whole text first, so cutting it can never leave part
    of a credential behind.
    """
    secrets = tuple(secrets)  # read twice below (a tuple is not copied)
    if (
        len(text) <= limit
        and PLAIN.fullmatch(text) is not None
        and not any(secret and secret in text for secret in secrets)
    ):
        return text  # one check for every answer's request ID
    text = escape(scrub(text, secrets))
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


#: Nesting kept in error details; deeper levels are replaced (no recursion limit).
_MAX_DEPTH: Final = 32
_TRUNCATED: Final = "<truncated>"


def scrub_data(value: Any, secrets: Iterable[str] = (), *, _depth: int = 0) -> Any:
    """A copy of JSON data with every string (key or value) scrubbed."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return scrub(value, secrets)
    if _depth >= _MAX_DEPTH:
        return _TRUNCATED if isinstance(value, (Mapping, list)) else value
    if isinstance(value, Mapping):
        return {
            scrub(str(k), secrets): scrub_data(v, secrets, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub_data(v, secrets, _depth=_depth + 1) for v in value]
    return value
