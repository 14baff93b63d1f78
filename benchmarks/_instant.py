"""A transport that answers every request at once, for benchmarks with no HTTP in them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy

from makini_async._client.transport import RawResponse

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class InstantTransport:
    """Answers 200 with ``bodies[n]`` for cursor ``pN``, ``bodies[0]`` for no cursor."""

    def __init__(self, bodies: Sequence[bytes], *, request_id: str = "req_0123456789ab") -> None:
        self.bodies = bodies
        self.headers = CIMultiDictProxy(
            CIMultiDict({"Content-Type": "application/json", "X-Request-Id": request_id})
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
        cursor = (params or {}).get("cursor")
        return RawResponse(200, self.headers, self.bodies[int(cursor[1:]) if cursor else 0])

    async def close(self) -> None:
        return None
