"""What a pool knows of each connection's status at Makini, from webhooks and the watch.

Webhooks name a connection by Makini's connection id (``GET /connection`` ->
``data.id``), not by token. The directory maps ids to handles: an id given
with ``pool.bind_connection_id()``, or learnt by ``conn.info()`` (which sets
``conn.connection_id``; a miss rescans the pool's handles, so ids learnt
after the last scan are found too).

Both sources feed one record per handle through :meth:`ConnectionDirectory.update`:

============================  =====================================================
status                        what happens to the handle
============================  =====================================================
``reauthorization_required``  marked (later calls fail fast without a request;
                              ``on_reauthorization_required`` fires once)
``disconnected``              marked disconnected (later calls fail fast)
``offline``                   remembered; calls still go out (502s are retried
                              and trip the connection's own breaker)
``active``                    remembered; the watch (which asked with this very
                              token) also clears a mark; a webhook never does,
                              since after a reconnection the *new* token works,
                              not the marked one
============================  =====================================================

A ``reauthorization_required`` or ``disconnected`` event made before the
handle's token last changed (``conn.token_changed_at``) is about the old
token and is ignored. The receiver calls :meth:`ConnectionDirectory.apply_webhook`
once per event id: a duplicate delivery never reaches the pool.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final, Literal

import attrs

from makini_async.connection import Connection  # noqa: TC001 - attrs field type, resolvable at run time
from makini_async.errors import UsageError
from makini_async.instrumentation import ConnectionState, ConnectionStateEvent, emit
from makini_async.models._fields import to_datetime

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Iterable

    from makini_async.webhooks import WebhookEvent

__all__ = ["STATUSES", "ConnectionDirectory", "StatusChange"]

logger = logging.getLogger("makini_async")

#: Connection statuses of the contract.
STATUSES: Final = frozenset({"active", "reauthorization_required", "offline", "disconnected"})

_MARKS: Final = {
    ConnectionState.REAUTHORIZATION_REQUIRED: "reauthorization_required",
    ConnectionState.DISCONNECTED: "disconnected",
}


@attrs.frozen(kw_only=True)
class StatusChange:
    """A connection's status at Makini changed (seen by the watch or a webhook).

    ``old`` and ``new`` are statuses of the contract (``active``,
    ``reauthorization_required``, ``offline``, ``disconnected``);
    ``connection`` is the handle's name and ``handle`` the handle itself.
    """

    connection: str
    old: str
    new: str
    source: Literal["watch", "webhook"]
    connection_id: str | None = None
    request_id: str | None = None
    event_id: str | None = None
    handle: Connection = attrs.field(repr=False, eq=False)

    @property
    def kind(self) -> str:
        """``recovered`` for a return to ``active``, else the new status."""
        return "recovered" if self.new == "active" else self.new


class ConnectionDirectory:
    """Connection ids to handles, and the last status known of each handle."""

    def __init__(
        self,
        handles: Callable[[], Iterable[Connection]],
        current: Callable[[Connection], Connection | None],
    ) -> None:
        self._handles = handles
        # The pool's live handle for a handle's token (the pool may have
        # evicted an idle one and made a fresh one since): marks go there.
        self._current = current
        self._by_id: dict[str, Connection] = {}
        # By token, not handle, so a status outlives an evicted handle.
        self._status: dict[str, str] = {}
        # created_at of the newest status event applied per connection id:
        # an older one delivered late must not undo it.
        self._newest: dict[str, dt.datetime | str] = {}

    def bind(self, conn: Connection, connection_id: str) -> None:
        if not isinstance(connection_id, str) or not connection_id:
            msg = f"connection_id must be a non-empty string, got {connection_id!r}"
            raise UsageError(msg)
        conn.connection_id = connection_id
        self._by_id[connection_id] = conn

    def find(self, connection_id: str) -> Connection | None:
        conn = self._by_id.get(connection_id)
        if conn is None or conn.connection_id != connection_id:
            self._by_id = {
                c.connection_id: c for c in self._handles() if c.connection_id is not None
            }
            conn = self._by_id.get(connection_id)
        if conn is None:
            return None
        live = self._current(conn)
        if live is not None and live is not conn:
            self.bind(live, connection_id)
        return live

    def status(self, conn: Connection) -> str:
        """The last status known: recorded, else what the handle's own marks say."""
        known = self._status.get(conn.token)
        if known is not None:
            return known
        return _MARKS.get(conn.state, "active")

    async def update(
        self,
        conn: Connection,
        new: str,
        *,
        source: Literal["watch", "webhook"],
        request_id: str | None = None,
        event_id: str | None = None,
    ) -> StatusChange | None:
        """Record ``new`` for ``conn`` and mark the handle; the change, if it is one."""
        old = self.status(conn)
        self._status[conn.token] = new
        reason = f"{source}: connection status {new}"
        if new == "reauthorization_required":
            await conn._mark_reauthorization(request_id, reason)
        elif new == "disconnected":
            await conn._set_sticky(ConnectionState.DISCONNECTED, reason, request_id)
        elif new == "active" and source == "watch" and conn.state in _MARKS:
            previous = conn.state
            conn.reset()
            listeners = conn.shared.hooks.on_connection_state
            if listeners:
                event = ConnectionStateEvent(
                    conn.name, previous, ConnectionState.ACTIVE, reason, request_id
                )
                await emit(listeners, event)
        if old == new:
            return None
        logger.info("connection %s is %s (was %s, from the %s)", conn.name, new, old, source)
        return StatusChange(
            connection=conn.name,
            old=old,
            new=new,
            source=source,
            connection_id=conn.connection_id,
            request_id=request_id,
            event_id=event_id,
            handle=conn,
        )

    async def apply_webhook(self, event: WebhookEvent) -> StatusChange | None:
        """Apply a status event to the handle of its connection id (others are ignored)."""
        if event.type == "connection.reauthorization_required":
            new: object = "reauthorization_required"
        elif event.type == "connection.status_changed":
            new = event.data.get("status")
        else:
            return None
        if new not in STATUSES:
            logger.warning("webhook event %s has an unknown connection status", event.id)
            return None
        conn = self.find(event.connection_id)
        if conn is None:
            logger.info("webhook event %s: no handle has its connection id", event.id)
            return None
        when = _instant(event.created_at)
        if new in _MARKS.values() and _before_token_change(conn, when):
            # About the token the customer replaced since: the handle's
            # current token is not the one that needs reauthorization.
            logger.info("webhook event %s predates the connection's new token; ignored", event.id)
            return None
        newest = self._newest.get(event.connection_id)
        if newest is not None and _after(newest, when):
            logger.info("webhook event %s is older than one already applied; ignored", event.id)
            return None
        self._newest[event.connection_id] = when
        return await self.update(conn, str(new), source="webhook", event_id=event.id)


def _instant(created_at: str) -> dt.datetime | str:
    try:
        return to_datetime(created_at)
    except (TypeError, ValueError, OverflowError):
        return created_at


def _before_token_change(conn: Connection, when: dt.datetime | str) -> bool:
    """Whether an event made at ``when`` is older than the handle's last token change."""
    changed: float | None = getattr(conn, "token_changed_at", None)  # on the pool's clock
    if changed is None or isinstance(when, str):
        return False
    # The same instant on the wall clock, which event times are on.
    changed_wall: float = time.time() - (conn.shared.clock() - changed)
    return when.timestamp() < changed_wall


def _after(when: dt.datetime | str, newest: dt.datetime | str) -> bool:
    if isinstance(when, str) or isinstance(newest, str):
        return str(when) > str(newest)
    return when > newest
