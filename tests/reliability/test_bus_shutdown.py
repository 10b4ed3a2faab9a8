"""close(): drains, completes, is idempotent, and reports what it could not deliver."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from reactivex import operators as rx_ops

from rxbus import BusClosedError, DeadLetter, Event, EventBus, Overflow
from tests.conftest import wait_until


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


def test_dispose_counts_queued_events_as_dropped(bus: EventBus) -> None:
    gate = threading.Event()
    c = bus.subscribe(lambda e: gate.wait(), mode="thread")
    for _ in range(10):
        bus.publish("a")
    wait_until(lambda: c.stats.queued == 9, what="9 events queued behind the gate")
    c.dispose()
    gate.set()
    s = c.stats
    assert s.received == 10 and s.dropped == 9 and s.queued == 0
    bus.publish("a")
    assert c.stats.received == 10
    m = bus.metrics()
    assert c.name not in m["consumers"] and m["dropped"] == 9


def test_close_from_a_consumers_own_worker_does_not_wait_on_itself() -> None:
    """A thread consumer that closes the bus from its sink: close() returns at once and the
    consumer still drains what it had queued."""
    bus = EventBus()
    got: list[int] = []
    results: list[list[DeadLetter]] = []

    def sink(e: Event) -> None:
        got.append(e.data["i"])
        if e.data["i"] == 0:
            results.append(bus.close(timeout=5))

    c = bus.subscribe(sink, mode="thread")
    for i in range(3):
        bus.publish("a", {"i": i})
    assert c._done.wait(10)
    assert results == [[]] and got == [0, 1, 2]


def test_aclose_on_the_loop_the_bus_owns() -> None:
    bus = EventBus()
    got: list[int] = []
    closed: list[list[DeadLetter]] = []
    finished = threading.Event()

    async def sink(e: Event) -> None:
        got.append(e.data["i"])
        if e.data["i"] == 2:
            closed.append(await bus.aclose())
            finished.set()

    bus.subscribe(sink)
    for i in range(3):
        bus.publish("a", {"i": i})
    assert finished.wait(10)
    assert closed == [[]] and got == [0, 1, 2] and bus.closed


def test_a_second_concurrent_close_waits_for_the_first() -> None:
    bus = EventBus()
    gate = threading.Event()
    got: list[int] = []
    bus.subscribe(lambda e: (gate.wait(), got.append(e.data["i"])), mode="thread")
    for i in range(5):
        bus.publish("a", {"i": i})
    first = threading.Thread(target=bus.close, kwargs={"timeout": 10})
    first.start()
    wait_until(lambda: bus.closed, what="the first close() to start")
    threading.Timer(0.05, gate.set).start()
    assert bus.close(timeout=10) == []
    assert got == [0, 1, 2, 3, 4]  # the second call returned only after the drain
    first.join()


def test_a_producer_blocked_on_a_full_queue_when_close_starts_gets_a_dead_letter() -> None:
    bus = EventBus()
    letters: list[DeadLetter] = []
    bus.dead_letters.subscribe(letters.append)
    gate = threading.Event()
    c = bus.subscribe(lambda e: gate.wait(), mode="thread", queue_size=1)
    bus.publish("a", {"i": 0})
    wait_until(lambda: c.stats.queued == 0, what="the worker to hold event 0 in the sink")
    bus.publish("a", {"i": 1})  # fills the queue
    blocked = threading.Thread(target=bus.publish, args=("a", {"i": 2}))
    blocked.start()
    wait_until(lambda: c.blocked > 0, what="the third publish to block on the full queue")
    threading.Timer(0.05, gate.set).start()
    c.dispose()
    blocked.join(10)
    assert [lt.event.data["i"] for lt in letters if isinstance(lt.error, BusClosedError)] == [1, 2]
    wait_until(lambda: c.stats.delivered >= 1, what="event 0 to leave the sink")
    s = c.stats
    assert s.received == s.delivered + s.failed + s.dropped + s.queued


def test_async_on_completed_finishes_before_close_returns() -> None:
    done: list[str] = []

    class Sink:
        async def on_next(self, e: Event) -> None:
            await asyncio.sleep(0)

        async def on_completed(self) -> None:
            await asyncio.sleep(0.01)
            done.append("completed")

    bus = EventBus()
    bus.subscribe(Sink())
    bus.publish("a")
    assert bus.close(timeout=10) == [] and done == ["completed"]


def test_events_behind_a_chain_that_completed_itself_are_dropped_not_delivered() -> None:
    for mode in ("sync", "thread", "async"):
        bus = EventBus()
        got: list[int] = []
        gate = threading.Event()
        if mode == "sync":
            gate.set()  # a sync sink runs in the publisher: it must not wait for the test

        def sink(i: int, g: threading.Event = gate, got: list[int] = got) -> None:
            g.wait()
            got.append(i)

        c = bus.subscribe(sink, rx_ops.map(lambda e: e.data["i"]), rx_ops.take(2), mode=mode)
        for i in range(5):
            bus.publish("a", {"i": i})
        gate.set()
        bus.close(timeout=10)
        s = c.stats
        assert got == [0, 1], mode
        # sync: detached as soon as take(2) completed, so later events never reach it;
        # queued: events 2-4 were already queued behind the completion and are dropped
        expected = (2, 2, 0, 0) if mode == "sync" else (5, 2, 3, 0)
        assert (s.received, s.delivered, s.dropped, s.dead_lettered) == expected, (mode, s)


def test_publishing_after_the_buses_loop_ended_does_not_raise() -> None:
    """A bus made inside asyncio.run keeps that loop for async consumers; once it is closed,
    publish() neither raises nor loses events silently."""
    letters: list[DeadLetter] = []

    async def make() -> EventBus:
        bus = EventBus()
        bus.dead_letters.subscribe(letters.append)

        async def sink(e: Event) -> None: ...

        bus.subscribe(sink, name="orphan")
        return bus

    bus = asyncio.run(make())
    bus.publish("a")
    assert [lt.consumer for lt in letters] == ["orphan"]
    assert "loop" in str(letters[0].error)


def test_close_timeout_counts_the_event_an_async_sink_is_still_awaiting() -> None:
    """An async sink stuck on an event when close() gives up: that event is reported with the
    queued ones, and received == delivered + failed + dropped + queued still holds."""
    entered = threading.Event()

    async def stuck(e: Event) -> None:
        entered.set()
        await asyncio.sleep(3600)

    bus = EventBus()
    c = bus.subscribe(stuck, name="stuck")
    events = [bus.publish("a", {"i": i}) for i in range(3)]
    assert entered.wait(10)
    undelivered = bus.close(timeout=0.2)
    assert [d.event for d in undelivered] == events
    s = c.stats
    assert (s.received, s.delivered, s.dropped, s.queued) == (3, 0, 3, 0)


@pytest.mark.parametrize("overflow", [Overflow.BLOCK, Overflow.DROP_OLDEST, Overflow.ERROR])
@pytest.mark.parametrize("mode", ["thread", "async"])
def test_a_queued_consumer_publishing_to_itself_without_end_is_ended_by_close_and_counted(
    mode: str, overflow: Overflow
) -> None:
    """Its queue never stops the loop (each event goes round once): close() does, and what the
    loop's last turn could not publish or deliver is a dead letter, each one counted once."""
    bus = EventBus(history=0)

    def echo(e: Event) -> None:
        bus.publish("loop.x", {"n": e.data["n"] + 1})

    async def async_echo(e: Event) -> None:
        echo(e)

    sink = async_echo if mode == "async" else echo
    c = bus.subscribe(sink, topic="loop.*", mode=mode, queue_size=100, overflow=overflow)
    bus.publish("loop.x", {"n": 0})
    wait_until(lambda: c.stats.delivered >= 2_000, what="the loop going round")
    assert bus.close(timeout=10) == []
    s, m = c.stats, bus.metrics()
    assert s.received == s.delivered + s.failed + s.dropped + s.queued and s.queued == 0
    assert s.failed + s.dropped == s.dead_lettered == m["dead_lettered"]
    assert m["failed"] + m["dropped"] == m["dead_lettered"] <= 1
