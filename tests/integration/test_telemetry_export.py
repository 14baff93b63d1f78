"""``makini-async pull --otel`` exporting to an OTLP/HTTP receiver; and no OpenTelemetry at all."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from makini_async.testing import MockMakini
from tests.fakes import run_fresh

from .test_cli import NAMES, RECORDS, TOKENS, run_cli, server, write_tokens

__all__ = ["server"]  # the fixture, shared with test_cli


class Receiver:
    """An OTLP/HTTP collector of the test's own: protobuf bodies, decoded."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, dict[str, object]]] = []
        self.metrics: list[str] = []
        self.bodies: list[bytes] = []

    @staticmethod
    async def _body(request: web.Request) -> bytes:
        body = await request.read()
        return gzip.decompress(body) if request.headers.get("Content-Encoding") == "gzip" else body

    async def traces(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.bodies.append(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    self.spans.append((span.name, attributes))
        return web.Response(content_type="application/x-protobuf")

    async def metrics_(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.bodies.append(body)
        message = ExportMetricsServiceRequest()
        message.ParseFromString(body)
        for resource in message.resource_metrics:
            for scope in resource.scope_metrics:
                self.metrics.extend(m.name for m in scope.metrics)
        return web.Response(content_type="application/x-protobuf")


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    collector = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", collector.traces)
    app.router.add_post("/v1/metrics", collector.metrics_)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield collector, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_the_command_exports_its_pull_over_otlp_http(
    server: MockMakini, receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    collector, endpoint = receiver
    tokens = write_tokens(tmp_path / "tokens.txt")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "nightly-sync"}
    code, stdout, stderr = await run_cli(
        "pull", "--entity", "assets", "--tokens-file", str(tokens), "--out", str(tmp_path / "out"),
        "--base-url", server.url, "--otel",
        env=env,
    )  # fmt: skip
    assert code == 0, stderr
    names = [name for name, _ in collector.spans]
    assert names.count("makini pull") == 1
    chains = [a for name, a in collector.spans if name == "makini chain assets"]
    assert sorted(str(a["makini.connection"]) for a in chains) == sorted(NAMES)
    assert {a["makini.records"] for a in chains} == {RECORDS}
    assert any(name == "GET /api/v1/{entity}" for name in names)
    assert "http.client.request.duration" in collector.metrics
    assert "makini.client.records" in collector.metrics
    everything = b"".join(collector.bodies)
    assert b"nightly-sync" in everything
    for token in TOKENS:
        assert token.encode() not in everything
        assert token not in stdout + stderr


async def test_otel_without_the_extra_is_a_clear_error(server: MockMakini, tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(_HIDE_OTEL)
    code, _stdout, stderr = await run_cli(
        "pull", "--entity", "assets", "--tokens-file", str(tokens), "--out", str(tmp_path / "out"),
        "--base-url", server.url, "--otel",
        env={"PYTHONPATH": str(hide)},
    )  # fmt: skip
    assert code == 2
    assert "--otel needs the otel extra" in stderr


_HIDE_OTEL = """
import importlib.abc, sys

class _Hidden(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Hidden())
"""

_WITHOUT_OTEL = (
    _HIDE_OTEL
    + """
import asyncio, json
from makini_async import MakiniPool
from makini_async.testing import MockMakini

async def main():
    async with MockMakini(records_per_entity=30) as server:
        async with MakiniPool(base_url=server.url) as pool:
            async with pool.pull("assets", ["tok-secret-plain-0001-xxxx"]) as pull:
                await pull.run()
            telemetry = pool.telemetry
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
    print(json.dumps({"records": pull.report.records, "telemetry": repr(telemetry),
                      "loaded": loaded}))

asyncio.run(main())
"""
)


def test_without_opentelemetry_everything_works_and_nothing_is_imported() -> None:
    result = run_fresh(_WITHOUT_OTEL)
    assert result["records"] == 30
    assert result["telemetry"] == "None"
    assert result["loaded"] == []
