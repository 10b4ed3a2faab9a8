"""OpenTelemetry tracing for a bus: one trace from a publish through every consumer it reaches.

``instrument(bus)`` wraps two methods of that bus instance (nothing else changes, and the core
does not import OpenTelemetry):

- ``publish`` runs in a ``PRODUCER`` span ``"<topic> publish"`` (a child of the current span, if
  any) and puts that span's W3C trace context (``traceparent``, and ``tracestate`` when set)
  into the event's ``metadata``. A ``traceparent`` already there (an event relayed from
  elsewhere) is kept, so the trace continues where it started.
- ``subscribe`` wraps the sink so each delivery runs in a ``CONSUMER`` span
  ``"<topic> process"`` whose parent is the event's ``traceparent``: the trace survives the hop
  to a ``thread`` consumer's worker or the bus's asyncio loop. Attributes: the topic, event id,
  consumer name, mode and ``rxbus.outcome`` (``delivered`` or ``dead_lettered``). When the sink
  raises, the exception is recorded on the span, its status set to ERROR, and the exception
  re-raised, so the bus still dead-letters the event. A sink behind a ``batch`` operator gets a
  list of events: its span links to each event's context instead of having one parent.
- every other dead letter of the bus (an operator's user code failing in a consumer's chain, an
  ``Overflow.ERROR`` overflow, an event left undelivered at close) is recorded on a
  ``"<topic> process"`` span of its own, the child of the event's trace context: the exception,
  status ERROR, ``rxbus.outcome`` ``dead_lettered`` and ``rxbus.attempts``.

Consumers subscribed *before* ``instrument`` are not wrapped: their deliveries have no span
(their events still carry ``traceparent``, and their dead letters are recorded as above).
``instrument`` warns, naming them.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> from rxbus import EventBus
    >>> exporter = InMemorySpanExporter()
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
    >>> bus = EventBus()
    >>> _ = instrument(bus, tracer_provider=provider)
    >>> _ = bus.subscribe(lambda event: None, topic="build.*", name="printer")
    >>> event = bus.publish("build.done", {"code": 0})
    >>> event.metadata["traceparent"][:3]
    '00-'
    >>> sorted(span.name for span in exporter.get_finished_spans())
    ['build.done process', 'build.done publish']
    >>> _ = bus.close()

Needs the ``otel`` extra: ``pip install 'rxbus-events[otel]'``.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rxbus._extras import require

require("otel", "rxbus.otel")

from opentelemetry import context, trace  # noqa: E402
from opentelemetry.context import Context  # noqa: E402
from opentelemetry.trace import Link, SpanKind, Status, StatusCode  # noqa: E402
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # noqa: E402

from rxbus.event import Event  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.bus import EventBus
    from rxbus.consumer import Consumer
    from rxbus.deadletter import DeadLetter

__all__ = ["Instrumentation", "instrument"]

_PROPAGATOR = TraceContextTextMapPropagator()
_MAX_LINKS = 128
# Sink failures recorded on a delivery span whose dead letter has not come by yet: it comes
# straight after the failure, so this stays near empty; the bound covers one that never comes.
_MAX_PENDING = 1024
_SYSTEM = "rxbus"


class Instrumentation:
    """What :func:`instrument` did to one bus; :meth:`uninstrument` undoes it."""

    def __init__(self, bus: EventBus, tracer: trace.Tracer) -> None:
        self.bus = bus
        self.tracer = tracer
        self._publish = bus.publish
        self._subscribe = bus.subscribe
        self._pending: OrderedDict[int, tuple[BaseException, int]] = OrderedDict()
        self._pending_lock = threading.Lock()
        self._dead_letters = bus.dead_letters.subscribe(self._on_dead_letter)

    def publish(self, topic: str | Event, data: Any = None, **kwargs: Any) -> Event:
        """``bus.publish`` in a PRODUCER span whose context goes into the event's metadata."""
        name = topic.topic if isinstance(topic, Event) else str(topic)
        span = self.tracer.start_span(f"{name} publish", kind=SpanKind.PRODUCER)
        span_context = span.get_span_context()
        if not span_context.is_valid:  # no SDK configured: nothing to record or propagate
            return self._publish(topic, data, **kwargs)
        if span.is_recording():
            span.set_attributes(
                {
                    "messaging.system": _SYSTEM,
                    "messaging.operation.type": "send",
                    "messaging.destination.name": name,
                }
            )
        ctx = trace.set_span_in_context(span)
        token = context.attach(ctx)
        try:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, context=ctx)
            if isinstance(topic, Event):
                if "traceparent" not in topic.metadata:
                    topic = topic.evolve(metadata={**topic.metadata, **carrier})
            else:
                metadata = kwargs.get("metadata")
                if not (isinstance(metadata, dict) and "traceparent" in metadata):
                    kwargs["metadata"] = {**metadata, **carrier} if metadata else carrier
            event = self._publish(topic, data, **kwargs)
            span.set_attribute("messaging.message.id", event.id)
        except BaseException as err:
            _record_failure(span, err)
            raise
        finally:
            context.detach(token)
            span.end()
        return event

    def subscribe(self, sink: Any, *operators: Any, **kwargs: Any) -> Consumer:
        """``bus.subscribe`` with ``sink`` wrapped so each delivery runs in a CONSUMER span."""
        traced = _wrap(
            sink, self.tracer, kwargs.get("name"), str(kwargs.get("mode", "sync")), self._recorded
        )
        if kwargs.get("name") is None and not _has_own_name(sink):
            # the name the bus gives such a sink, which it would not find on the wrapper
            plain = callable(sink) and not hasattr(sink, "on_next")
            kwargs["name"] = "consumer" if plain else type(sink).__name__
        consumer = self._subscribe(traced, *operators, **kwargs)
        traced.consumer_name = consumer.name
        traced.mode = consumer.mode
        return consumer

    def uninstrument(self) -> None:
        """Give the bus its own ``publish`` and ``subscribe`` back, and stop recording its dead
        letters.

        Consumers subscribed while instrumented keep their delivery spans.
        """
        self._dead_letters.dispose()
        for attr in ("publish", "subscribe"):
            if getattr(getattr(self.bus, attr, None), "__self__", None) is self:
                delattr(self.bus, attr)

    def _recorded(self, err: BaseException) -> None:
        """A traced sink recorded ``err`` on its delivery span: its dead letter needs no span."""
        with self._pending_lock:
            _, count = self._pending.pop(id(err), (err, 0))
            self._pending[id(err)] = (err, count + 1)
            if len(self._pending) > _MAX_PENDING:
                self._pending.popitem(last=False)

    def _on_dead_letter(self, letter: DeadLetter) -> None:
        """Record a dead letter on a span, unless its delivery span has it already."""
        err = letter.error
        with self._pending_lock:
            pending, count = self._pending.pop(id(err), (None, 0))
            if pending is not None:  # the same object: the entry holds it, so its id is its own
                if count > 1:
                    self._pending[id(err)] = (err, count - 1)
                return
        span = _process_span(
            self.tracer, letter.event, consumer=letter.consumer, attempts=letter.attempts
        )
        if span.is_recording():
            _record_failure(span, err)
        span.end()


