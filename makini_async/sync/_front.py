"""A sync's HTTP face: ``POST /webhooks/makini``, ``GET /status`` and ``GET /healthz``.

Webhooks go through a :class:`~makini_async.webhooks.WebhookReceiver` (the
contract's signature, its replay window, de-duplication by event id), which
applies status events to the pool in the order Makini made them. What the
sync does then reads that ordered status, so events delivered late or twice
change nothing: ``sync.completed`` pulls its chain at once (coalesced with a
running pull), a connection that needs reauthorization is paused, and one
that is active again resumes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from makini_async.webhooks import (
    ConnectionStatusChangedEvent,
    ReauthorizationRequiredEvent,
    SyncCompletedEvent,
    WebhookReceiver,
)

if TYPE_CHECKING:
    from aiohttp import web

    from makini_async.sync._service import SyncService
    from makini_async.webhooks import WebhookEvent

__all__ = ["WEBHOOK_PATH", "make_app", "make_receiver"]

#: Where deliveries are POSTed (the receiver's sub-application at ``/webhooks/``).
WEBHOOK_PATH = "/webhooks/makini"
_PAUSED = frozenset({"reauthorization_required", "disconnected"})


def make_receiver(
    service: SyncService, secrets: str | bytes | list[str | bytes]
) -> WebhookReceiver:
    """A receiver bound to the service's pool whose events steer the service."""

    async def on_event(event: WebhookEvent) -> None:
        handle = service.held(event.connection_id)
        if handle is None:
            return  # not a connection this sync holds (or its id is not known yet)
        name = handle.name
        if isinstance(event, SyncCompletedEvent):
            service.trigger(name, event.entity)
        elif isinstance(event, (ReauthorizationRequiredEvent, ConnectionStatusChangedEvent)):
            # The pool applied it in Makini's order: act on that status, not on the event.
            status = service.pool.connection_status(handle)
            if status in _PAUSED:
                await service.needs_reauthorization(name)
            elif status == "active":
                await service.resume(name)

    return WebhookReceiver(secrets, on_event, pool=service.pool)


def make_app(service: SyncService, receiver: WebhookReceiver | None) -> web.Application:
    """The aiohttp application: webhooks (with a receiver), status and health."""
    from aiohttp import web  # noqa: PLC0415 - importing the library must not load aiohttp.web

    async def status(_request: web.Request) -> web.Response:
        return web.json_response(service.status())

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/healthz", healthz)
    if receiver is not None:
        # The receiver's own sub-application: it starts and drains the receiver with the server.
        app.add_subapp("/webhooks/", receiver.app("/makini"))
    return app
