"""``PrometheusExporter``: a bus's counters, queue depths and publish latency at ``/metrics``.

Uses its own :class:`prometheus_client.CollectorRegistry` (never the global one, so two buses or
two tests never collide) and serves it over HTTP on ``127.0.0.1`` by default. Counts are read
from ``bus.metrics()`` at each scrape, so they match what the bus reports exactly; the latency
histogram is observed by the exporter's own ``sync`` subscription.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rxbus.deadletter import DeadLetter
from rxbus.event import Event
from rxbus.sinks._base import ClosingSink

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.bus import EventBus

__all__ = ["PrometheusExporter"]

DEFAULT_BUCKETS = (
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5,
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
"""Latency buckets in seconds, from 5 µs (an in-process publish) to 2.5 s."""

_CONSUMER_COUNTERS = ("received", "delivered", "failed", "dropped", "dead_lettered")


class PrometheusExporter(ClosingSink):
    """Export a bus's metrics in the Prometheus text format.

    Metrics (``namespace`` defaults to ``rxbus``; every one has a ``bus`` label):

    - ``rxbus_published_total{topic}``: events published per topic.
    - ``rxbus_consumer_received_total``, ``..._delivered_total``, ``..._failed_total``,
      ``..._dropped_total``, ``..._dead_lettered_total`` ``{consumer, topic}`` (``topic`` is the
      consumer's pattern): per consumer, as in ``bus.metrics()["consumers"]``.
    - ``rxbus_dead_lettered_total``: dead letters of the whole bus, and
      ``rxbus_dead_letters_total{topic, consumer, error}`` per topic of the failed event,
      consumer and error type (counted from ``bus.dead_letters`` since the exporter started).
    - ``rxbus_consumer_queue_depth{consumer}`` and ``rxbus_consumer_queue_size{consumer}``: gauges.
    - ``rxbus_sink_stat{consumer, stat}``: each number in a sink's ``stats`` (written, errors...).
    - ``rxbus_publish_latency_seconds``: a histogram of the time from an event's creation in
      ``publish()`` to its delivery to the exporter's own ``sync`` subscription.
    - ``rxbus_publish_latency_sampled_seconds{quantile}``: the bus's own sampled percentiles.

    Args:
        bus: the bus to export.
        port: TCP port to serve on; 0 picks a free one (see :attr:`port`).
        host: address to bind; keep the default ``127.0.0.1`` unless a scraper on another
            machine must reach it.
        namespace: metric name prefix.
        buckets: latency histogram buckets in seconds.
        start: start serving at once; otherwise call :meth:`start`.

    Example::

        exporter = PrometheusExporter(bus, port=9464)   # http://127.0.0.1:9464/metrics
        ...
        exporter.close()
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        port: int = 9464,
        host: str = "127.0.0.1",
        namespace: str = "rxbus",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        start: bool = True,
    ) -> None:
        from rxbus._extras import require

        require("prometheus", "PrometheusExporter")
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.bus = bus
        self.host = host
        self._requested_port = port
        self.namespace = namespace
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_BusCollector(bus, namespace))
        self._latency = Histogram(
            "publish_latency_seconds",
            "Time from an event's creation in publish() to its delivery to this exporter",
            ["bus"],
            namespace=namespace,
            buckets=tuple(buckets),
            registry=self.registry,
        ).labels(bus.name)
        self._dead_by_topic = Counter(
            "dead_letters",
            "Dead letters per topic of the failed event, consumer and error type",
            ["bus", "topic", "consumer", "error"],
            namespace=namespace,
            registry=self.registry,
        )
        self._observed = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._consumer = bus.subscribe(self, name=f"prometheus:{namespace}")
        self._dead_subscription = bus.dead_letters.subscribe(self._count_dead_letter)
        if start:
            self.start()

    def start(self) -> None:
        """Serve ``/metrics`` on :attr:`host`::attr:`port` (idempotent).

        Raises:
            OSError: the port is taken or cannot be bound.
        """
        from prometheus_client import start_http_server

        with self._lock:
            if self._server is None:
                self._server, self._thread = start_http_server(
                    self._requested_port, addr=self.host, registry=self.registry
                )

    @property
    def port(self) -> int:
        """The port being served (the real one when ``port=0`` was asked for)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        return f"http://{self.host}:{self.port}/metrics"

    def render(self) -> bytes:
        """The current metrics in the Prometheus text format (what a scrape returns)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    # -- the observer (latency only: counts come from bus.metrics()) ---------------------------

    def on_next(self, event: Event) -> None:
        """Observe how long ago ``event`` was created."""
        self._latency.observe(max(0.0, time.time() - event.timestamp.timestamp()))
        self._observed += 1

    def _count_dead_letter(self, letter: DeadLetter) -> None:
        failed = letter.event
        topic = failed.topic if isinstance(failed, Event) else ""
        self._dead_by_topic.labels(
            self.bus.name, topic, letter.consumer, type(letter.error).__name__
        ).inc()

    def on_error(self, error: Exception) -> None:
        """Keep serving: the counters still say what happened."""

    def on_completed(self) -> None:
        """The bus closed: stop serving."""
        self._stop_server()

    def close(self) -> None:
        """Unsubscribe from the bus and stop serving. Idempotent."""
        self._consumer.dispose()
        self._dead_subscription.dispose()
        self._stop_server()

    def _stop_server(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5.0)

    @property
    def stats(self) -> dict[str, int]:
        """``observed`` (latency observations) and ``serving`` (1 while the server runs)."""
        return {"observed": self._observed, "serving": int(self._server is not None)}


