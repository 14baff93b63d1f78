"""``makini-async pull --otel``: export the pull's traces and metrics over OTLP/HTTP.

The SDK is configured from the standard ``OTEL_*`` environment variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ...), and everything
buffered is flushed when the command ends.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from makini_async.cli._args import CliError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["exporting"]


@contextlib.contextmanager
def exporting() -> Iterator[None]:
    """Install OTLP/HTTP span and metric exporters for the block; flush them after."""
    try:
        from opentelemetry import metrics, trace  # noqa: PLC0415 - the otel extra
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
        from opentelemetry.sdk.metrics.export import (  # noqa: PLC0415
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError:
        msg = "--otel needs the otel extra: pip install 'makini-async[otel]'"
        raise CliError(msg) from None
    # OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins over this name.
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": "makini-async"})
    tracer = TracerProvider(resource=resource)
    tracer.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    meter = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
    )
    trace.set_tracer_provider(tracer)
    metrics.set_meter_provider(meter)
    try:
        yield
    finally:
        tracer.shutdown()  # flushes the spans still buffered
        meter.shutdown()  # exports the metrics a last time
