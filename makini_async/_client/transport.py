"""The HTTP transport: the only library module that imports aiohttp.

Every aiohttp exception is translated here, most specific first, into the
:class:`~makini_async.errors.TransportError` family.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Final, Protocol

import aiohttp
import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from makini_async._wire.constants import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_ERROR_BODY_BYTES,
    USER_AGENT,
    VERSION,
)
from makini_async._wire.scrub import PLAIN as _PLAIN
from makini_async._wire.scrub import clean
from makini_async.errors import (
    ConnectionFailed,
    MakiniError,
    RequestTimeout,
    ResponseTooLarge,
    TLSError,
    TransportError,
    UsageError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from makini_async._client.config import Timeouts

__all__ = ["AiohttpTransport", "RawResponse", "Transport"]


@attrs.define(slots=True, weakref_slot=False)
class RawResponse:
    """A complete HTTP answer: status, case-insensitive headers, body bytes.

    ``elapsed`` is how long the answer took on the wire (set by the send
    loop, which owns the clock): listings adapt their page sizes by it.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float = 0.0


class Transport(Protocol):
    """What the pool needs from HTTP. Tests substitute a fake.

    An implementation must not follow redirects (a 3xx is an error, see
    :class:`~makini_async.errors.UnexpectedRedirect`), must bound the body it
    reads, and must raise only :class:`~makini_async.errors.TransportError`.
    """

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
    Redirects are never followed, TLS certificates are always verified, and
    a body is read in chunks and given up as soon as it passes its cap.
    """

    def __init__(
        self,
        *,
        timeouts: Timeouts,
        max_connections: int,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_error_body_bytes: int = DEFAULT_MAX_ERROR_BODY_BYTES,
    ) -> None:
        # sock_connect, not connect: aiohttp arms a ``connect`` timer on every
        # request, even one that reuses a kept-alive connection, and the pool's
        # own limit (max_in_flight, which sizes this connector) means a request
        # never queues for a connection here.
        self._timeout = aiohttp.ClientTimeout(
            total=timeouts.total, sock_connect=timeouts.connect, sock_read=timeouts.read
        )
        self._max_body = max_body_bytes
        self._max_error_body = max_error_body_bytes
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"User-Agent": f"{USER_AGENT}/{VERSION}", "Accept": "application/json"},
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
        error: MakiniError
        request_id: str | None = None  # known once the headers are in
        try:
            async with self._session.request(
                method, url, headers=headers, params=params, data=body, allow_redirects=False
            ) as resp:
                status = resp.status
                answer: CIMultiDictProxy[str] | CIMultiDict[str] = resp.headers
                request_id = answer.get("X-Request-Id")
                if request_id is not None and not _plain(request_id, headers):
                    answer = _safe_headers(resp.headers, request_id, _secrets(headers))
                if 300 <= status < 400:
                    # Never followed, and its body never read: the send loop makes
                    # it an UnexpectedRedirect (see _wire.responses.redirect_error).
                    resp.close()
                    return RawResponse(status, answer, b"")
                length = resp.content_length
                limit = self._max_body if status < 400 else self._max_error_body
                if length is not None and length <= limit and "Content-Encoding" not in answer:
                    # Not compressed and within the cap: the declared length is what is
                    # read (aiohttp stops there), so one read is as safe as counting.
                    return RawResponse(status, answer, await resp.read())
                return RawResponse(status, answer, await self._read(resp, method, url))
        except asyncio.TimeoutError:
            error = RequestTimeout(f"{method} {_path(url)} timed out")
        except (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch, ssl.SSLError) as exc:
            error = TLSError(f"{method} {_path(url)}: TLS failed ({_describe(exc, headers)})")
        except aiohttp.ClientPayloadError as exc:
            error = ConnectionFailed(
                f"{method} {_path(url)}: connection dropped while reading the body "
                f"({_describe(exc, headers)})"
            )
        except aiohttp.ClientConnectionError as exc:
            error = ConnectionFailed(
                f"{method} {_path(url)}: connection failed ({_describe(exc, headers)})"
            )
        except aiohttp.InvalidURL as exc:
            error = UsageError(f"invalid URL {_describe(exc, headers)}")
        except aiohttp.ClientError as exc:
            error = TransportError(f"{method} {_path(url)}: {_describe(exc, headers)}")
        if request_id is not None:
            # The answer had begun (a body cut short, a timeout mid-body): support
            # can still find it by its ID.
            error.request_id = clean(request_id, _secrets(headers), limit=_ID_LIMIT)
        # Raised here, outside every handler, so the error has no __context__:
        # aiohttp's exceptions hold the request (headers and all) and must not
        # travel with it into logs and tracebacks.
        raise error

    async def _read(self, resp: aiohttp.ClientResponse, method: str, url: str) -> bytes:
        """The body, in chunks, within its cap.

        ``request`` reads a body of known length within its cap, not compressed,
        in one go; this reads every other one. aiohttp inflates a compressed
        body a bounded step at a time, and only as fast as it is consumed, so
        counting the inflated chunks here stops a decompression bomb within one
        step of the cap.
        """
        if resp.status >= 400:
            # Only the start of an error body is ever used (code, message, request ID).
            limit, truncate = self._max_error_body, True
        else:
            limit, truncate = self._max_body, False
        length = resp.content_length
        if not truncate and length is not None and length > limit:
            resp.close()
            raise self._too_large(method, url, f"Content-Length is {length} bytes")
        chunks: list[bytes] = []
        size = 0
        stream = resp.content
        async for chunk in stream.iter_any():
            size += len(chunk)
            wire = getattr(stream, "total_compressed_bytes", None) or 0
            if size > limit or wire > limit:
                resp.close()  # drop the connection: the rest is never read
                if truncate:
                    chunks.append(chunk[: max(0, limit - (size - len(chunk)))])
                    break
                what = "the compressed body" if wire > limit else "the body"
                raise self._too_large(method, url, f"{what} passed {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, method: str, url: str, why: str) -> ResponseTooLarge:
        msg = (
            f"{method} {_path(url)}: response too large ({why}; the limit is "
            f"Limits.max_body_bytes={self._max_body})"
        )
        return ResponseTooLarge(msg)

    async def close(self) -> None:
        await self._session.close()


def _secrets(headers: Mapping[str, str]) -> tuple[str, ...]:
    # The credential this request sends: what a server must never see echoed back.
    auth = headers.get("Authorization", "")
    scheme, _, credential = auth.partition(" ")
    return (credential,) if scheme.lower() == "bearer" and credential else ()


def _plain(request_id: str, sent: Mapping[str, str]) -> bool:
    """Whether a request ID can be kept as it came: what nearly every answer has.

    Plain text (see :func:`~makini_async._wire.scrub.clean`) that does not hold
    the credential sent: the one check each answer pays.
    """
    if len(request_id) > _ID_LIMIT or _PLAIN.fullmatch(request_id) is None:
        return False
    auth = sent.get("Authorization", "")
    return not auth or auth.partition(" ")[2] not in request_id


def _safe_headers(
    headers: CIMultiDictProxy[str], request_id: str, secrets: tuple[str, ...]
) -> CIMultiDictProxy[str] | CIMultiDict[str]:
    """``headers`` with the request ID made safe to log (copied only when it changes)."""
    safe = clean(request_id, secrets, limit=_ID_LIMIT)
    if safe == request_id:
        return headers
    copy = CIMultiDict(headers)
    copy["X-Request-Id"] = safe
    return copy


#: The longest request ID kept whole (a longer one is cut where it is shown).
_ID_LIMIT: Final = 100


def _describe(exc: BaseException, sent: Mapping[str, str]) -> str:
    return clean(f"{type(exc).__name__}: {exc}", _secrets(sent))


def _path(url: str) -> str:
    # Errors name the path, not the host: shorter, and never any query secrets.
    start = url.find("/", url.find("//") + 2) if "//" in url else 0
    return url[start:] if start >= 0 else url
