"""nats-server SIGKILLed and restarted mid-stream, with file storage.

The sink holds its unacknowledged batch and re-sends it (the server drops the copies it had
stored, by ``Nats-Msg-Id``); the source reconnects and resumes its durable consumer; every
published event is stored once and handled.

nats-server writes consumer state (acks) and stream blocks to disk asynchronously (its
``sync_interval``), so a SIGKILL can forget the last acks: those messages are delivered again
after the restart. The ones whose processed-id record survived are skipped; the rest are
handled a second time. Both are counted; none is lost.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxbus import Event
from rxbus.sinks import NatsSink
from rxbus.sources import nats_stream
from tests.conftest import wait_until
from tests.integration.nats_server import NatsServer, running_nats

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path) as srv:
        yield srv


def state(server: NatsServer) -> tuple[int, int, int]:
    """(messages in ORDERS, unacknowledged, undelivered) for durable ``g``."""

    async def call(js: Any) -> tuple[int, int, int]:
        messages = (await js.stream_info("ORDERS")).state.messages
        info = await js.consumer_info("ORDERS", "g")
        return int(messages), int(info.num_ack_pending), int(info.num_pending)

    return server.js(call)


def test_nats_killed_and_restarted_mid_stream_loses_nothing(server: NatsServer) -> None:
    """Kill -9 nats-server while events flow both ways; after the restart every event is in
    the stream once and handled once."""
    sink = NatsSink(
        server.url, "ORDERS", create_stream=True, batch_size=200, ack_timeout=1.0,
        retry_delay=0.02, max_retry_delay=0.2,
    )  # fmt: skip
    handled: list[str] = []
    lock = threading.Lock()

    def handle(event: Event) -> None:
        with lock:
            handled.append(event.id)

    def count() -> int:
        with lock:
            return len(handled)

    source = nats_stream(
        server.url, "ORDERS", "g", batch_size=200, ack_wait=2.0, fetch_timeout=0.2,
        retry_delay=0.02, max_retry_delay=0.2,
    )  # fmt: skip
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

        publish(10_000, "down")  # held by the sink while the server is away
        wait_until(lambda: sink.stats["retried"] >= 1, 30, "the sink to notice the outage")

        server.start()
        handled_at_restart = set(handled)
        # Every publish the server acknowledged before the kill is still there.
        assert state(server)[0] >= written_before_kill
        publish(10_000, "after")
        assert sink.flush(60), sink.stats

        wait_until(lambda: set(handled) >= set(sent), 60, "every event to be handled", interval=0.1)
        wait_until(
            lambda: state(server)[1:] == (0, 0), 30, "every message acknowledged", interval=0.1
        )
        stored = state(server)[0]
    finally:
        subscription.dispose()
        sink.close(timeout=5)

    stats, source_stats = sink.stats, source.stats
    times = Counter(handled)
    twice = {i for i, n in times.items() if n > 1}
    report = {
        "published": len(sent),
        "written_before_kill": written_before_kill,
        "handled_before_kill": handled_at_kill,
        "sink_written": stats["written"],
        "sink_duplicates_dropped_by_server": stats["duplicates"],
        "sink_retried": stats["retried"],
        "stream_messages": stored,
        "redeliveries_skipped": source_stats["duplicates"],
        "handled": len(times),
        "handled_twice": len(twice),
        "lost": len(set(sent) - set(times)),
        "sink_reconnects": stats["reconnects"],
        "source_reconnects": source_stats["reconnects"],
    }
    print("\nnats server-crash report:", report)
    assert 0 < handled_at_kill < len(sent)
    assert stats["reconnects"] >= 1 and source_stats["reconnects"] >= 1
    assert report["lost"] == 0
    assert report["handled"] == len(sent) == 40_000
    assert stored == 40_000  # re-sent copies were dropped by the server, by Nats-Msg-Id
    # Each event acknowledged once: first time, or as a duplicate of a copy stored before
    # the kill whose ack the sink never got.
    assert stats["written"] == 40_000 and stats["outbox"] == 0 and stats["lost"] == 0
    # Handled again only if handled before the restart: acks the killed server forgot.
    assert twice <= handled_at_restart
