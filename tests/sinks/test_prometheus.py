"""PrometheusExporter: scraped over real HTTP and parsed with prometheus_client's own parser."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from rxbus import EventBus, Overflow
from rxbus.sinks import PrometheusExporter, SQLiteStore
from tests.conftest import free_port

pytest.importorskip("prometheus_client")


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        body = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_scrape_reports_topics_consumers_and_latency(tmp_path) -> None:
    """Counts per topic and consumer, queue gauges, sink stats and the latency histogram."""
    port = free_port()
    with EventBus(name="shop") as bus:
        store = SQLiteStore(tmp_path / "m.db")
        bus.subscribe(store, name="store")

        def flaky(event: Any) -> None:
            if event.data["i"] % 5 == 0:
                raise RuntimeError("flaky")

        bus.subscribe(flaky, name="flaky", topic="order.*")
        slow = bus.subscribe(
            lambda e: None,
            name="queued",
            mode="thread",
            queue_size=100,
            overflow=Overflow.DROP_OLDEST,
        )
        with PrometheusExporter(bus, port=port) as exporter:
            assert exporter.url == f"http://127.0.0.1:{port}/metrics"
            for i in range(20):
                bus.publish("order.created", {"i": i})
            for i in range(7):
                bus.publish("user.login", {"i": i})
            store.flush()
            samples = scrape(exporter.url)

            assert value(samples, "rxbus_published_total", bus="shop", topic="order.created") == 20
            assert value(samples, "rxbus_published_total", bus="shop", topic="user.login") == 7
            flaky_labels = {"bus": "shop", "consumer": "flaky", "topic": "order.*"}
            assert value(samples, "rxbus_consumer_received_total", **flaky_labels) == 20
            assert value(samples, "rxbus_consumer_failed_total", **flaky_labels) == 4
            assert value(samples, "rxbus_consumer_delivered_total", **flaky_labels) == 16
            assert value(samples, "rxbus_consumer_dead_lettered_total", **flaky_labels) == 4
            assert value(samples, "rxbus_dead_lettered_total", bus="shop") == 4
            by_topic = {"bus": "shop", "topic": "order.created", "consumer": "flaky"}
            assert value(samples, "rxbus_dead_letters_total", **by_topic, error="RuntimeError") == 4
            store_labels = {"bus": "shop", "consumer": "store", "topic": "**"}
            assert value(samples, "rxbus_consumer_delivered_total", **store_labels) == 27
            assert value(samples, "rxbus_consumer_dropped_total", **store_labels) == 0
            assert (
                value(samples, "rxbus_sink_stat", bus="shop", consumer="store", stat="written")
                == 27
            )
            assert (
                value(samples, "rxbus_consumer_queue_size", bus="shop", consumer=slow.name) == 100
            )
            depth = value(samples, "rxbus_consumer_queue_depth", bus="shop", consumer=slow.name)
            assert 0 <= depth <= 100
            assert value(samples, "rxbus_publish_latency_seconds_count", bus="shop") == 27
            assert (
                value(samples, "rxbus_publish_latency_seconds_bucket", bus="shop", le="+Inf") == 27
            )
            assert ("rxbus_publish_latency_sampled_seconds", frozenset(
                {"bus": "shop", "quantile": "0.5"}.items()
            )) in samples  # fmt: skip
            assert exporter.stats == {"observed": 27, "serving": 1}
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_binds_loopback_and_port_zero_picks_one() -> None:
    with EventBus() as bus, PrometheusExporter(bus, port=0) as exporter:
        assert exporter.host == "127.0.0.1"
        assert exporter.port > 0
        assert exporter._server.server_address[0] == "127.0.0.1"
        assert b"# TYPE rxbus_published_total counter" in exporter.render()


def test_two_exporters_do_not_share_a_registry() -> None:
    """Each exporter has its own registry: two buses in one process never collide."""
    with (
        EventBus(name="a") as a,
        EventBus(name="b") as b,
        PrometheusExporter(a, port=0) as ea,
        PrometheusExporter(b, port=0) as eb,
    ):
        a.publish("t.x")
        assert value(scrape(ea.url), "rxbus_published_total", bus="a", topic="t.x") == 1
        assert not any(k[0] == "rxbus_published_total" for k in scrape(eb.url))


def test_stops_serving_when_the_bus_closes() -> None:
    bus = EventBus()
    exporter = PrometheusExporter(bus, port=0)
    url = exporter.url
    scrape(url)
    bus.close()
    assert exporter.stats["serving"] == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
    exporter.close()
