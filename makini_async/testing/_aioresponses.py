"""aioresponses on aiohttp 3.14: a compatibility shim, applied only where needed.

aioresponses (0.7.9 and earlier) fails every mocked request on aiohttp 3.14
(upstream issue pnuckowski/aioresponses#289, open), in two places:

* ``ClientResponse.__init__`` gained a required keyword-only ``stream_writer``
  argument, which aioresponses does not pass: ``TypeError: ClientResponse.__init__()
  missing 1 required keyword-only argument: 'stream_writer'``.
* The mocked body is fed to a ``StreamReader`` whose protocol has no parser.
  aiohttp 3.14's flow control asserts there is one, so a body larger than
  twice the reader's limit (128 KiB) fails with a bare ``AssertionError``.

:func:`mock_aiohttp` returns an ``aioresponses`` that, while it is active,
patches aioresponses' module to supply ``stream_writer`` and to build body
readers without flow control (a mocked body is already entirely in memory:
there is no socket to pause). Nothing of aiohttp itself is patched.
Each fix is installed only when a probe of the installed versions shows it
is needed, so this module is a no-op once aioresponses releases a fix, and
can then be deleted: ``mock_aiohttp(...)`` becomes ``aioresponses(...)``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import threading
from typing import TYPE_CHECKING, Any
from unittest import mock

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.client_proto import ResponseHandler
from yarl import URL

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Mapping

    from aioresponses import aioresponses as Aioresponses

__all__ = ["UnmatchedRequest", "aioresponses_needs_shim", "mock_aiohttp"]


class UnmatchedRequest(AssertionError):
    """A request reached :func:`mock_aiohttp` that no registered URL answers.

    Raised at once, naming the method and URL (query included), instead of
    aioresponses' "Connection refused", which a client retries for seconds.
    """


# aioresponses' own body-reader limit (aioresponses.compat.stream_reader_factory).
_READER_LIMIT = 2**16

_STREAM_WRITER = "stream_writer"
_FLOW_CONTROL = "flow_control"


def mock_aiohttp(**kwargs: Any) -> Aioresponses:
    """An ``aioresponses`` mock that works on the installed aiohttp.

    Use it exactly like ``aioresponses(**kwargs)``: as a context manager, a
    decorator, or with ``start()``/``stop()``. While it is active, the fixes
    this aiohttp needs (see the module docstring) are applied to
    aioresponses; they are removed when the last active mock stops.

    ::

        with mock_aiohttp() as mocked:
            mocked.get(url, payload={"data": []}, headers={"X-Request-Id": "req_1"})
            ...

    Raises :class:`ImportError` if aioresponses is not installed.
    """
    return _shim_class()(**kwargs)


def aioresponses_needs_shim() -> bool:
    """Whether the installed aioresponses fails on the installed aiohttp without the shim.

    Raises :class:`ImportError` if aioresponses is not installed.
    """
    return bool(_needed_fixes())


# -- detection ------------------------------------------------------------------


def _parameters(response_class: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(response_class).parameters
    except (TypeError, ValueError):  # no signature to inspect
        return {}


def _requires_stream_writer(response_class: Callable[..., Any]) -> bool:
    """Whether ``response_class`` cannot be built without a ``stream_writer`` argument."""
    parameter = _parameters(response_class).get(_STREAM_WRITER)
    return parameter is not None and parameter.default is inspect.Parameter.empty


def _accepts_stream_writer(response_class: Callable[..., Any]) -> bool:
    """Whether ``response_class`` can be given a ``stream_writer`` argument."""
    parameters = _parameters(response_class)
    # A subclass that forwards **kwargs to ClientResponse takes it too.
    return _STREAM_WRITER in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _builder_omits_stream_writer() -> bool:
    """Whether aioresponses builds a response without passing ``stream_writer``."""
    request_match = _core().RequestMatch
    build = getattr(request_match, "_build_response", None)
    if build is None:  # reorganised upstream: nothing this shim knows how to fix
        return False
    url = URL("https://probe.invalid/")
    try:
        response = build(request_match(url), url)
    except TypeError as exc:
        return _STREAM_WRITER in str(exc)
    response.close()
    return False


def _reader_breaks_on_large_bodies() -> bool:
    """Whether aioresponses' body reader fails on a body above its high-water mark."""
    factory = getattr(_core(), "stream_reader_factory", None)
    if factory is None:
        return False
    reader = factory(mock.Mock())  # aioresponses passes a Mock loop too
    high_water = reader.get_read_buffer_limits()[1]
    try:
        # With python -O the assertion is gone and the missing parser is
        # dereferenced instead, hence AttributeError too.
        reader.feed_data(bytes(high_water + 1))
    except (AssertionError, AttributeError):
        return True
    return False


def _detect(response_class: Callable[..., Any]) -> frozenset[str]:
    """The fixes aioresponses needs when aiohttp's response class is ``response_class``."""
    fixes = set()
    # The signature says what aiohttp requires; one probe build says whether
    # aioresponses already supplies it (a fixed release will).
    if _requires_stream_writer(response_class) and _builder_omits_stream_writer():
        fixes.add(_STREAM_WRITER)
    if _reader_breaks_on_large_bodies():
        fixes.add(_FLOW_CONTROL)
    return frozenset(fixes)


