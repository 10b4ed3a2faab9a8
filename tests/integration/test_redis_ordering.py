"""What order the Redis bridge keeps: per stream with one consumer; per key when sharded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxbus import Event
from rxbus.sinks import RedisStreamSink
from rxbus.sinks.redis import shard_for, shard_names
from rxbus.sources import redis_stream
from tests.conftest import wait_until
from tests.integration.redis_server import RedisServer, running_redis

pytestmark = [pytest.mark.needs_redis, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as srv:
        yield srv


def test_one_consumer_sees_a_stream_in_publish_order(server: RedisServer) -> None:
    """Events of many topics through one stream reach a single consumer in publish order,
    across batch boundaries, even with copies left by a re-sent batch."""
    sent = [Event(topic=f"orders.c{i % 7}", data={"i": i}) for i in range(5_000)]
    with RedisStreamSink(server.url, stream="orders", batch_size=128) as sink:
        for e in sent:
            sink.on_next(e)
        assert sink.flush(15)
    client = server.client()
    for e in sent[100:150]:  # what a half-applied, re-sent pipeline leaves behind
        client.xadd("orders", {"id": e.id, "topic": e.topic, "event": e.to_json()})
    client.close()
    got: list[Event] = []
    source = redis_stream(server.url, "orders", "g", "only", batch_size=300, block=0.05)
    sub = source.subscribe(got.append)
    wait_until(lambda: source.stats["acked"] == 5_050, 30, "every entry acked")
    sub.dispose()
    assert [e.id for e in got] == [e.id for e in sent]
    assert source.stats["duplicates"] == 50


def test_sharding_by_key_keeps_each_key_in_order_with_parallel_consumers(
    server: RedisServer,
) -> None:
    """shard_for spreads keys (in the topic) over 4 streams; one consumer per shard stream
    runs in parallel and still sees every key's events in order."""
    shards = 4
    pick = shard_for("orders", shards)
    keys = [f"orders.customer{k}" for k in range(40)]
    sent = [Event(topic=keys[(i * 7) % 40], data={"i": i}) for i in range(8_000)]
    with RedisStreamSink(server.url, stream=pick) as sink:
        for e in sent:
            sink.on_next(e)
        assert sink.flush(15)

    seen: dict[str, list[tuple[str, int]]] = {}
    lock = threading.Lock()
    threads: dict[str, set[str]] = {}

    def collector(stream: str) -> Any:
        def on_next(event: Event) -> None:
            with lock:
                seen.setdefault(stream, []).append((event.topic, event.data["i"]))
                threads.setdefault(stream, set()).add(threading.current_thread().name)

        return on_next

    sources = [
        redis_stream(server.url, name, "billing", f"worker-{n}", block=0.05)
        for n, name in enumerate(shard_names("orders", shards))
    ]
    subs = [
        s.subscribe(collector(name))
        for s, name in zip(sources, shard_names("orders", shards), strict=True)
    ]
    wait_until(lambda: sum(s.stats["acked"] for s in sources) == 8_000, 30, "all 8000 acked")
    for sub in subs:
        sub.dispose()

    assert sum(1 for name in seen if seen[name]) > 1  # the work really was spread
    assert len({t for names in threads.values() for t in names}) == len(seen)  # in parallel
    for name, items in seen.items():
        for topic, _ in items:
            assert pick(topic) == name  # a key never crosses shards
    for key in keys:
        shard = pick(key)
        order = [i for topic, i in seen[shard] if topic == key]
        assert order == [e.data["i"] for e in sent if e.topic == key]
