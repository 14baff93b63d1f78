"""The HTTP transport: the only library module that imports aiohttp.

Every aiohttp exception is translated here, most specific first, into the
:class:`~makini_async.errors.TransportError` family.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

import aiohttp
import attrs

from makini_async import __version__
from makini_async._constants import USER_AGENT
from makini_async.errors import ConnectionFailed, RequestTimeout, TransportError, UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from makini_async._config import Timeouts

__all__ = ["AiohttpTransport", "RawResponse", "Transport"]


@attrs.frozen(slots=True)
class RawResponse:
    """A complete HTTP answer: status, case-insensitive headers, body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """What the pool needs from HTTP. Tests substitute a fake."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        body: bytes | None,
    ) -> RawResponse:
        """Send one request and read the whole answer, or raise TransportError."""
        ...

    async def close(self) -> None:
        """Release every socket."""
        ...


class AiohttpTransport:
    """One :class:`aiohttp.ClientSession` over one connector, shared by every connection.

    Created inside the running loop (by :class:`MakiniPool` on entry).
    """

    def __init__(self, *, timeouts: Timeouts, max_connections: int) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=timeouts.total, connect=timeouts.connect, sock_read=timeouts.read
        )
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"User-Agent": f"{USER_AGENT}/{__version__}", "Accept": "application/json"},
            raise_for_status=False,
            trust_env=False,
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        body: bytes | None,
    ) -> RawResponse:
        try:
            async with self._session.request(
                method, url, headers=headers, params=params, data=body
            ) as resp:
                data = await resp.read()
                return RawResponse(resp.status, resp.headers, data)
        except asyncio.TimeoutError:
            msg = f"{method} {_path(url)} timed out"
            raise RequestTimeout(msg) from None
        except aiohttp.ClientPayloadError as exc:
            msg = f"{method} {_path(url)}: connection dropped while reading the body ({exc})"
            raise ConnectionFailed(msg) from None
        except aiohttp.ClientConnectionError as exc:
            msg = f"{method} {_path(url)}: connection failed ({type(exc).__name__}: {exc})"
            raise ConnectionFailed(msg) from None
        except aiohttp.InvalidURL as exc:
            msg = f"invalid URL {exc}"
            raise UsageError(msg) from None
        except aiohttp.ClientError as exc:
            msg = f"{method} {_path(url)}: {type(exc).__name__}: {exc}"
            raise TransportError(msg) from None

    async def close(self) -> None:
        await self._session.close()


def _path(url: str) -> str:
    # Errors name the path, not the host: shorter, and never any query secrets.
    start = url.find("/", url.find("//") + 2) if "//" in url else 0
    return url[start:] if start >= 0 else url
