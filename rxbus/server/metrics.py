"""``GET /metrics``: the bus and server counters in the Prometheus text format.

Built with ``prometheus_client`` on a private registry per call (no global registry, so two
servers in one process never collide), from the plain dict :meth:`rxbus.EventBus.metrics`
returns.

    >>> text = render_prometheus({"published": 3, "topics": {"a.b": {"published": 3}}}, {})
    >>> b"rxbus_published_total 3.0" in text
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["render_prometheus"]

_BUS_COUNTERS = ("published", "delivered", "failed", "dropped", "dead_lettered")
_CONSUMER_COUNTERS = ("received", "delivered", "failed", "dropped", "dead_lettered")


def render_prometheus(bus: Mapping[str, Any], server: Mapping[str, int]) -> bytes:
    """Prometheus exposition text for a ``bus.metrics()`` dict and the server's own counters.

    Raises:
        ImportError: if ``prometheus_client`` is not installed (extra ``prometheus``).
    """
    from rxbus._extras import require

    require("prometheus", "GET /metrics")
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _Snapshot:
        def collect(self) -> Iterator[Any]:
            for key in _BUS_COUNTERS:
                yield CounterMetricFamily(
                    f"rxbus_{key}", f"Events {key} by the bus", bus.get(key, 0)
                )
            topics = CounterMetricFamily(
                "rxbus_topic_published", "Events published per topic", labels=["topic"]
            )
            for topic, counts in sorted((bus.get("topics") or {}).items()):
                topics.add_metric([topic], counts.get("published", 0))
            yield topics
            for key in _CONSUMER_COUNTERS:
                family = CounterMetricFamily(
                    f"rxbus_consumer_{key}", f"Events {key} per consumer", labels=["consumer"]
                )
                for name, stats in sorted((bus.get("consumers") or {}).items()):
                    family.add_metric([name], stats.get(key, 0))
                yield family
            queued = GaugeMetricFamily(
                "rxbus_consumer_queued", "Events waiting per consumer", labels=["consumer"]
            )
            for name, stats in sorted((bus.get("consumers") or {}).items()):
                queued.add_metric([name], stats.get("queued", 0))
            yield queued
            latency = GaugeMetricFamily(
                "rxbus_publish_latency_ns", "Publish latency percentiles", labels=["quantile"]
            )
            for q, value in sorted((bus.get("publish_latency_ns") or {}).items()):
                if q.startswith("p"):
                    latency.add_metric([q], value)
            yield latency
            yield GaugeMetricFamily("rxbus_uptime_seconds", "Bus uptime", bus.get("uptime_s", 0))
            for key in ("accepted", "duplicates", "rejected"):
                yield CounterMetricFamily(
                    f"rxbus_server_{key}",
                    f"Events or requests {key} by the server",
                    server.get(key, 0),
                )
            yield GaugeMetricFamily(
                "rxbus_server_clients", "Connected Socket.IO clients", server.get("clients", 0)
            )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot())
    return bytes(generate_latest(registry))
