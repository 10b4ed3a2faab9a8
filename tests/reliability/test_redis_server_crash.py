"""redis-server SIGKILLed and restarted mid-stream, with AOF and ``appendfsync always``.

The sink holds its batch and retries; the source reconnects and resumes its group; nothing
Redis acknowledged is lost, and every published event is handled exactly once after dedupe.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxbus import Event
from rxbus.sinks import RedisStreamSink
from rxbus.sources import redis_stream
from tests.conftest import wait_until
from tests.integration.redis_server import RedisServer, running_redis

pytestmark = [pytest.mark.needs_redis, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path, aof=True) as srv:
        yield srv


def test_redis_killed_and_restarted_mid_stream_loses_nothing(server: RedisServer) -> None:
    """Kill -9 Redis while events flow both ways; after restart every event arrives once."""
    sink = RedisStreamSink(
        server.url, stream="orders", batch_size=200, retry_delay=0.02, max_retry_delay=0.2
    )
    handled: list[str] = []
    lock = threading.Lock()

    def handle(event: Event) -> None:
        with lock:
            handled.append(event.id)

    def count() -> int:
        with lock:
            return len(handled)

    source = redis_stream(
        server.url,
        "orders",
        "g",
        "c1",
        block=0.05,
        claim_idle=1.0,
        claim_interval=0.2,
        retry_delay=0.02,
        max_retry_delay=0.2,
    )
    subscription = source.subscribe(handle)
    sent: list[str] = []

    def publish(n: int, phase: str) -> None:
        for i in range(n):
            e = Event(topic="orders.created", data={"phase": phase, "i": i})
            sent.append(e.id)
            sink.on_next(e)

    try:
        publish(20_000, "before")
        wait_until(lambda: count() >= 1_000, 30, "the consumer to be mid-stream")
        written_before_kill = sink.stats["written"]
        server.kill()
        handled_at_kill = count()

        publish(10_000, "down")  # held by the sink while Redis is away
        wait_until(lambda: sink.stats["retried"] >= 1, 30, "the sink to notice the outage")
        wait_until(lambda: source.stats["reconnects"] >= 1, 30, "the source to notice the outage")

        server.start()
        client = server.client()
        # Every XADD Redis acknowledged before the kill was fsynced: it is still there.
        assert client.xlen("orders") >= written_before_kill
        publish(10_000, "after")
        assert sink.flush(60)

        wait_until(lambda: set(handled) >= set(sent), 60, "every event to be handled", interval=0.1)
        wait_until(lambda: client.xpending("orders", "g")["pending"] == 0, 30, "no pending entries")
    finally:
        subscription.dispose()
        sink.close(timeout=5)

    stats, source_stats = sink.stats, source.stats
    times = Counter(handled)
    report = {
        "published": len(sent),
        "written_before_kill": written_before_kill,
        "handled_before_kill": handled_at_kill,
        "sink_written": stats["written"],
        "sink_retried": stats["retried"],
        "stream_entries": client.xlen("orders"),
        "duplicates_on_the_wire": source_stats["duplicates"],
        "handled": len(times),
        "handled_twice": sum(1 for n in times.values() if n > 1),
        "lost": len(set(sent) - set(times)),
        "source_reconnects": source_stats["reconnects"],
    }
    client.close()
    print("\nredis server-crash report:", report)
    assert 0 < handled_at_kill < len(sent)
    assert report["lost"] == 0
    assert report["handled_twice"] == 0
    assert report["handled"] == len(sent) == 40_000
    assert stats["written"] == 40_000
    assert stats["outbox"] == 0 and stats["lost"] == 0 and stats["overflow"] == 0
    # A batch cut off by the kill may have been applied in part before the sink re-sent it
    # whole: those entries are in the stream twice, and the consumer skipped every copy (its
    # duplicates also count entries it took back after reconnecting and had already handled).
    assert report["stream_entries"] >= 40_000
    assert source_stats["duplicates"] >= report["stream_entries"] - 40_000
