"""The HTTP boundary against hostile servers on 127.0.0.1.

Oversized and compressed bodies, huge error bodies, redirects, TLS failures,
and servers that echo the request's credentials back.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
import time
import tracemalloc
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from makini_async import Limits, MakiniPool, RetryPolicy, Timeouts, errors

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

TOKEN = "tok_live_SECRET_securityhttp0123456789"
NO_WAIT = RetryPolicy(attempts=3, wait_initial=0.0, wait_max=0.0, jitter=0.0)
MiB = 1024 * 1024


class Counter:
    """A hook counting attempts (one RequestEvent per attempt)."""

    def __init__(self) -> None:
        self.attempts = 0

    def on_request(self, event: Any) -> None:
        self.attempts += 1


@asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(
    reply: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[tuple[str, list[int]]]:
    """A bare TCP server; yields its URL and a list counting accepted connections."""
    accepted: list[int] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await reply(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()
        await server.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


def pool_for(url: str, **kwargs: Any) -> MakiniPool:
    kwargs.setdefault("retry", NO_WAIT)
    return MakiniPool(base_url=url, **kwargs)


# -- size caps ----------------------------------------------------------------------


async def test_a_page_over_the_cap_is_refused_while_streaming() -> None:
    sent = 0

    async def big(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse()  # chunked: no Content-Length to check first
        await resp.prepare(request)
        try:
            for _ in range(64):
                await resp.write(b" " * MiB)
                sent += MiB
        except ConnectionError:
            pass
        return resp

    counter = Counter()
    async with (
        serve(big) as url,
        pool_for(url, limits=Limits(max_body_bytes=2 * MiB), hooks=[counter]) as pool,
    ):
        with pytest.raises(errors.ResponseTooLarge, match="max_body_bytes=2097152") as info:
            async for _ in pool.connection(TOKEN).list("assets"):
                pass
    assert not info.value.retryable
    assert counter.attempts == 1
    assert sent < 40 * MiB


async def test_content_length_over_the_cap_is_refused_before_reading() -> None:
    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 209715200\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(30)  # never sends the rest

    async with (
        raw_server(liar) as (url, accepted),
        pool_for(url, limits=Limits(max_body_bytes=MiB)) as pool,
    ):
        started = time.monotonic()
        with pytest.raises(errors.ResponseTooLarge, match="Content-Length is 209715200"):
            await pool.connection(TOKEN).get("assets", "a")
        assert time.monotonic() - started < 5
    assert len(accepted) == 1


async def test_a_gzip_bomb_stops_at_the_cap_without_inflating_it() -> None:
    inflated = 64 * MiB
    bomb = gzip.compress(b"\0" * inflated, compresslevel=9)
    assert len(bomb) < 100_000

    async def gzipped(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async with (
        serve(gzipped) as url,
        pool_for(url, limits=Limits(max_body_bytes=MiB)) as pool,
    ):
        conn = pool.connection(TOKEN)
        tracemalloc.start()
        try:
            with pytest.raises(errors.ResponseTooLarge, match="passed 1048576 bytes"):
                await conn.get("assets", "a")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # The cap plus a step or two of inflation, nowhere near the 64 MiB bomb.
    assert peak < 8 * MiB, peak


async def test_only_the_start_of_a_huge_error_body_is_read() -> None:
    sent = 0
    prefix = orjson.dumps({"error": {"code": "INTERNAL_ERROR", "message": "boom"}})

    async def huge_error(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse(status=500, headers={"X-Request-Id": "req_big"})
        await resp.prepare(request)
        try:
            await resp.write(prefix[:-2] + b' "pad": "')
            for _ in range(100):
                await resp.write(b"x" * MiB)
                sent += MiB
        except ConnectionError:
            pass
        return resp

    counter = Counter()
    async with (
        serve(huge_error) as url,
        pool_for(url, hooks=[counter]) as pool,
    ):
        started = time.monotonic()
        with pytest.raises(errors.ServerError) as info:
            await pool.connection(TOKEN).get("assets", "a")
        elapsed = time.monotonic() - started
    assert counter.attempts == 3  # still retried, each attempt reading 64 KiB
    assert info.value.request_id == "req_big"
    assert len(info.value.message) < 300
    assert sent < 3 * 30 * MiB  # three attempts did not read 3 x 100 MiB
    assert elapsed < 10


# -- redirects ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "method"),
    [(307, "create"), (308, "update"), (302, "update"), (303, "update"), (301, "delete")],
)
async def test_redirects_are_never_followed(status: int, method: str) -> None:
    elsewhere_hits: list[str] = []
    origin_hits: list[str] = []

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        elsewhere_hits.append(request.method)
        return web.json_response({"data": {"id": "a"}})

    async with serve(elsewhere) as other:

        async def redirect(request: web.Request) -> web.StreamResponse:
            origin_hits.append(request.method)
            target = f"{other}/steal/path?token=leak&{TOKEN}"
            return web.Response(
                status=status, headers={"Location": target, "X-Request-Id": "req_r"}
            )

        async with serve(redirect) as url, pool_for(url) as pool:
            conn = pool.connection(TOKEN)
            call = {
                "create": lambda: conn.create("assets", {"name": "x"}),
                "update": lambda: conn.update("assets", "a", {"name": "x"}),
                "delete": lambda: conn.delete("assets", "a"),
            }[method]
            with pytest.raises(errors.UnexpectedRedirect) as info:
                await call()
    err = info.value
    assert isinstance(err, errors.APIError)
    assert not err.retryable
    assert err.status == status
    assert err.location == other
    assert err.request_id == "req_r"
    assert err.connection == conn.name
    assert "steal" not in str(err)
    assert "leak" not in str(err)
    assert TOKEN not in str(err) + repr(err)
    assert elsewhere_hits == []
    assert len(origin_hits) == 1


# -- TLS ------------------------------------------------------------------------------


async def test_a_tls_handshake_failure_is_not_retried() -> None:
    async def plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # a TLS ClientHello, answered in plain HTTP
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_server(plain_http) as (url, accepted):
        https = url.replace("http://", "https://")
        async with pool_for(https) as pool:
            with pytest.raises(errors.TLSError) as info:
                await pool.connection(TOKEN).get("assets", "a")
    assert not info.value.retryable
    assert len(accepted) == 1
    _assert_clean_chain(info.value)


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [  # noqa: S607
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def test_an_untrusted_certificate_is_a_tls_error_not_retried(
    self_signed: ssl.SSLContext,
) -> None:
    async def ok(request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": {"id": "a"}})

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed)
    await site.start()
    port = runner.addresses[0][1]
    counter = Counter()
    try:
        async with pool_for(f"https://127.0.0.1:{port}", hooks=[counter]) as pool:
            with pytest.raises(errors.TLSError, match="certificate") as info:
                await pool.connection(TOKEN).get("assets", "a")
    finally:
        await runner.cleanup()
    assert counter.attempts == 1
    _assert_clean_chain(info.value)


# -- echoed credentials and exception chains ----------------------------------------------


def _reachable(exc: BaseException) -> list[object]:
    """Every exception in the chain, and every attribute value and arg of each."""
    seen: list[object] = []
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        seen.extend(current.args)
        seen.extend(vars(current).values())
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return seen


def _assert_clean_chain(exc: BaseException) -> None:
    for obj in _reachable(exc):
        assert TOKEN not in repr(obj), type(obj)
        assert not isinstance(obj, (aiohttp.ClientError, aiohttp.RequestInfo)), type(obj)
        assert not isinstance(obj, (CIMultiDict, CIMultiDictProxy)), type(obj)


async def test_echoed_authorization_never_reaches_an_error() -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        auth = request.headers["Authorization"]
        kind = request.match_info["tail"].rsplit("/", 1)[-1]
        headers = {"X-Request-Id": f"req_1 {auth}", "Content-Type": "application/json"}
        if kind == "json":
            body = orjson.dumps(
                {
                    "error": {
                        "code": "CONNECTED_SYSTEM_ERROR",
                        "message": f"upstream said: Authorization: {auth}",
                        "request_id": auth,
                        "details": {"echo": {str(k): v for k, v in request.headers.items()}},
                    }
                }
            )
            return web.Response(status=502, body=body, headers=headers)
        if kind == "html":
            return web.Response(status=400, text=f"<pre>{auth}\x1b[2J</pre>", headers=headers)
        # A success that is not JSON.
        return web.Response(status=200, text=f"{auth} \x1b]0;pwned\x07", headers=headers)

    async with serve(echo) as url, pool_for(url) as pool:
        conn = pool.connection(TOKEN)
        for record in ("json", "html", "ok"):
            with pytest.raises(errors.MakiniError) as info:
                await conn.get("assets", record)
            err = info.value
            _assert_clean_chain(err)
            assert TOKEN not in str(err) + repr(err) + repr(err.details)
            assert "\x1b" not in str(err)
            assert "\x07" not in str(err)
            assert err.request_id is not None
            assert TOKEN not in err.request_id


async def test_transport_failures_carry_no_request_headers(unused_tcp_port: int) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"data"')
        await writer.drain()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        await asyncio.sleep(5)

    refused = f"http://127.0.0.1:{unused_tcp_port}"
    async with pool_for(refused) as pool:
        with pytest.raises(errors.ConnectionFailed) as info:
            await pool.connection(TOKEN).get("assets", "a")
        _assert_clean_chain(info.value)
    async with raw_server(truncated) as (url, _), pool_for(url) as pool:
        with pytest.raises(errors.ConnectionFailed) as info:
            await pool.connection(TOKEN).get("assets", "a")
        _assert_clean_chain(info.value)
    async with (
        raw_server(stall) as (url, _),
        pool_for(url, timeouts=Timeouts(read=0.2, total=1), retry=RetryPolicy(attempts=1)) as pool,
    ):
        with pytest.raises(errors.RequestTimeout) as timeout_info:
            await pool.connection(TOKEN).get("assets", "a")
        _assert_clean_chain(timeout_info.value)
