"""U+0000 in customer data: every sink lands it as U+FFFD, the same way.

PostgreSQL's ``text`` and ``jsonb`` cannot hold U+0000, so one NUL in one
value would otherwise fail its page on every run and block the tenant for
good. Every sink replaces it (in values, keys, ids and cursors' text) with
U+FFFD REPLACEMENT CHARACTER, so that a record reads back the same from
whichever sink it landed in. Sinks look for the escape in the JSON text they
encode anyway (orjson writes U+0000 as ``\\u0000``), so a page without a NUL
costs one byte search (:func:`makini_async._wire.texts.has_nul_escape`).
"""

from __future__ import annotations

from typing import Any

from makini_async._wire.texts import has_nul_escape

__all__ = ["NUL", "REPLACEMENT", "has_nul_escape", "without_nul"]

NUL = "\x00"
REPLACEMENT = "\ufffd"


def without_nul(value: Any) -> Any:
    """``value`` with U+0000 replaced by U+FFFD in every string, key and nested value.

    Values without a NUL come back as the same objects; others are copies.
    """
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(without_nul(v) for v in value)
    return value
