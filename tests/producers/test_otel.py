"""rxbus.otel: W3C trace context through publish, and a span per delivery in every mode."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import rxbus.operators as ops
from rxbus import EventBus
from rxbus.otel import instrument
from rxbus.sinks import JsonlSink

WAIT = 10.0  # seconds: the deadline for a consumer on another thread or the loop


class Boom(Exception):
    pass


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


@pytest.fixture
def bus(provider: TracerProvider) -> Iterator[EventBus]:
    b = EventBus(name="traced")
    instrument(b, tracer_provider=provider)
    yield b
    b.close()


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_one_trace_from_publish_through_thread_and_async_consumers(
    bus: EventBus, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """request -> publish -> thread consumer -> publish -> async consumer: one trace, each span
    the child of the one before, on three different threads."""
    done = threading.Event()
    threads: dict[str, str] = {}

    def compile_step(event: Any) -> None:
        threads["compile"] = threading.current_thread().name
        bus.publish("build.done", {"code": 0})

    async def notify(event: Any) -> None:
        threads["notify"] = threading.current_thread().name
        done.set()

    bus.subscribe(compile_step, topic="build.start", mode="thread", name="compiler")
    bus.subscribe(notify, topic="build.done", mode="async", name="notifier")
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        first = bus.publish("build.start", {"target": "all"})
    assert done.wait(WAIT), "the async consumer was not reached in time"
    bus.close()

    [root] = spans(exporter, "request")
    [pub_start] = spans(exporter, "build.start publish")
    [proc_start] = spans(exporter, "build.start process")
    [pub_done] = spans(exporter, "build.done publish")
    [proc_done] = spans(exporter, "build.done process")
    chain = [root, pub_start, proc_start, pub_done, proc_done]
    assert {s.context.trace_id for s in chain} == {request.get_span_context().trace_id}
    for parent, child in itertools.pairwise(chain):
        assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert [s.kind for s in chain[1:]] == [SpanKind.PRODUCER, SpanKind.CONSUMER] * 2
    assert proc_start.attributes["rxbus.consumer"] == "compiler"
    assert proc_start.attributes["rxbus.mode"] == "thread"
    assert proc_done.attributes["rxbus.consumer"] == "notifier"
    assert proc_done.attributes["rxbus.mode"] == "async"
    assert proc_done.attributes["messaging.destination.name"] == "build.done"
    assert {s.attributes["rxbus.outcome"] for s in (proc_start, proc_done)} == {"delivered"}
    assert proc_start.attributes["messaging.message.id"] == first.id
    assert len({threading.current_thread().name, *threads.values()}) == 3
    version, trace_id, span_id, flags = first.metadata["traceparent"].split("-")
    assert (version, trace_id) == ("00", f"{pub_start.context.trace_id:032x}")
    assert span_id == f"{pub_start.context.span_id:016x}" and int(flags, 16) & 1  # sampled


@pytest.mark.parametrize("mode", ["sync", "thread", "async"])
def test_each_delivery_is_a_child_span_of_its_publish(
    bus: EventBus, exporter: InMemorySpanExporter, mode: str
) -> None:
    """In every mode, each delivery runs in its own CONSUMER span, the child of its event's
    publish span, with the topic, consumer, mode and outcome as attributes."""
    threads: list[str] = []

    def take(event: Any) -> None:
        threads.append(threading.current_thread().name)

    async def atake(event: Any) -> None:
        threads.append(threading.current_thread().name)

    bus.subscribe(atake if mode == "async" else take, topic="job.*", mode=mode, name="worker")
    published = [bus.publish("job.run", {"n": n}) for n in range(3)]
    bus.close()  # drains the thread and async consumers: every delivery span has ended
    publishes = {
        s.attributes["messaging.message.id"]: s for s in spans(exporter, "job.run publish")
    }
    deliveries = spans(exporter, "job.run process")
    assert len(deliveries) == 3 and len(threads) == 3
    assert (threading.current_thread().name in threads) is (mode == "sync")
    for delivery in deliveries:
        parent = publishes[delivery.attributes["messaging.message.id"]]
        assert delivery.kind is SpanKind.CONSUMER
        assert delivery.context.trace_id == parent.context.trace_id
        assert delivery.parent is not None and delivery.parent.span_id == parent.context.span_id
        assert delivery.attributes["messaging.destination.name"] == "job.run"
        assert delivery.attributes["rxbus.consumer"] == "worker"
        assert delivery.attributes["rxbus.mode"] == mode
        assert delivery.attributes["rxbus.outcome"] == "delivered"
        assert delivery.status.status_code is StatusCode.UNSET
    assert sorted(publishes) == sorted(e.id for e in published)


@pytest.mark.parametrize("mode", ["sync", "thread", "async"])
def test_failing_sink_records_exception_and_is_dead_lettered(
    bus: EventBus, exporter: InMemorySpanExporter, mode: str
) -> None:
    """The span records the exception with status ERROR; the bus still dead-letters the event."""
    letters: list[Any] = []
    bus.dead_letters.subscribe(letters.append)

    def fail(event: Any) -> None:
        raise Boom(f"bad {event.data['n']}")

    async def afail(event: Any) -> None:
        raise Boom(f"bad {event.data['n']}")

    consumer = bus.subscribe(afail if mode == "async" else fail, topic="job.*", mode=mode, name="w")
    bus.publish("job.run", {"n": 1})
    bus.close()
    [span] = spans(exporter, "job.run process")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["rxbus.outcome"] == "dead_lettered"
    [exc] = [e for e in span.events if e.name == "exception"]
    assert exc.attributes["exception.type"].endswith("Boom")
    assert exc.attributes["exception.message"] == "bad 1"
    assert [str(dl.error) for dl in letters] == ["bad 1"]
    assert consumer.stats.failed == 1 and consumer.stats.delivered == 0


@pytest.mark.parametrize("mode", ["sync", "thread", "async"])
def test_an_operator_failure_is_recorded_on_a_span(
    bus: EventBus, exporter: InMemorySpanExporter, mode: str
) -> None:
    """User code failing in a consumer's chain (ops.transform) never reaches the sink; its dead
    letter is recorded on a span of its own, the child of the event's publish span."""
    letters: list[Any] = []
    bus.dead_letters.subscribe(letters.append)

    def price(event: Any) -> Any:
        raise Boom(f"no price for {event.data['sku']}")

    async def asink(value: Any) -> None:
        pass

    sink = asink if mode == "async" else (lambda value: None)
    bus.subscribe(sink, ops.transform(price), topic="shop.*", mode=mode, name="pricer")
    event = bus.publish("shop.order", {"sku": "A-1"})
    bus.close()
    [letter] = letters
    [publish] = spans(exporter, "shop.order publish")
    [span] = spans(exporter, "shop.order process")
    assert span.parent is not None and span.parent.span_id == publish.context.span_id
    assert span.context.trace_id == publish.context.trace_id
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["rxbus.outcome"] == "dead_lettered"
    assert span.attributes["rxbus.consumer"] == letter.consumer == "pricer"
    assert span.attributes["rxbus.attempts"] == letter.attempts
    assert span.attributes["messaging.message.id"] == event.id
    [exc] = [e for e in span.events if e.name == "exception"]
    assert exc.attributes["exception.message"] == "no price for A-1"


