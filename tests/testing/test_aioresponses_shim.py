"""makini_async.testing.mock_aiohttp: the aioresponses shim itself.

It must fix exactly what the installed aioresponses gets wrong on the
installed aiohttp, only while a mock is active, and become a no-op when
aioresponses no longer needs it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aioresponses import aioresponses, core

from makini_async import MakiniPool, set_testing
from makini_async.testing import _aioresponses as shim
from makini_async.testing import aioresponses_needs_shim, mock_aiohttp

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

URL = "https://api.makini.test/body"
LARGE = 3 * 2**16 + 17  # above aioresponses' reader high-water mark (2 x 64 KiB)


def patched_now() -> tuple[Any, Any]:
    return core.RequestMatch._build_response, core.stream_reader_factory


ORIGINAL = patched_now()


@pytest.fixture(autouse=True)
def _unpatched_around_each_test() -> Any:
    assert patched_now() == ORIGINAL
    yield
    assert patched_now() == ORIGINAL


async def read_all(resp: aiohttp.ClientResponse) -> bytes:
    return await resp.read()


async def read_n(resp: aiohttp.ClientResponse) -> bytes:
    out = bytearray()
    while chunk := await resp.content.read(10_000):
        out += chunk
    return bytes(out)


async def read_chunked(resp: aiohttp.ClientResponse) -> bytes:
    return b"".join([chunk async for chunk in resp.content.iter_chunked(10_000)])


async def read_any(resp: aiohttp.ClientResponse) -> bytes:
    out = bytearray()
    while chunk := await resp.content.readany():
        out += chunk
    return bytes(out)


async def iter_any(resp: aiohttp.ClientResponse) -> bytes:
    return b"".join([chunk async for chunk in resp.content.iter_any()])


READERS: list[Callable[[aiohttp.ClientResponse], Awaitable[bytes]]] = [
    read_all,
    read_n,
    read_chunked,
    read_any,
    iter_any,
]


@pytest.mark.parametrize("size", [0, 10, 2**16, LARGE, 2_000_003])
@pytest.mark.parametrize("reader", READERS, ids=lambda f: f.__name__)
async def test_every_way_of_reading_a_mocked_body(
    reader: Callable[[aiohttp.ClientResponse], Awaitable[bytes]], size: int
) -> None:
    body = bytes(i % 251 for i in range(size))
    async with aiohttp.ClientSession() as session:
        with mock_aiohttp() as mocked:
            mocked.get(URL, status=201, body=body, headers={"X-Request-Id": "req_1"})
            async with session.request("GET", URL, allow_redirects=False) as resp:
                assert resp.status == 201
                assert resp.headers["x-request-id"] == "req_1"
                assert await reader(resp) == body


async def test_decorator_start_stop_and_json() -> None:
    mocked = mock_aiohttp()
    mocked.start()
    try:
        mocked.get(URL, payload={"data": {"id": "wo_1"}})
        async with aiohttp.ClientSession() as session, session.get(URL) as resp:
            assert await resp.json() == {"data": {"id": "wo_1"}}
    finally:
        mocked.stop()

    @mock_aiohttp()
    async def decorated(m: aioresponses) -> int:
        m.get(URL, status=204)
        async with aiohttp.ClientSession() as session, session.get(URL) as resp:
            return resp.status

    assert await decorated() == 204  # type: ignore[call-arg]


async def test_a_custom_response_class_is_built_too() -> None:
    class Tagged(aiohttp.ClientResponse):
        tag = "mine"

    class Forwarding(aiohttp.ClientResponse):
        def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
            super().__init__(method, url, **kwargs)

    async with aiohttp.ClientSession() as session:
        with mock_aiohttp() as mocked:
            mocked.get(URL, body=b"a", response_class=Tagged)
            mocked.get(URL, body=b"b", response_class=Forwarding)
            async with session.get(URL) as first, session.get(URL) as second:
                assert isinstance(first, Tagged)
                assert isinstance(second, Forwarding)
                assert (await first.read(), await second.read()) == (b"a", b"b")


# -- applied only when needed -------------------------------------------------------


class NeedsWriter:
    def __init__(self, method: str, url: Any, *, session: Any, stream_writer: Any) -> None: ...


class WriterOptional:
    def __init__(self, method: str, url: Any, *, stream_writer: Any = None) -> None: ...


class NoWriter:  # aiohttp before 3.14
    def __init__(self, method: str, url: Any, *, session: Any) -> None: ...


class TakesKwargs:
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None: ...


def test_the_signature_check() -> None:
    assert shim._requires_stream_writer(NeedsWriter)
    assert not shim._requires_stream_writer(WriterOptional)
    assert not shim._requires_stream_writer(NoWriter)
    assert not shim._requires_stream_writer(TakesKwargs)
    assert [shim._accepts_stream_writer(c) for c in (NeedsWriter, WriterOptional, TakesKwargs)] == [
        True,
        True,
        True,
    ]
    assert not shim._accepts_stream_writer(NoWriter)


def test_no_stream_writer_fix_for_an_aiohttp_that_does_not_require_it() -> None:
    assert shim._STREAM_WRITER not in shim._detect(NoWriter)
    assert shim._STREAM_WRITER not in shim._detect(WriterOptional)


def test_no_fix_once_aioresponses_supplies_stream_writer_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a fixed aioresponses release does, simulated with the shim's own wrapper.
    fixed = shim._supplying_stream_writer(core.RequestMatch._build_response)
    monkeypatch.setattr(core.RequestMatch, "_build_response", fixed)
    assert shim._STREAM_WRITER not in shim._detect(aiohttp.ClientResponse)


def test_no_flow_control_fix_once_aioresponses_reader_copes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core, "stream_reader_factory", shim._in_memory_stream_reader)
    assert shim._FLOW_CONTROL not in shim._detect(aiohttp.ClientResponse)


def test_nothing_is_patched_when_nothing_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shim, "_needed_fixes", frozenset)
    with mock_aiohttp():
        assert patched_now() == ORIGINAL


def test_only_the_needed_fix_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shim, "_needed_fixes", lambda: frozenset({shim._FLOW_CONTROL}))
    with mock_aiohttp():
        build, factory = patched_now()
        assert build is ORIGINAL[0]
        assert factory is shim._in_memory_stream_reader


def test_a_mock_that_never_started_cannot_remove_the_fixes() -> None:
    with mock_aiohttp():
        during = patched_now()
        with contextlib.suppress(Exception):  # aioresponses' own complaint, if any
            mock_aiohttp().stop()
        assert patched_now() == during
    assert patched_now() == ORIGINAL


def test_a_start_that_fails_releases_the_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: aioresponses) -> None:
        raise RuntimeError("cannot start")

    monkeypatch.setattr(aioresponses, "start", refuse)
    with pytest.raises(RuntimeError, match="cannot start"):
        mock_aiohttp().start()
    assert patched_now() == ORIGINAL


def test_a_mock_can_be_started_again() -> None:
    mocked = mock_aiohttp()
    for _ in range(2):
        with mocked:
            assert (patched_now() != ORIGINAL) is aioresponses_needs_shim()
        assert patched_now() == ORIGINAL


def test_the_stream_writer_fix_follows_the_signature_of_this_aiohttp() -> None:
    fixes = shim._needed_fixes()
    assert aioresponses_needs_shim() is bool(fixes)
    if not shim._requires_stream_writer(aiohttp.ClientResponse):
        assert shim._STREAM_WRITER not in fixes


# -- without the shim, the failure reproduces -------------------------------------------


async def test_plain_aioresponses_fails_on_this_aiohttp() -> None:
    if shim._STREAM_WRITER not in shim._needed_fixes():
        pytest.skip("the installed aioresponses passes stream_writer itself")
    async with aiohttp.ClientSession() as session:
        with aioresponses() as mocked:
            mocked.get(URL, body=b"ok")
            with pytest.raises(TypeError, match="stream_writer"):
                await session.get(URL)


async def test_plain_aioresponses_cannot_mock_makini_calls() -> None:
    if shim._STREAM_WRITER not in shim._needed_fixes():
        pytest.skip("the installed aioresponses passes stream_writer itself")
    set_testing(True, attempts=1)
    try:
        async with MakiniPool(base_url="https://api.makini.test") as pool:
            with aioresponses() as mocked:
                mocked.get(
                    "https://api.makini.test/api/v1/work-orders/wo_1",
                    payload={"data": {"id": "wo_1"}},
                )
                with pytest.raises(TypeError, match="stream_writer"):
                    await pool.connection("tok").get("work-orders", "wo_1")
    finally:
        set_testing(False)


async def test_large_bodies_fail_without_the_flow_control_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if shim._FLOW_CONTROL not in shim._needed_fixes():
        pytest.skip("the installed aioresponses feeds large bodies correctly")
    only_writer = shim._needed_fixes() - {shim._FLOW_CONTROL}
    monkeypatch.setattr(shim, "_needed_fixes", lambda: only_writer)
    with mock_aiohttp() as mocked:
        mocked.get(URL, body=bytes(LARGE))
        async with aiohttp.ClientSession() as session:
            with pytest.raises(AssertionError):
                await session.get(URL)


def test_importing_makini_async_testing_needs_no_aioresponses() -> None:
    code = (
        "import sys\n"
        "sys.modules['aioresponses'] = None\n"
        "import makini_async.testing as testing\n"
        "try:\n"
        "    testing.mock_aiohttp()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "needs aioresponses" in result.stdout
    assert "pip install aioresponses" in result.stdout
