"""Bounded queues: every Overflow policy against slow thread and async consumers, counted."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from typing import Any

import pytest

from rxbus import BufferOverflowError, DeadLetter, Event, EventBus, Overflow
from tests.conftest import untraced, wait_until_async

CAPACITY = 10
N = 100


class Gated:
    """A slow consumer: blocks on its first event until the test opens the gate."""

    def __init__(self, mode: str) -> None:
        self.gate = threading.Event()
        self.seen: list[int] = []
        self.errors: list[Exception] = []
        self.completed = False
        self.started = threading.Event()
        if mode == "async":
            self.on_next = self._on_next_async  # type: ignore[method-assign]

    def on_next(self, e: Event) -> None:
        self.started.set()
        self.gate.wait()
        self.seen.append(e.data.get("i", -1))

    async def _on_next_async(self, e: Event) -> None:
        self.started.set()
        await wait_until_async(self.gate.is_set, 60, "the test to open the gate", interval=0.001)
        self.seen.append(e.data.get("i", -1))

    def on_error(self, err: Exception) -> None:
        self.errors.append(err)

    def on_completed(self) -> None:
        self.completed = True


def flood(mode: str, overflow: Overflow) -> tuple[EventBus, Gated, Any, list[DeadLetter]]:
    bus = EventBus(history=0)
    letters: list[DeadLetter] = []
    bus.dead_letters.subscribe(letters.append)
    sink = Gated(mode)
    consumer = bus.subscribe(sink, mode=mode, queue_size=CAPACITY, overflow=overflow)  # type: ignore[arg-type]
    bus.publish("a", {"i": 0})
    assert sink.started.wait(10)  # event 0 is in the sink; the queue is empty
    for i in range(1, N):
        bus.publish("a", {"i": i})
    return bus, sink, consumer, letters


def finish(bus: EventBus, sink: Gated) -> None:
    sink.gate.set()
    assert bus.close(timeout=30) == []
    s = bus.metrics()["consumers"]
    for c in s.values():
        assert c["received"] == c["delivered"] + c["failed"] + c["dropped"] + c["queued"]


@pytest.mark.parametrize("mode", ["thread", "async"])
class TestPolicies:
    def test_drop_oldest_keeps_the_newest_capacity(self, mode: str) -> None:
        bus, sink, consumer, _ = flood(mode, Overflow.DROP_OLDEST)
        assert consumer.stats.queued == CAPACITY
        finish(bus, sink)
        assert sink.seen == [0, *range(N - CAPACITY, N)]
        assert consumer.stats.dropped == N - 1 - CAPACITY and sink.completed

    def test_drop_newest_keeps_the_first_capacity(self, mode: str) -> None:
        bus, sink, consumer, _ = flood(mode, Overflow.DROP_NEWEST)
        finish(bus, sink)
        assert sink.seen == list(range(CAPACITY + 1))
        assert consumer.stats.dropped == N - 1 - CAPACITY

    def test_latest_keeps_only_the_newest(self, mode: str) -> None:
        bus, sink, consumer, _ = flood(mode, Overflow.LATEST)
        assert consumer.stats.queued <= CAPACITY
        finish(bus, sink)
        assert sink.seen[0] == 0 and sink.seen[-1] == N - 1
        assert len(sink.seen) + consumer.stats.dropped == N
        assert sink.seen == sorted(sink.seen)

    def test_error_ends_the_consumer_with_a_dead_letter(self, mode: str) -> None:
        bus, sink, consumer, letters = flood(mode, Overflow.ERROR)
        overflow = [lt for lt in letters if isinstance(lt.error, BufferOverflowError)]
        assert len(overflow) == 1 and overflow[0].event.data["i"] == CAPACITY + 1
        assert "queue full (10 events)" in str(overflow[0].error)
        finish(bus, sink)
        # what was queued before the overflow is still delivered, then on_error, no completion
        assert sink.seen == list(range(CAPACITY + 1))
        assert len(sink.errors) == 1 and isinstance(sink.errors[0], BufferOverflowError)
        assert not sink.completed
        # once ended it is detached: later events are not routed to it at all
        s = consumer.stats
        assert (s.received, s.delivered, s.dropped) == (CAPACITY + 2, CAPACITY + 1, 1)

    def test_block_slows_the_producer_instead_of_growing(self, mode: str) -> None:
        bus = EventBus(history=0)
        sink = Gated(mode)
        consumer = bus.subscribe(sink, mode=mode, queue_size=CAPACITY, overflow=Overflow.BLOCK)  # type: ignore[arg-type]
        progress = [0]

        def produce() -> None:
            for i in range(N):
                bus.publish("a", {"i": i})
                progress[0] = i + 1

        producer = threading.Thread(target=produce)
        producer.start()
        assert sink.started.wait(10)
        # wait until the producer is parked on the full queue
        deadline = threading.Event()
        for _ in range(10_000):
            if consumer.stats.queued == CAPACITY:
                break
            deadline.wait(0.001)
        assert consumer.stats.queued == CAPACITY
        assert progress[0] <= CAPACITY + 2  # it cannot run ahead of the bounded queue
        assert producer.is_alive()
        sink.gate.set()
        producer.join(30)
        finish(bus, sink)
        assert sink.seen == list(range(N)) and consumer.stats.dropped == 0


def test_a_million_events_into_a_slow_drop_oldest_consumer_stay_bounded() -> None:
    """Memory stays bounded by the queue, not by how many events were published."""
    bus = EventBus(history=0)
    sink = Gated("thread")
    consumer = bus.subscribe(sink, mode="thread", queue_size=1_000, overflow=Overflow.DROP_OLDEST)
    # one prebuilt event published a million times: what is measured is the queue, not
    # event creation (tracemalloc makes each allocation slow)
    event = Event(topic="flood.x", metadata={}, source="x" * 100)
    bus.publish(event)
    assert sink.started.wait(10)
    gc.collect()
    # Under --cov, coverage's line tracer made this loop three times slower (the same publish
    # path is measured by the policy tests above): off for this thread during the loop only.
    tracemalloc.start()
    try:
        with untraced():
            base, _ = tracemalloc.get_traced_memory()
            for _ in range(1_000_000):
                bus.publish(event)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 1,000 queued events of ~1 KiB each at most; 1,000,000 would be ~1 GiB
    assert peak - base < 8 * 1024 * 1024, f"peak grew by {(peak - base) / 1e6:.1f} MB"
    s = consumer.stats
    assert s.received == 1_000_001 and s.queued == 1_000 and s.dropped == 1_000_001 - 1_001
    sink.gate.set()
    assert bus.close(timeout=30) == []
    assert consumer.stats.delivered == 1_001