def test_a_sink_failure_is_recorded_once_per_event(
    bus: EventBus, exporter: InMemorySpanExporter
) -> None:
    """A sink that raises the same exception object for every event: one ERROR span per event
    (its delivery span), none added for its dead letter."""
    shared = Boom("always")

    def fail(event: Any) -> None:
        raise shared

    bus.subscribe(fail, topic="job.*", mode="thread", name="w")
    for n in range(3):
        bus.publish("job.run", {"n": n})
    bus.close()
    processed = spans(exporter, "job.run process")
    assert len(processed) == 3 and len(bus.recent_dead_letters()) == 3
    assert {s.attributes["rxbus.mode"] for s in processed} == {"thread"}
    assert {s.status.status_code for s in processed} == {StatusCode.ERROR}


def test_existing_traceparent_is_kept(bus: EventBus, exporter: InMemorySpanExporter) -> None:
    """An event that arrives with a traceparent keeps it; its delivery joins that trace."""
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    bus.subscribe(lambda e: None, topic="relay.*", name="r")
    event = bus.publish("relay.in", {}, metadata={"traceparent": incoming, "origin": "edge"})
    assert event.metadata == {"traceparent": incoming, "origin": "edge"}
    [span] = spans(exporter, "relay.in process")
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331


def test_publish_of_a_prebuilt_event(bus: EventBus) -> None:
    """bus.publish(event) gets the trace context too; the event's own metadata stays."""
    from rxbus import Event

    event = bus.publish(Event(topic="a.b", metadata={"k": "v"}))
    assert event.metadata["k"] == "v" and event.metadata["traceparent"].startswith("00-")


