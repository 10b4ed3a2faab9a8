"""close(): drains, completes, is idempotent, and reports what it could not deliver."""

from __future__ import annotations

import asyncio
import threading
import time

from reactivex import operators as rx_ops

from rxbus import BusClosedError, DeadLetter, Event, EventBus


def test_close_drains_thread_and_async_consumers_then_completes() -> None:
    bus = EventBus()
    slow_thread: list[int] = []
    slow_async: list[int] = []
    completions: list[str] = []

    class ThreadSink:
        def on_next(self, e: Event) -> None:
            time.sleep(0.0005)
            slow_thread.append(e.data["i"])

        def on_completed(self) -> None:
            completions.append("thread")

    async def async_sink(e: Event) -> None:
        await asyncio.sleep(0)
        slow_async.append(e.data["i"])

    bus.subscribe(ThreadSink(), mode="thread")
    bus.subscribe(async_sink)
    batches: list[list[int]] = []
    bus.subscribe(
        batches.append,
        rx_ops.map(lambda e: e.data["i"]),
        rx_ops.buffer_with_count(7),
        mode="thread",
    )
    for i in range(500):
        bus.publish("a", {"i": i})
    assert bus.close(timeout=30) == []
    assert slow_thread == list(range(500)) and slow_async == list(range(500))
    assert completions == ["thread"]
    # buffer_with_count flushes its partial last buffer on completion: the stream completed
    assert [i for b in batches for i in b] == list(range(500)) and len(batches[-1]) == 500 % 7


def test_close_is_idempotent_and_refuses_publishing() -> None:
    bus = EventBus()
    bus.subscribe(lambda e: None, mode="thread")
    assert bus.close() == [] and bus.close() == []
    try:
        bus.publish("a")
    except BusClosedError as err:
        assert "closed" in str(err)
    else:  # pragma: no cover - the assertion below fails the test
        raise AssertionError("publish after close did not raise")


def test_events_not_delivered_within_the_timeout_are_reported_not_hidden() -> None:
    bus = EventBus()
    letters: list[DeadLetter] = []
    bus.dead_letters.subscribe(letters.append)
    gate = threading.Event()
    stuck = bus.subscribe(lambda e: gate.wait(), mode="thread", name="stuck")
    fine: list[Event] = []
    bus.subscribe(fine.append, mode="thread", name="fine")
    events = [bus.publish("a", {"i": i}) for i in range(20)]
    undelivered = bus.close(timeout=0.2)
    gate.set()
    # the stuck consumer holds event 0 in its sink; events 1..19 were still queued
    assert [d.event for d in undelivered] == events[1:]
    assert all(d.consumer == "stuck" and isinstance(d.error, TimeoutError) for d in undelivered)
    assert all(d in letters for d in undelivered)
    s = stuck.stats
    assert s.dropped == 19 and s.queued == 0
    assert fine == events


def test_dead_letter_stream_completes_on_close() -> None:
    bus = EventBus()
    completed: list[bool] = []
    bus.dead_letters.subscribe(on_completed=lambda: completed.append(True))
    bus.close()
    assert completed == [True]


def test_dispose_counts_queued_events_as_dropped() -> None:
    with EventBus() as bus:
        gate = threading.Event()
        c = bus.subscribe(lambda e: gate.wait(), mode="thread")
        for _ in range(10):
            bus.publish("a")
        deadline = time.monotonic() + 10
        while c.stats.queued != 9 and time.monotonic() < deadline:
            time.sleep(0.001)
        c.dispose()
        gate.set()
        s = c.stats
        assert s.received == 10 and s.dropped == 9 and s.queued == 0
        bus.publish("a")
        assert c.stats.received == 10
        m = bus.metrics()
        assert c.name not in m["consumers"] and m["dropped"] == 9
