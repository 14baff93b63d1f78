"""Test doubles for unit tests: a scripted transport and an injected clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import orjson
from multidict import CIMultiDict

from makini_async._client.transport import RawResponse


@attrs.define
class Call:
    method: str
    url: str
    headers: dict[str, str]
    params: dict[str, str]
    body: bytes | None

    @property
    def path(self) -> str:
        return self.url.split("/api/v1", 1)[1]

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


Handler = Callable[[Call], Any]


class FakeTransport:
    """Answers each request with ``handler(call)``: a RawResponse, or an exception to raise."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.calls: list[Call] = []
        self.closed = False
        self.in_flight = 0
        self.max_in_flight = 0

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        body: bytes | None,
    ) -> RawResponse:
        call = Call(method, url, dict(headers), dict(params or {}), body)
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            result = self.handler(call)
            if inspect.isawaitable(result):
                result = await result
        finally:
            self.in_flight -= 1
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, RawResponse)
        return result

    async def close(self) -> None:
        self.closed = True


_counter = iter(range(1, 10**9))


def respond(
    status: int = 200,
    payload: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    request_id: str | None = None,
) -> RawResponse:
    rid = request_id or f"req_{next(_counter):06d}"
    h = CIMultiDict({"X-Request-Id": rid, "Content-Type": "application/json"})
    if headers:
        h.update(headers)
    data = body if body is not None else (orjson.dumps(payload) if payload is not None else b"")
    return RawResponse(status, h, data)


def error(
    status: int,
    code: str,
    message: str = "something went wrong",
    *,
    details: Mapping[str, Any] | None = None,
    retry_after: str | None = None,
    request_id: str | None = None,
) -> RawResponse:
    rid = request_id or f"req_{next(_counter):06d}"
    payload = {
        "error": {
            "code": code,
            "type": "api_error",
            "message": message,
            "request_id": rid,
            "details": dict(details or {}),
        }
    }
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return respond(status, payload, headers=headers, request_id=rid)


def page(
    records: list[dict[str, Any]], next_cursor: str | None, total: int | None = None
) -> RawResponse:
    return respond(200, {"data": records, "next_cursor": next_cursor, "total_count": total})


class FakeClock:
    """``time.monotonic`` and ``asyncio.sleep`` replacements in virtual time.

    A sleeper yields once, then moves the clock to at least its own wake-up
    time: nobody wakes early, and concurrent sleepers do not add up.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.sleepers: list[str] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        task = asyncio.current_task()
        self.sleepers.append(task.get_name() if task else "")
        target = self.now + max(0.0, delay)
        await asyncio.sleep(0)
        self.now = max(self.now, target)


def run_fresh(code: str, *args: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter and return the JSON object it prints.

    For what a long-lived test process cannot show: a young heap, an unstarted fork server.
    """
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **(env or {})},
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def overlap_ids(records: Iterable[Mapping[str, Any]], seconds: float = 300.0) -> set[Any]:
    """The ids an incremental rerun brings again: updated within ``seconds`` of the newest.

    The high-water mark is the newest ``updated_at`` a run landed, less the overlap, and
    listing filters are inclusive: those records come again (at least once).
    """
    times = {
        r["id"]: dt.datetime.fromisoformat(str(r["updated_at"]).replace("Z", "+00:00"))
        for r in records
    }
    if not times:
        return set()
    floor = max(times.values()) - dt.timedelta(seconds=seconds)
    return {rid for rid, when in times.items() if when >= floor}
