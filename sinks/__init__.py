"""Sinks: observers that carry events out of the bus, each owning its own resources.

Imported lazily, so ``import rxbus.sinks`` costs nothing and optional dependencies (redis,
nats-py, python-socketio, prometheus_client) are only needed by the sink that uses them::

    from rxbus.sinks import JsonlSink, SQLiteStore
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rxbus._lazy import lazy_exports

_LAZY = {
    "LogSink": "rxbus.sinks.log",
    "ConsoleSink": "rxbus.sinks.console",
    "JsonlSink": "rxbus.sinks.jsonl",
    "read_jsonl": "rxbus.sinks.jsonl",
    "query_jsonl": "rxbus.sinks.jsonl",
    "TornLineWarning": "rxbus.sinks.jsonl",
    "SQLiteStore": "rxbus.sinks.sqlite",
    "PrometheusExporter": "rxbus.sinks.prometheus",
    "SocketIOSink": "rxbus.sinks.socketio",
    "RedisStreamSink": "rxbus.sinks.redis",
    "NatsSink": "rxbus.sinks.nats",
}

__all__ = [
    "ConsoleSink",
    "JsonlSink",
    "LogSink",
    "NatsSink",
    "PrometheusExporter",
    "RedisStreamSink",
    "SQLiteStore",
    "SocketIOSink",
    "TornLineWarning",
    "query_jsonl",
    "read_jsonl",
]

if TYPE_CHECKING:  # pragma: no cover
    from rxbus.sinks.console import ConsoleSink
    from rxbus.sinks.jsonl import JsonlSink, TornLineWarning, query_jsonl, read_jsonl
    from rxbus.sinks.log import LogSink
    from rxbus.sinks.nats import NatsSink
    from rxbus.sinks.prometheus import PrometheusExporter
    from rxbus.sinks.redis import RedisStreamSink
    from rxbus.sinks.socketio import SocketIOSink
    from rxbus.sinks.sqlite import SQLiteStore


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