def instrument(
    bus: EventBus, *, tracer_provider: trace.TracerProvider | None = None
) -> Instrumentation:
    """Trace ``bus``: W3C trace context in each event's metadata, a span per delivery.

    Calling it again on the same bus returns the first :class:`Instrumentation` unchanged.

    Args:
        bus: the bus to instrument (this instance only).
        tracer_provider: default the global one (``opentelemetry.trace.set_tracer_provider``).

    Returns:
        The :class:`Instrumentation`, whose ``uninstrument()`` undoes it.

    Warns:
        RuntimeWarning: naming the consumers subscribed before ``instrument``: their
        deliveries get no span.
    """
    existing = getattr(bus.publish, "__self__", None)
    if isinstance(existing, Instrumentation):
        return existing
    from rxbus import __version__

    tracer = trace.get_tracer("rxbus", __version__, tracer_provider=tracer_provider)
    inst = Instrumentation(bus, tracer)
    before = sorted(bus.metrics()["consumers"])
    if before:
        warnings.warn(
            f"instrument({bus.name!r}): consumers subscribed before instrument() get no "
            f"delivery spans: {', '.join(before)}; subscribe them after instrument()",
            RuntimeWarning,
            stacklevel=2,
        )
    bus.publish = inst.publish  # type: ignore[method-assign]
    bus.subscribe = inst.subscribe  # type: ignore[method-assign]
    return inst


def _has_own_name(sink: Any) -> bool:
    """Whether the bus names a consumer of ``sink`` from the sink itself (not its type)."""
    name = getattr(sink, "name", None)
    if isinstance(name, str) and name:
        return True
    for attr in ("__qualname__", "__name__"):
        value = getattr(sink, attr, None)
        if isinstance(value, str) and value and value != "<lambda>":
            return True
    return getattr(sink, "__self__", None) is not None


def _wrap(
    sink: Any,
    tracer: trace.Tracer,
    name: str | None,
    mode: str,
    recorded: Callable[[BaseException], None],
) -> _TracedSink:
    on_next = getattr(sink, "on_next", None)
    target = on_next if callable(on_next) else sink
    is_async = _is_coroutine_function(target)
    traced = (_AsyncTracedSink if is_async else _TracedSink)(sink, target, tracer, recorded)
    traced.consumer_name = name or ""
    traced.mode = "async" if is_async else mode
    return traced


