"""Shared helpers for the mock server tests: a plain aiohttp client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest_asyncio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Client:
    """A thin aiohttp wrapper: ``await client.call(method, path, token, ...)``."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.base = ""

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = "tok",  # noqa: S107 - a test token
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs.update(auth(token))
        async with self.session.request(
            method, self.base + path, params=params, json=json, data=data, headers=hdrs
        ) as resp:
            raw = await resp.read()
            body = await resp.json() if raw else None
            return resp.status, body, resp.headers

    async def walk(self, entity: str, token: str = "tok", **params: Any) -> list[dict[str, Any]]:  # noqa: S107
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {k: str(v) for k, v in params.items()}
            if cursor:
                query["cursor"] = cursor
            status, body, _ = await self.call("GET", f"/api/v1/{entity}", token, params=query)
            assert status == 200, body
            out.extend(body["data"])
            cursor = body["next_cursor"]
            if not cursor:
                return out


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest_asyncio.fixture
async def client(makini_server: Any, session: aiohttp.ClientSession) -> Client:
    c = Client(session)
    c.base = makini_server.url
    return c


@pytest_asyncio.fixture
async def make_client(session: aiohttp.ClientSession) -> Any:
    def make(server: Any) -> Client:
        c = Client(session)
        c.base = server.url
        return c

    return make
