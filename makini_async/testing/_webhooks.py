"""The mock server's webhook sender: signed, seeded, duplicated, shuffled."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
import orjson

from makini_async.webhooks import SIGNATURE_HEADER, sign

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = ["WebhookDelivery", "WebhookSender"]


@attrs.frozen
class WebhookDelivery:
    """One POST the sender made: which event, which attempt, what came back, how fast."""

    event_id: str
    type: str
    attempt: int
    status: int | None
    error: str | None = None
    #: Seconds from sending the request to reading the whole answer.
    elapsed: float = 0.0


class WebhookSender:
    """POSTs signed webhook events; owns (and closes) one ClientSession."""

    def __init__(self, seed: int, connection_id_of: Callable[[str | None], str]) -> None:
        self._rng = random.Random(f"makini-mock-webhooks:{seed}")
        self._connection_id_of = connection_id_of
        self._session: aiohttp.ClientSession | None = None
        self._last_created = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        #: Every delivery made so far, in sending order.
        self.deliveries: list[WebhookDelivery] = []

    def _event_id(self) -> str:
        return f"evt_{self._rng.getrandbits(64):016x}"

    def _created_at(self) -> str:
        # Microseconds, strictly increasing: events made one after the other
        # stay ordered by created_at however their deliveries are shuffled.
        now = max(
            dt.datetime.now(dt.timezone.utc),
            self._last_created + dt.timedelta(microseconds=1),
        )
        self._last_created = now
        return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    async def send(
        self,
        url: str,
        secret: str | bytes,
        event_type: str | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        connection_token: str | None = None,
        duplicate: int = 0,
        shuffle: bool = False,
        events: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
    ) -> list[WebhookDelivery]:
        """Deliver one event (or ``events``), each ``1 + duplicate`` times.

        With ``shuffle`` the deliveries go out in a seeded random order
        (``created_at`` keeps the order the events were made in, to the
        microsecond). Each delivery is signed at its own send time. Returns
        the deliveries.
        """
        batch = list(events or [])
        if event_type is not None:
            batch.insert(0, (event_type, data or {}))
        if not batch:
            msg = "send() needs event_type or events"
            raise ValueError(msg)
        connection_id = self._connection_id_of(connection_token)
        payloads: list[tuple[str, str, bytes]] = []
        for etype, edata in batch:
            payload = {
                "id": self._event_id(),
                "type": etype,
                "created_at": self._created_at(),
                "connection_id": connection_id,
                "data": dict(edata),
            }
            payloads.append((str(payload["id"]), etype, orjson.dumps(payload)))
        plan = [(p, attempt) for p in payloads for attempt in range(1 + duplicate)]
        if shuffle:
            self._rng.shuffle(plan)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        results = []
        for (event_id, etype, body), attempt in plan:
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(secret, body, int(time.time())),
            }
            started = time.monotonic()
            try:
                async with self._session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status, error = resp.status, None
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status, error = None, type(exc).__name__
            elapsed = time.monotonic() - started
            delivery = WebhookDelivery(event_id, etype, attempt, status, error, elapsed)
            results.append(delivery)
            self.deliveries.append(delivery)
        return results

    async def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None