def _is_coroutine_function(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


class _TracedSink:
    """A sink (observer or callable) whose every delivery runs in a CONSUMER span.

    Everything else (``on_error``, ``on_completed``, ``name``, ``stats``, ``bind_consumer``,
    ``close``) is the wrapped sink's own, so the consumer treats it as the sink itself.
    """

    def __init__(
        self,
        sink: Any,
        target: Callable[..., Any],
        tracer: trace.Tracer,
        recorded: Callable[[BaseException], None],
    ) -> None:
        self.__dict__["_sink"] = sink
        self.__dict__["_target"] = target
        self.__dict__["_tracer"] = tracer
        self.__dict__["_recorded"] = recorded
        self.__dict__["consumer_name"] = ""
        self.__dict__["mode"] = "sync"

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.__dict__["_sink"], attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        self.__dict__[attr] = value

    def on_next(self, value: Any) -> None:
        span = self._start(value)
        if span is None:
            self._target(value)
            return
        token = context.attach(trace.set_span_in_context(span))
        try:
            self._target(value)
        except BaseException as err:
            _record_failure(span, err)
            self._recorded(err)
            raise
        else:
            span.set_attribute("rxbus.outcome", "delivered")
        finally:
            context.detach(token)
            span.end()

    def _start(self, value: Any) -> trace.Span | None:
        """The delivery's span, started; None when tracing is off (no SDK)."""
        span = _process_span(self._tracer, value, consumer=self.consumer_name, mode=self.mode)
        return span if span.get_span_context().is_valid else None


class _AsyncTracedSink(_TracedSink):
    """:class:`_TracedSink` for an ``async def`` sink: the span covers the awaited call."""

    async def on_next(self, value: Any) -> None:  # type: ignore[override]
        span = self._start(value)
        if span is None:
            await self._target(value)
            return
        token = context.attach(trace.set_span_in_context(span))
        try:
            await self._target(value)
        except BaseException as err:
            _record_failure(span, err)
            self._recorded(err)
            raise
        else:
            span.set_attribute("rxbus.outcome", "delivered")
        finally:
            context.detach(token)
            span.end()


def _record_failure(span: trace.Span, err: BaseException) -> None:
    """Record ``err`` on ``span``: an exception event, status ERROR, outcome dead_lettered."""
    span.record_exception(err)
    span.set_status(Status(StatusCode.ERROR, f"{type(err).__name__}: {err}"))
    span.set_attribute("rxbus.outcome", "dead_lettered")


def _process_span(tracer: trace.Tracer, value: Any, **rxbus_attributes: Any) -> trace.Span:
    """A started ``"<topic> process"`` consumer span for ``value`` (an event or a batch of
    them), the child of its publish, with the messaging attributes and ``rxbus.<name>`` for
    each of ``rxbus_attributes``."""
    parent, links, topic, event_id, count = _origin(value)
    span = tracer.start_span(
        f"{topic} process", context=parent, kind=SpanKind.CONSUMER, links=links
    )
    if span.is_recording():
        attributes: dict[str, Any] = {
            "messaging.system": _SYSTEM,
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
        }
        attributes.update({f"rxbus.{k}": v for k, v in rxbus_attributes.items()})
        if event_id:
            attributes["messaging.message.id"] = event_id
        if count is not None:
            attributes["messaging.batch.message_count"] = count
        span.set_attributes(attributes)
    return span


def _origin(value: Any) -> tuple[Context | None, list[Link], str, str, int | None]:
    """The parent context, links, topic, event id and batch size of what a sink receives."""
    if isinstance(value, Event):
        return _context_of(value), [], value.topic, value.id, None
    if isinstance(value, list | tuple) and value and all(isinstance(v, Event) for v in value):
        links = []
        for event in value[:_MAX_LINKS]:
            ctx = trace.get_current_span(_context_of(event)).get_span_context()
            if ctx.is_valid:
                links.append(Link(ctx, {"messaging.message.id": event.id}))
        topics = {e.topic for e in value}
        topic = topics.pop() if len(topics) == 1 else "(batch)"
        return None, links, topic, "", len(value)
    return None, [], "(item)", "", None


def _context_of(event: Event) -> Context | None:
    """The trace context in the event's metadata, else None (the current context)."""
    metadata = event.metadata
    if "traceparent" not in metadata:
        return None
    return _PROPAGATOR.extract({k: v for k, v in metadata.items() if isinstance(v, str)})