def test_batch_sink_links_every_event(bus: EventBus, exporter: InMemorySpanExporter) -> None:
    """A sink behind batch() gets one span linking to each event's publish span."""
    batches: list[list[Any]] = []
    bus.subscribe(batches.append, ops.batch(None, max_size=3), topic="m.*", name="batcher")
    published = [bus.publish("m.x", {"i": i}) for i in range(3)]
    [span] = spans(exporter, "m.x process")
    publish_ids = {s.context.span_id for s in spans(exporter, "m.x publish")}
    assert {link.context.span_id for link in span.links} == publish_ids
    assert span.attributes["messaging.batch.message_count"] == 3
    assert [e.id for e in batches[0]] == [e.id for e in published]


def test_consumers_before_instrument_warn_and_get_no_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """instrument() warns naming the consumers subscribed earlier; they get no delivery span,
    but their events still carry the trace context."""
    with EventBus() as b:
        seen: list[Any] = []
        b.subscribe(seen.append, topic="x.*", name="early")
        with pytest.warns(
            RuntimeWarning, match="before instrument\\(\\) get no delivery spans: early"
        ):
            instrument(b, tracer_provider=provider)
        b.publish("x.y")
    assert spans(exporter, "x.y process") == []
    assert len(spans(exporter, "x.y publish")) == 1
    assert "traceparent" in seen[0].metadata


def test_instrument_twice_and_uninstrument(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """instrument() is idempotent; uninstrument() restores plain publish and subscribe."""
    with EventBus() as b:
        first = instrument(b, tracer_provider=provider)
        assert instrument(b, tracer_provider=provider) is first
        b.subscribe(lambda e: None, topic="t.*", name="kept")
        first.uninstrument()
        plain: list[Any] = []
        b.subscribe(plain.append, topic="t.*", name="plain")
        b.publish("t.u")
    assert "traceparent" not in plain[0].metadata
    assert spans(exporter, "t.u publish") == []
    assert len(spans(exporter, "t.u process")) == 1  # the consumer wrapped before keeps its span


def test_sink_identity_is_kept(bus: EventBus, tmp_path: Path) -> None:
    """A wrapped sink keeps its consumer name, stats in metrics and close handling."""

    class Collector:
        def __init__(self) -> None:
            self.items: list[Any] = []
            self.completed = False

        def on_next(self, e: Any) -> None:
            self.items.append(e)

        def on_completed(self) -> None:
            self.completed = True

    collector = Collector()
    jsonl = JsonlSink(tmp_path / "traced" / "events.jsonl")
    names = [
        bus.subscribe(collector, topic="n.*").name,
        bus.subscribe(jsonl, topic="n.*").name,
        bus.subscribe(lambda e: None, topic="n.*").name,
    ]
    bus.publish("n.one")
    metrics = bus.metrics()["consumers"]
    bus.close()
    with EventBus() as plain:
        expected = [
            plain.subscribe(Collector(), topic="n.*").name,
            plain.subscribe(JsonlSink(tmp_path / "plain" / "events.jsonl"), topic="n.*").name,
            plain.subscribe(lambda e: None, topic="n.*").name,
        ]
    assert names == expected
    assert "sink" in metrics[names[1]]
    assert collector.completed and len(collector.items) == 1
    assert (tmp_path / "traced" / "events.jsonl").read_bytes().count(b"\n") == 1


def test_without_an_sdk_nothing_is_injected() -> None:
    """With the API's default no-op provider, events carry no traceparent and delivery works."""
    from opentelemetry.trace import NoOpTracerProvider

    with EventBus() as b:
        instrument(b, tracer_provider=NoOpTracerProvider())
        got: list[Any] = []
        b.subscribe(got.append, topic="q.*", mode="thread")
        b.publish("q.r", {"a": 1})
        b.close()
    assert got[0].metadata == {} and got[0].data == {"a": 1}