@functools.cache
def _needed_fixes() -> frozenset[str]:
    return _detect(aiohttp.ClientResponse)


# -- the fixes ----------------------------------------------------------------


class _NothingToSend(AbstractStreamWriter):
    """The request writer of a mocked exchange: the request is already "sent".

    aiohttp only reads ``output_size`` from it when the response is built.
    """

    # Each method takes aiohttp's arguments and has nothing to do with them.

    async def write(self, *_: object, **__: object) -> None:
        return None

    async def write_eof(self, *_: object, **__: object) -> None:
        return None

    async def drain(self) -> None:
        return None

    def enable_compression(self, *_: object, **__: object) -> None:
        return None

    def enable_chunking(self) -> None:
        return None

    async def write_headers(self, *_: object, **__: object) -> None:
        return None


class _InMemoryBody(ResponseHandler):
    """The protocol behind a mocked body: no socket, so flow control has nothing to do."""

    def pause_reading(self) -> None:
        return None

    def resume_reading(self, *_: object, **__: object) -> None:
        return None


def _in_memory_stream_reader(loop: asyncio.AbstractEventLoop) -> aiohttp.StreamReader:
    # Replaces aioresponses.compat.stream_reader_factory, which is always given a loop.
    return aiohttp.StreamReader(_InMemoryBody(loop=loop), _READER_LIMIT, loop=loop)


def _supplying_stream_writer(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``RequestMatch._build_response`` so the response class gets a ``stream_writer``."""
    signature = inspect.signature(original)

    @functools.wraps(original)
    def build(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        response_class = bound.arguments.get("response_class") or aiohttp.ClientResponse
        # Checked per class: a user's own response_class may not take it.
        if _accepts_stream_writer(response_class):
            bound.arguments["response_class"] = functools.partial(
                response_class, stream_writer=_NothingToSend()
            )
        return original(*bound.args, **bound.kwargs)

    return build


# -- installing and removing the fixes -------------------------------------------

_lock = threading.Lock()
_active = 0
_installed: contextlib.ExitStack | None = None


def _install() -> None:
    global _active, _installed  # noqa: PLW0603 - one set of patches per process
    with _lock:
        if _active == 0:
            _installed = _patches()
        _active += 1


def _patches() -> contextlib.ExitStack:
    core = _core()
    fixes = _needed_fixes()
    stack = contextlib.ExitStack()
    if _STREAM_WRITER in fixes:
        wrapped = _supplying_stream_writer(core.RequestMatch._build_response)
        stack.enter_context(mock.patch.object(core.RequestMatch, "_build_response", wrapped))
    if _FLOW_CONTROL in fixes:
        stack.enter_context(
            mock.patch.object(core, "stream_reader_factory", _in_memory_stream_reader)
        )
    return stack


def _uninstall() -> None:
    global _active, _installed  # noqa: PLW0603
    with _lock:
        _active -= 1
        if _active == 0 and _installed is not None:
            stack, _installed = _installed, None
            stack.close()


def _core() -> Any:
    try:
        from aioresponses import core  # noqa: PLC0415 - aioresponses is an optional dependency
    except ImportError:
        msg = (
            "makini_async.testing.mock_aiohttp needs aioresponses: "
            "pip install aioresponses (or makini-async[test])"
        )
        raise ImportError(msg) from None
    return core


def _any_query(url: Any) -> Any:
    """A plain URL without a query as a pattern matching it with any query."""
    if isinstance(url, (str, URL)) and not URL(str(url)).query_string:
        return re.compile(re.escape(str(URL(str(url)))) + r"(\?.*)?$")
    return url


@functools.cache
def _shim_class() -> type[Aioresponses]:
    _core()  # the clear ImportError when aioresponses is missing
    from aioresponses import aioresponses  # noqa: PLC0415

    class MakiniAioresponses(aioresponses):
        """``aioresponses`` with the fixes this aiohttp needs applied while active."""

        _makini_fixes_held = False

        def start(self) -> None:
            if not self._makini_fixes_held:
                _install()
                self._makini_fixes_held = True
            try:
                super().start()
            except BaseException:
                self._release_fixes()
                raise

        def stop(self) -> None:
            try:
                super().stop()
            finally:
                self._release_fixes()

        def add(self, url: Any, method: str = "GET", *args: Any, **kwargs: Any) -> None:
            # The client adds ?page_size= (and cursors, filters): a URL registered
            # without a query answers whatever query comes; one with a query, only it.
            super().add(_any_query(url), method, *args, **kwargs)

        async def match(
            self,
            method: str,
            url: URL,
            allow_redirects: bool = True,  # noqa: FBT001, FBT002 - aioresponses' signature
            **kwargs: Any,
        ) -> Any:
            response = await super().match(method, url, allow_redirects, **kwargs)
            if response is None and not self.passthrough_unmatched:
                registered = len(self._matches)
                msg = (
                    f"no mocked answer for {method} {url} ({registered} registered "
                    "answer(s) left; register this URL, or one without its query)"
                )
                raise UnmatchedRequest(msg)
            return response

        def _release_fixes(self) -> None:
            # Per instance, so a stop() without a start() cannot remove another's fixes.
            if self._makini_fixes_held:
                self._makini_fixes_held = False
                _uninstall()

    return MakiniAioresponses
