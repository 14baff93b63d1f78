"""What a sync knows of each connection and chain, as ``GET /status`` shows it (no token)."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

import attrs

from makini_async.bulk import Outcome
from makini_async.bulk._report import error_fields, first_sentence
from makini_async.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from makini_async.bulk import ChainReport
    from makini_async.sync._table import ChainRow

__all__ = ["ChainStatus", "ConnectionStatus", "chain_error", "connection_pairs", "parse_utc"]

#: A connection's states on the status page.
ACTIVE = "active"
REAUTHORIZATION_REQUIRED = "reauthorization_required"
DISCONNECTED = "disconnected"


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.timezone.utc).isoformat()


def parse_utc(text: str | None) -> dt.datetime | None:
    """A canonical ``...Z`` time, or ``None``."""
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return None


def connection_pairs(connections: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{name: token}``, or :class:`UsageError` for anything but unique (name, token) pairs."""
    wanted: dict[str, str] = {}
    for item in connections:
        if not (
            isinstance(item, (tuple, list))
            and len(item) == 2
            and all(isinstance(part, str) and part for part in item)
        ):
            msg = f"a sync takes (name, token) pairs, got a {type(item).__name__}"
            raise UsageError(msg)
        name, token = item
        if name in wanted:
            raise UsageError(f"connection names must be unique: {name!r} is given twice")
        wanted[name] = token
    return wanted


def chain_error(chain: ChainReport) -> str | None:
    """A chain's failure in one line (code and first sentence), or ``None`` if it completed."""
    if chain.outcome is Outcome.COMPLETED:
        return None
    code, message, request_id = error_fields(chain.error)
    text = f"{code}: {first_sentence(message)}" if message else code
    return text if request_id is None else f"{text} (request_id={request_id})"


@attrs.define(slots=True)
class ChainStatus:
    """One (connection, entity): its last success and error, records landed, newest change."""

    last_success: dt.datetime | None = None
    last_error: str | None = None
    landed: int = 0
    #: The newest ``updated_at`` landed (what lag is measured from).
    newest: dt.datetime | None = None
    running: bool = False

    @classmethod
    def of(cls, row: ChainRow) -> ChainStatus:
        return cls(row.last_success, row.last_error, row.landed)

    def lag(self, now: dt.datetime) -> float | None:
        return None if self.newest is None else max(0.0, (now - self.newest).total_seconds())

    def to_json(self, now: dt.datetime) -> dict[str, Any]:
        return {
            "last_success": _iso(self.last_success),
            "last_error": self.last_error,
            "lag": self.lag(now),
            "landed": self.landed,
            "running": self.running,
        }


@attrs.define(slots=True)
class ConnectionStatus:
    """One connection: its state and its chains (by entity path name)."""

    state: str = ACTIVE
    chains: dict[str, ChainStatus] = attrs.field(factory=dict)

    def summary_state(self) -> str:
        if self.state != ACTIVE:
            return self.state
        if any(c.last_error for c in self.chains.values()):
            return "failing"
        if any(c.running for c in self.chains.values()):
            return "syncing"
        return ACTIVE

    def to_json(self, name: str, now: dt.datetime) -> dict[str, Any]:
        return {
            "name": name,
            "state": self.summary_state(),
            "entities": {e: c.to_json(now) for e, c in sorted(self.chains.items())},
        }
