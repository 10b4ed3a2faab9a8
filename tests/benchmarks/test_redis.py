"""Redis Streams bridge throughput, each next to its floor in the same run (issue 6, point 5).

Against one real redis-server (no persistence) started for the module:

- sink: ``BATCH`` events through ``RedisStreamSink.on_next`` until ``flush`` reports them
  written, vs the floor: the same events serialised (``Event.to_json``) and written with raw
  redis-py pipelines of ``XADD`` in chunks of the sink's batch size, on the calling thread.
- source: a fresh consumer group reads ``BATCH`` entries through ``redis_stream`` (parse,
  dedupe check, emit, ack with the processed-id record) until all are acknowledged, vs the
  floor: a raw ``XREADGROUP``/``Event.from_json``/``XACK`` loop over the same entries.

Each round checks its counts (entries in the stream, events received, acks), so a broken bridge
cannot post a fast number; no timing is asserted. The target in the issue is >= 50,000 events/s
each way, i.e. <= 20,000 ns per event. Run measured:
``pytest tests/benchmarks/test_redis.py --benchmark-only``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxbus import Event
from rxbus.sinks import RedisStreamSink
from rxbus.sources import redis_stream
from tests.benchmarks.conftest import Recorder
from tests.integration.redis_server import RedisServer, running_redis

BATCH = 10_000  # events per round, for the bridge and its floor alike
CHUNK = 500  # the sink's batch size and the source's read size, for the floors too

pytestmark = [pytest.mark.needs_redis, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    path: Path = tmp_path_factory.mktemp("redis-bench")
    with running_redis(path) as srv:
        yield srv


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return [
        Event(topic="bench.redis", data={"i": i, "tool": "Bash", "ok": True}) for i in range(BATCH)
    ]


@pytest.fixture(scope="module")
def filled(server: RedisServer, events: list[Event]) -> str:
    """A stream holding the batch once, for the source benchmarks."""
    client = server.client()
    pipe = client.pipeline(transaction=False)
    for e in events:
        pipe.xadd("bench:read", {"id": e.id, "topic": e.topic, "event": e.to_json()})
    pipe.execute()
    client.close()
    return "bench:read"


def per_second(bench: Recorder, key: str) -> None:
    """Print events/s next to the ns/event the report shows."""
    value = bench.report.values.get(key) if bench.enabled else None
    if value:
        print(f"\n{key}: {1e9 / value['median']:,.0f} events/s (median round)")


def test_sink_floor_raw_pipelined_xadd(
    bench: Recorder, server: RedisServer, events: list[Event]
) -> None:
    client = server.client()
    client.delete("bench:floor")

    def round_() -> None:
        for start in range(0, BATCH, CHUNK):
            pipe = client.pipeline(transaction=False)
            for e in events[start : start + CHUNK]:
                pipe.xadd("bench:floor", {"id": e.id, "topic": e.topic, "event": e.to_json()})
            pipe.execute()

    calls = bench.measure("redis_sink.floor", round_, ops=BATCH)
    assert client.xlen("bench:floor") == calls * BATCH
    client.close()
    per_second(bench, "redis_sink.floor")


def test_sink_throughput(bench: Recorder, server: RedisServer, events: list[Event]) -> None:
    client = server.client()
    client.delete("bench:sink")
    sink = RedisStreamSink(server.url, stream="bench:sink", batch_size=CHUNK)

    def round_() -> None:
        for e in events:
            sink.on_next(e)
        assert sink.flush(60)

    calls = bench.measure("redis_sink.sink", round_, ops=BATCH)
    sink.close()
    assert sink.stats["written"] == calls * BATCH
    assert client.xlen("bench:sink") == calls * BATCH
    client.close()
    bench.compare(
        "redis sink: on_next..flush vs raw pipelined XADD",
        subject="redis_sink.sink",
        floor="redis_sink.floor",
        note="target >= 50,000 events/s (<= 20,000 ns/event)",
    )
    per_second(bench, "redis_sink.sink")


def test_source_floor_raw_xreadgroup(bench: Recorder, server: RedisServer, filled: str) -> None:
    client = server.client()
    groups = itertools.count()

    def round_() -> None:
        group = f"floor{next(groups)}"
        client.xgroup_create(filled, group, id="0")
        got = 0
        while got < BATCH:
            reply: Any = client.xreadgroup(group, "c", {filled: ">"}, count=CHUNK, block=1000)
            entries = reply[0][1]
            for _, fields in entries:
                Event.from_json(fields[b"event"])
            got += len(entries)
            client.xack(filled, group, *[entry_id for entry_id, _ in entries])
        assert client.xpending(filled, group)["pending"] == 0

    bench.measure("redis_source.floor", round_, ops=BATCH)
    client.close()
    per_second(bench, "redis_source.floor")


def test_source_throughput(bench: Recorder, server: RedisServer, filled: str) -> None:
    groups = itertools.count()
    received = 0

    def round_() -> None:
        nonlocal received
        source = redis_stream(
            server.url, filled, f"bridge{next(groups)}", "c", batch_size=CHUNK, block=0.01
        )
        counter = itertools.count(1)
        done = threading.Event()

        def on_next(_event: Event) -> None:
            if next(counter) == BATCH:
                done.set()

        subscription = source.subscribe(on_next)
        assert done.wait(60), source.stats
        subscription.dispose()  # returns once the reader stopped and sent its last acks
        assert source.stats["acked"] == BATCH
        received += source.stats["delivered"]

    calls = bench.measure("redis_source.bridge", round_, ops=BATCH)
    assert received == calls * BATCH
    bench.compare(
        "redis source: redis_stream to acked vs raw XREADGROUP/XACK",
        subject="redis_source.bridge",
        floor="redis_source.floor",
        note="target >= 50,000 events/s (<= 20,000 ns/event)",
    )
    per_second(bench, "redis_source.bridge")
