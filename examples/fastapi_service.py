"""A FastAPI service over Makini: one pool for the app's lifetime, bounded calls, typed answers.

Run it against the embedded mock server::

    python -m makini_async.testing --port 8765 &
    MAKINI_BASE_URL=http://127.0.0.1:8765 uvicorn examples.fastapi_service:app

* ``GET /customers/{customer}/work-orders/{id}``: a typed ``WorkOrder``,
  answered as the API's JSON (``record.to_dict()``).
* ``GET /customers/{customer}/work-orders/{id}/quick``: the latency-sensitive
  route: at most 2 s, no retries; 504 past that, 503 while the customer's
  system is rate-limited or down.
* ``PUT /customers/{customer}/token``: the customer reconnected; the new token
  is picked up from the token store by the connection's provider, which keeps
  the connection's cooldown and breaker.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request

import makini_async
from makini_async import MakiniPool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

#: Where the app keeps each customer's current token (a vault, a database, ...).
TOKENS: dict[str, str] = {}


def token_provider(customer: str) -> makini_async.TokenProvider:
    """The connection asks this for the customer's current token (and again after a 401)."""

    def current() -> str:
        return TOKENS[customer]

    return current


def create_app(*, base_url: str | None = None, testing: bool = False) -> FastAPI:
    """The app; ``testing=True`` makes its pool's waits zero (for its tests)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = base_url or os.environ.get("MAKINI_BASE_URL", "https://api.makini.io")
        async with MakiniPool(base_url=url, testing=testing) as pool:
            app.state.pool = pool
            yield

    app = FastAPI(lifespan=lifespan)

    def connection(request: Request, customer: str) -> makini_async.Connection:
        if customer not in TOKENS:
            raise HTTPException(404, f"unknown customer {customer!r}")
        pool: MakiniPool = request.app.state.pool
        return pool.connection(name=customer, token=token_provider(customer))

    @app.get("/customers/{customer}/work-orders/{order_id}")
    async def work_order(request: Request, customer: str, order_id: str) -> dict[str, Any]:
        conn = connection(request, customer)
        try:
            order = await conn.work_orders.get(order_id)
        except makini_async.NotFound:
            raise HTTPException(404, "no such work order") from None
        return order.to_dict()

    @app.get("/customers/{customer}/work-orders/{order_id}/quick")
    async def quick(request: Request, customer: str, order_id: str) -> dict[str, Any]:
        fast = connection(request, customer).with_options(timeout=2.0, max_retries=0)
        try:
            order = await fast.work_orders.get(order_id)
        except makini_async.RequestTimeout:
            raise HTTPException(504, "the customer's system is slow right now") from None
        except (makini_async.RateLimitError, makini_async.ServerError) as exc:
            raise HTTPException(503, f"try again later ({exc.request_id})") from None
        return order.to_dict()

    @app.put("/customers/{customer}/token")
    async def new_token(customer: str, body: dict[str, str]) -> dict[str, str]:
        TOKENS[customer] = body["token"]  # the provider hands it out from the next 401 on
        return {"customer": customer}

    return app


app = create_app()