class _BusCollector:
    """Reads ``bus.metrics()`` once per scrape and turns it into metric families."""

    def __init__(self, bus: EventBus, namespace: str) -> None:
        self.bus = bus
        self.namespace = namespace

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        ns, name = self.namespace, self.bus.name
        m = self.bus.metrics()

        published = CounterMetricFamily(
            f"{ns}_published", "Events published, per topic", labels=["bus", "topic"]
        )
        for topic, counts in m["topics"].items():
            published.add_metric([name, topic], counts["published"])
        yield published

        dead = CounterMetricFamily(f"{ns}_dead_lettered", "Dead letters of the bus", labels=["bus"])
        dead.add_metric([name], m["dead_lettered"])
        yield dead

        consumers = m["consumers"]
        for key in _CONSUMER_COUNTERS:
            family = CounterMetricFamily(
                f"{ns}_consumer_{key}",
                f"Events {key.replace('_', '-')} per consumer",
                labels=["bus", "consumer", "topic"],
            )
            for consumer, entry in consumers.items():
                family.add_metric([name, consumer, entry["topic"]], entry.get(key, 0))
            yield family

        depth = GaugeMetricFamily(
            f"{ns}_consumer_queue_depth", "Events queued per consumer", labels=["bus", "consumer"]
        )
        size = GaugeMetricFamily(
            f"{ns}_consumer_queue_size",
            "Queue capacity per non-sync consumer",
            labels=["bus", "consumer"],
        )
        sink = GaugeMetricFamily(
            f"{ns}_sink_stat", "A number from a sink's stats", labels=["bus", "consumer", "stat"]
        )
        for consumer, entry in consumers.items():
            depth.add_metric([name, consumer], entry.get("queued", 0))
            if entry.get("queue_size") is not None:
                size.add_metric([name, consumer], entry["queue_size"])
            for stat, value in (entry.get("sink") or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    sink.add_metric([name, consumer, stat], value)
        yield depth
        yield size
        yield sink

        sampled = GaugeMetricFamily(
            f"{ns}_publish_latency_sampled_seconds",
            "The bus's sampled publish latency percentiles",
            labels=["bus", "quantile"],
        )
        latency = m.get("publish_latency_ns", {})
        for key, quantile in (("p50", "0.5"), ("p90", "0.9"), ("p99", "0.99"), ("p99_9", "0.999")):
            if key in latency:
                sampled.add_metric([name, quantile], latency[key] / 1e9)
        yield sampled
