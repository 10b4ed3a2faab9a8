"""Cost of rxbus.otel per publish: instrumented vs plain, measured in the same run (issue 14).

Each round publishes ``BATCH`` events to one ``sync`` consumer, which counts them; with the SDK
a counting exporter also checks that every publish produced its two spans (publish + process).

- floor: a plain bus.
- ``otel.sdk``: ``instrument(bus)`` with the OpenTelemetry SDK (always-on sampler, a
  ``SimpleSpanProcessor`` into an exporter that only counts).
- ``otel.noop``: ``instrument(bus)`` with the API's no-op provider (no SDK configured): the cost
  of the wrappers alone.
- ``otel.raw_spans``: the plain bus plus two bare nested SDK spans per publish, made by hand: what
  the SDK itself costs, so ``otel.sdk / otel.raw_spans`` is rxbus's share (attributes, W3C
  inject and extract, the wrappers).

Run measured: ``python -m pytest tests/benchmarks/test_otel.py --benchmark-only``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider

from rxbus import EventBus
from rxbus.otel import instrument
from tests.benchmarks.conftest import Recorder

BATCH = 1_000
DATA = {"n": 1, "tool": "Bash"}


class CountingExporter(SpanExporter):
    """Counts the spans it is given; exports nowhere."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def _run(
    bench: Recorder, key: str, provider: Any | None, raw: TracerProvider | None = None
) -> tuple[int, int]:
    """Measure BATCH publishes; returns (rounds, events the consumer saw)."""
    with EventBus(history=0) as bus:
        if provider is not None:
            instrument(bus, tracer_provider=provider)
        seen = [0]

        def count(_event: Any) -> None:
            seen[0] += 1

        bus.subscribe(count, topic="bench.*", name="count")
        publish = bus.publish

        def round_() -> None:
            for _ in range(BATCH):
                publish("bench.one", DATA)

        if raw is not None:
            span = raw.get_tracer("bench").start_as_current_span

            def round_() -> None:
                for _ in range(BATCH):
                    with span("publish"), span("process"):
                        publish("bench.one", DATA)

        rounds = bench.measure(key, round_, ops=BATCH, group="otel")
        return rounds, seen[0]


def test_floor_plain_bus(bench: Recorder) -> None:
    """Every publish of the plain bus reaches the consumer."""
    rounds, seen = _run(bench, "otel.floor", None)
    assert seen == rounds * BATCH


def test_instrumented_with_sdk(bench: Recorder) -> None:
    """With the SDK, every publish reaches the consumer and yields two spans."""
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rounds, seen = _run(bench, "otel.sdk", provider)
    assert seen == rounds * BATCH
    assert exporter.spans == 2 * seen
    bench.compare("publish + 1 sync delivery, otel SDK on", subject="otel.sdk", floor="otel.floor")
    bench.compare(
        "otel SDK on vs plain bus + 2 bare SDK spans",
        subject="otel.sdk",
        floor="otel.raw_spans",
        note="rxbus's share of the tracing cost",
    )


def test_floor_plain_bus_with_bare_spans(bench: Recorder) -> None:
    """Plain bus with two hand-made SDK spans per publish: the SDK's own cost."""
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rounds, seen = _run(bench, "otel.raw_spans", None, raw=provider)
    assert seen == rounds * BATCH
    assert exporter.spans == 2 * seen


@pytest.mark.parametrize("provider", [NoOpTracerProvider()], ids=["noop"])
def test_instrumented_without_sdk(bench: Recorder, provider: Any) -> None:
    """With no SDK (the API's no-op provider) every publish still reaches the consumer."""
    rounds, seen = _run(bench, "otel.noop", provider)
    assert seen == rounds * BATCH
    bench.compare(
        "publish + 1 sync delivery, otel API only", subject="otel.noop", floor="otel.floor"
    )
